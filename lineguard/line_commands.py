"""Commands that run a line: ingest, worker, models, status, db, demo.

Every command finds Redis, the database and the artifact storage through the environment
(REDIS_URL, DATABASE_URL, LINEGUARD_ARTIFACTS, LINEGUARD_QUEUE; see lineguard.settings), so all
processes of a line, on any machine, only need the same variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lineguard.learning_commands import actor, register_model_actions, run_training_worker_command
from lineguard.settings import Settings
from model.choices import Precision, options

if TYPE_CHECKING:  # imported where used, so that `lineguard --help` does not load torch or rq
    from redis import Redis
    from sqlalchemy import Engine

    from ingest.publisher import Publisher

log = logging.getLogger("lineguard")


def register(commands: argparse._SubParsersAction) -> None:
    _register_ingest(commands)
    _register_worker(commands)
    _register_models(commands)

    status = commands.add_parser("status", help="queue depth, drops, workers alive, frames/s and defect rate per line")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    status.set_defaults(handler=run_status)

    database = commands.add_parser("db", help="database schema")
    database_commands = database.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = database_commands.add_parser("upgrade", help="bring the database (DATABASE_URL) to the newest schema")
    upgrade.set_defaults(handler=run_db_upgrade)

    demo = commands.add_parser("demo", help="run a whole line on this machine: Redis, model, workers, a stream of parts")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)")
    demo.add_argument("--parts", type=int, default=300, help="generated parts to stream (default 300)")
    demo.add_argument("--fps", type=float, default=4.0, help="generated parts per second (default 4)")
    demo.add_argument("--folder", type=Path, help="stream the images of this folder (watched) instead of generated parts")
    demo.add_argument("--model", type=Path, help="use this checkpoint instead of training the demo model")
    demo.add_argument("--retrain", action="store_true", help="train the demo model again even if one is saved")
    demo.add_argument("--workers", type=int, default=2, help="worker processes to start (default 2)")
    demo.add_argument("--device", default="auto", help="device of the workers: auto, cpu, cuda or cuda:N")
    demo.add_argument("--dir", type=Path, default=Path("lineguard-demo"), help="folder for the demo's database, model and artifacts (default ./lineguard-demo)")
    demo.add_argument("--no-dashboard", action="store_true", help="do not start the dashboard")
    demo.set_defaults(handler=run_demo)


def _register_ingest(commands: argparse._SubParsersAction) -> None:
    publishing = argparse.ArgumentParser(add_help=False)
    publishing.add_argument("--line", required=True, help="production line of the frames")
    publishing.add_argument("--camera", required=True, help="camera of the frames within the line")
    publishing.add_argument("--batch-size", type=int, default=8, help="frames per job (default 8)")
    publishing.add_argument("--max-wait", type=float, default=0.5, help="longest wait for a job to fill, seconds (default 0.5)")
    publishing.add_argument("--max-queued-jobs", type=int, default=128, help="queue bound in waiting jobs (default 128)")
    publishing.add_argument(
        "--policy", choices=["block", "drop"], default="block",
        help="at a full queue: wait for room (block) or drop the batch and count it (drop)",
    )
    publishing.add_argument("--block-timeout", type=float, help="with block: give up after this many seconds (default: wait)")
    publishing.add_argument("--frame-ttl", type=int, default=3600, help="seconds a frame waits in Redis before it expires")
    publishing.add_argument(
        "--reconcile-interval", type=float, default=10.0,
        help="seconds between passes that find frames lost with Redis (a folder sends them again, a stream counts them; default 10)",
    )
    publishing.add_argument("--no-progress", action="store_true", help="no progress bar")
    publishing.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (/metrics)")

    ingest = commands.add_parser("ingest", help="publish frames from a folder or a video source into the queue")
    sources = ingest.add_subparsers(dest="source_kind", required=True, metavar="SOURCE")
    folder = sources.add_parser("folder", parents=[publishing], help="image files of a folder, each exactly once")
    folder.add_argument("directory", type=Path, help="folder of images")
    folder.add_argument("--watch", action="store_true", help="after the files present, keep publishing new ones")
    folder.add_argument("--recursive", action="store_true", help="also take files in subfolders")
    folder.add_argument(
        "--by-reference", action="store_true",
        help="send each file's path instead of its bytes: for a folder on storage the workers share at the same path (their --frame-root)",
    )
    folder.add_argument(
        "--max-file-mb", type=float,
        help="skip files larger than this many MiB without reading them (default: LINEGUARD_MAX_FILE_MB, else 64)",
    )
    folder.set_defaults(handler=run_ingest_folder)
    video = sources.add_parser("video", parents=[publishing], help="a video file, camera index or stream URL")
    video.add_argument("source", help="video file, camera index (0, 1...) or URL (rtsp://...)")
    video.add_argument("--fps", type=float, help="keep at most this many frames per second")
    video.add_argument("--loop", action="store_true", help="play a video file again and again")
    video.add_argument("--wait", action="store_true", help="wait for a source that cannot be opened at the start (default: fail at once, saying why)")
    video.add_argument("--stall-timeout", type=float, default=5.0, help="seconds without a frame after which a live source counts as frozen and is reopened (default 5)")
    video.add_argument("--reconnect-max", type=float, default=1.0, help="longest wait between reconnection attempts, seconds (default 1)")
    video.set_defaults(handler=run_ingest_video)


def _register_worker(commands: argparse._SubParsersAction) -> None:
    from worker.defaults import (
        DEFAULT_BATCH_SIZE,
        DEFAULT_DECODE_BUDGET_MB,
        DEFAULT_DECODE_ON_DEVICE,
        DEFAULT_GOOD_SAMPLE_EVERY,
        DEFAULT_LEASE_S,
        DEFAULT_MAX_RETRIES,
        DEFAULT_MODEL_REFRESH_S,
    )

    worker = commands.add_parser("worker", help="score queued frames with each line's active model")
    worker.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    worker.add_argument("--precision", default="auto", choices=options(Precision))
    worker.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"most frames per forward pass (default {DEFAULT_BATCH_SIZE})")
    worker.add_argument("--burst", action="store_true", help="stop once the queue is empty")
    worker.add_argument(
        "--train", action="store_true", help="run queued training jobs (`models retrain --queue`, the dashboard) instead of scoring"
    )
    worker.add_argument("--threads", type=int, help="CPU threads for the model (default: torch's choice)")
    worker.add_argument(
        "--lease", type=int, default=DEFAULT_LEASE_S,
        help=f"seconds after which a dead worker's job is retried elsewhere (default {DEFAULT_LEASE_S})",
    )
    worker.add_argument(
        "--max-retries", type=int, default=DEFAULT_MAX_RETRIES,
        help="retries of a job enqueued without any (published jobs carry their own) whose worker died or that failed",
    )
    worker.add_argument(
        "--batch-deadline", type=float,
        help="seconds a batch may take before the worker gives it back and restarts (default: from the batch size and the measured speed)",
    )
    worker.add_argument(
        "--decode-budget-mb", type=int, default=DEFAULT_DECODE_BUDGET_MB,
        help=f"MB of decoded frames held at once; larger batches are decoded a few frames at a time (default {DEFAULT_DECODE_BUDGET_MB})",
    )
    worker.add_argument(
        "--model-refresh", type=float, default=DEFAULT_MODEL_REFRESH_S,
        help=f"seconds between reads of the active models (default {DEFAULT_MODEL_REFRESH_S:g})",
    )
    worker.add_argument(
        "--good-sample-every", type=int, default=DEFAULT_GOOD_SAMPLE_EVERY,
        help=f"keep the pictures of one good frame in N of each camera (default {DEFAULT_GOOD_SAMPLE_EVERY}; 0: none)",
    )
    worker.add_argument(
        "--decode-on-device", choices=["auto", "on", "off"], default=DEFAULT_DECODE_ON_DEVICE,
        help="decode and fit JPEG frames on the scoring device (nvJPEG), trusted per model once measured against the host; auto: on CUDA",
    )
    worker.add_argument(
        "--frame-root", type=Path,
        help="read frames sent by reference (`ingest folder --by-reference`) only inside this folder (default: LINEGUARD_FRAME_ROOT; unset: none)",
    )
    worker.add_argument("--name", help="worker name in rows and status (default host.pid)")
    worker.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (/metrics)")
    worker.set_defaults(handler=run_worker_command)


def _register_models(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="register, activate, recalibrate, roll back and list models")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register a checkpoint in the store")
    add.add_argument(
        "checkpoint", type=Path,
        help="checkpoint file (`lineguard train`) or export folder (`lineguard export`); workers load it from this path",
    )
    add.add_argument("--line", help="line the model is for")
    add.add_argument(
        "--report", type=Path,
        help="its evaluation report folder (default: the one `lineguard eval` recorded); its pictures go to the artifact store for the Models page",
    )
    add.add_argument("--activate", action="store_true", help="make it the model --line scores with now")
    add.set_defaults(handler=run_models_add)
    activate = actions.add_parser("activate", help="make a registered model the one a line scores with")
    activate.add_argument("version", help="model version (see `lineguard models list`)")
    activate.add_argument("--line", required=True)
    activate.add_argument("--reason", help="why, kept in the line's history (`lineguard models history`)")
    activate.add_argument("--by", help="who decides (default: the login name)")
    activate.set_defaults(handler=run_models_activate)
    listing = actions.add_parser("list", help="registered models, newest first")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.set_defaults(handler=run_models_list)
    register_model_actions(actions)


def run_ingest_folder(args: argparse.Namespace) -> int:
    from ingest.folder import FolderSource
    from lineguard.signals import stop_on_signals

    settings = Settings.from_environment()
    if args.max_file_mb is not None:  # validated like the environment's value
        settings = Settings(**{**settings.model_dump(), "max_file_mb": args.max_file_mb})
    engine, redis = _open_line(settings)
    try:
        source = FolderSource(
            args.directory, args.line, args.camera, engine=engine, recursive=args.recursive,
            reconcile_interval_s=args.reconcile_interval, max_file_bytes=settings.max_file_bytes, by_reference=args.by_reference,
        )
        with stop_on_signals() as stop, _serving_metrics(args.metrics_port, redis, engine, settings):
            publisher = _publisher(redis, settings, args, stop)
            stats = source.run(publisher, watch=args.watch, stop_event=stop, progress=not args.no_progress)
        print(f"{source.source}: {stats.summary()}; {publisher.published} frames queued, {publisher.dropped} dropped at a full queue")
    finally:
        engine.dispose()
        redis.close()
    return 0


def run_ingest_video(args: argparse.Namespace) -> int:
    from ingest.video import VideoSource
    from lineguard.signals import stop_on_signals

    settings = Settings.from_environment()
    engine, redis = _open_line(settings)
    try:
        source = VideoSource(
            args.source, args.line, args.camera, engine=engine, fps_cap=args.fps, loop=args.loop,
            reconcile_interval_s=args.reconcile_interval, stall_timeout_s=args.stall_timeout, wait=args.wait,
            reconnect_max_s=args.reconnect_max,
        )
        with stop_on_signals() as stop, _serving_metrics(args.metrics_port, redis, engine, settings):
            publisher = _publisher(redis, settings, args, stop)
            stats = source.run(publisher, stop_event=stop, progress=not args.no_progress)
        print(f"{source.source}: {stats.summary()}; {publisher.published} frames queued, {publisher.dropped} dropped at a full queue")
    finally:
        engine.dispose()
        redis.close()
    return 0


def run_worker_command(args: argparse.Namespace) -> int:
    from lineguard.services import connect_redis, open_store
    from worker.process import WorkerOptions, run_worker

    if args.train:
        return run_training_worker_command(args)
    settings = Settings.from_environment()
    options = WorkerOptions(
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        burst=args.burst,
        lease_s=args.lease,
        max_retries=args.max_retries,
        model_refresh_s=args.model_refresh,
        good_sample_every=args.good_sample_every,
        batch_deadline_s=args.batch_deadline,
        decode_budget_mb=args.decode_budget_mb,
        threads=args.threads,
        name=args.name,
        verdict_topic_prefix=settings.mqtt_topic_prefix if settings.outbox_sinks else None,
        frame_root=str(args.frame_root) if args.frame_root is not None else settings.frame_root,
        max_reference_bytes=settings.max_file_bytes,
        decode_on_device=args.decode_on_device,
    )
    # Check both services answer before the worker registers, so a typo in a URL is one clear line.
    connect_redis(settings).close()
    open_store(settings, migrate=True).dispose()
    if not args.verbose:
        # rq logs two lines per job; the job function logs its own summary.
        for name in ("rq.worker", "rq.job", "rq.queue", "rq.registry"):
            logging.getLogger(name).setLevel(logging.WARNING)
    engine, redis = _open_line(settings)
    try:
        with _serving_metrics(args.metrics_port, redis, engine, settings):
            run_worker(settings.redis_url, settings.database_url, settings.artifacts_url, settings.queue_name, options)
    finally:
        engine.dispose()
        redis.close()
    return 0


def run_models_add(args: argparse.Namespace) -> int:
    from lineguard.registration import register_checkpoint

    if args.activate and not args.line:
        raise ValueError("--activate needs --line: the line that is to score with the model")
    from store.artifacts import open_artifact_store

    engine = _open_store()
    try:
        checkpoint = register_checkpoint(
            engine, args.checkpoint, args.line if args.activate else None, by=actor(None), reason=f"added from {args.checkpoint}",
            artifacts=open_artifact_store(Settings.from_environment().artifacts_url), report=args.report,
        )
        print(f"registered model {checkpoint['version']} from {args.checkpoint} (teacher: {checkpoint['teacher_source']})")
        pictures = (checkpoint["metrics"] or {}).get("report_pictures")
        if pictures:
            print(f"evaluation pictures ({', '.join(pictures).lower()}) from {checkpoint['metrics']['report']} kept for the Models page")
        if checkpoint["random_teacher"]:
            log.warning("model %s was trained with a RANDOM teacher: its scores are not those of the real method", checkpoint["version"])
        if args.activate:
            print(f"line {args.line} now scores with {checkpoint['version']}")
        elif args.line:
            print(f"activate it with: lineguard models activate {checkpoint['version']} --line {args.line}")
    finally:
        engine.dispose()
    return 0


def run_models_activate(args: argparse.Namespace) -> int:
    from store.records import activate_model

    engine = _open_store()
    try:
        activate_model(engine, args.line, args.version, by=actor(args.by), reason=args.reason)
    finally:
        engine.dispose()
    print(f"line {args.line} now scores with {args.version}; running workers switch within their model refresh time")
    return 0


def run_models_list(args: argparse.Namespace) -> int:
    from store.records import active_models, list_models

    engine = _open_store()
    try:
        models = list_models(engine)
        lines_by_version: dict[str, list[str]] = {}
        for line, version in sorted(active_models(engine).items()):
            lines_by_version.setdefault(version, []).append(line)
    finally:
        engine.dispose()
    rows: list[dict[str, Any]] = [
        {
            "version": model.version,
            "created_at": model.created_at.isoformat(),
            "active_for": lines_by_version.get(model.version, []),
            "threshold": model.calibration.get("threshold"),
            "teacher_source": model.teacher_source,
            "random_teacher": model.random_teacher,
            "metrics": model.metrics,
            "checkpoint_path": model.checkpoint_path,
        }
        for model in models
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no models registered; add one with `lineguard models add MODEL.pt --line LINE --activate`")
    for row in rows:
        teacher = "RANDOM TEACHER" if row["random_teacher"] else row["teacher_source"]
        active = ", ".join(row["active_for"]) or "no line"
        print(f"{row['version']}  active for {active}  threshold {row['threshold']:.4g}  teacher {teacher}  {row['checkpoint_path']}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from lineguard.line_status import format_status, line_status

    settings = Settings.from_environment()
    engine, redis = _open_line(settings)
    try:
        status = line_status(redis, engine, settings.queue_name, outbox_sinks=settings.outbox_sinks)
    finally:
        engine.dispose()
        redis.close()
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def run_db_upgrade(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from store.db import head_revision

    settings = Settings.from_environment()
    _open_store(migrate=True).dispose()
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"database {shown} is at schema revision {head_revision()}")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from lineguard.demo import DemoOptions
    from lineguard.demo import run_demo as demo

    options = DemoOptions(
        directory=args.dir,
        duration_s=args.duration,
        parts=args.parts,
        fps=args.fps,
        folder=args.folder,
        checkpoint=args.model,
        retrain=args.retrain,
        workers=args.workers,
        device=args.device,
        dashboard=not args.no_dashboard,
    )
    return demo(options)


def _open_store(*, migrate: bool = False) -> Engine:
    from lineguard.services import open_store

    return open_store(Settings.from_environment(), migrate=migrate)


def _open_line(settings: Settings) -> tuple[Engine, Redis]:
    from lineguard.services import connect_redis, open_store

    redis = connect_redis(settings)
    try:
        return open_store(settings), redis
    except BaseException:
        redis.close()
        raise


def _publisher(redis: Redis, settings: Settings, args: argparse.Namespace, stop: threading.Event) -> Publisher:
    from ingest.publisher import Publisher

    return Publisher(
        redis,
        queue_name=settings.queue_name,
        batch_size=args.batch_size,
        max_wait_s=args.max_wait,
        max_queued_jobs=args.max_queued_jobs,
        policy=args.policy,
        block_timeout_s=args.block_timeout,
        frame_ttl_s=args.frame_ttl,
        should_stop=stop.is_set,
    )


def _serving_metrics(port: int | None, redis: Redis, engine: Engine, settings: Settings):  # noqa: ANN202 - a context manager
    from wire.metrics import LineCollector, serving_metrics

    return serving_metrics(port, LineCollector(redis, engine, settings.queue_name, settings.outbox_sinks))
