"""Frames/s of the bare model and of the whole line, and the latency from capture to row.

In one run and at one batch size:
1. bare model: `InspectionModel.score_images` on batches of already-decoded frames;
2. whole path: frames published through the real Publisher into the real Redis, taken by a real
   worker process (`lineguard worker`), decoded, scored, recorded in the store (SQLite in a temporary
   folder, or the database given by --database-url) -- from the first publish to the last row;
3. latency: frames published one by one at a share (--load) of the measured whole-path rate, and
   the time from capture to result (the row's finished_at - captured_at), p50 and p99.
The whole path's goal is at least 0.9x the bare model's frames/s.

    .venv/bin/python bench/pipeline.py [--checkpoint MODEL.pt] [--frames 96] [--batch-size 16]
        [--device auto] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench]

Without --checkpoint a model of the default recipe is trained briefly on generated parts (its
speed does not depend on how well it is trained). Redis is REDIS_URL (default the local server);
the bench uses a queue and a line of its own and removes its keys at the end.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import torch
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import Engine, func, select

from ingest.frames import Frame, new_frame_id
from ingest.publisher import Publisher
from wire.protocol import DROPS_KEY, PUBLISHED_KEY, make_queue
from lineguard.registration import register_checkpoint
from lineguard.settings import Settings
from model.checkpoint import load_checkpoint
from model.images import decode_image
from model.recipe import Recipe, TrainingSettings
from model.synthetic import defective_part, good_part
from model.training import train
from store.db import make_engine, upgrade
from store.schema import Inspection

REPO_ROOT = Path(__file__).resolve().parents[1]
TEACHER_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "vgg16_imagenet_features.pth"
#: Share of generated frames with a defect (flagged frames cost two artifact writes each).
DEFECT_SHARE = 0.1
#: How long a publisher waits for a job to fill in the latency phase (the ingest CLI's default).
LATENCY_MAX_WAIT_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="model to use (default: train one briefly)")
    parser.add_argument("--frames", type=int, default=96, help="frames for the throughput phases")
    parser.add_argument("--latency-frames", type=int, default=96, help="frames for the latency phase")
    parser.add_argument("--load", type=float, default=0.7, help="latency phase rate, as a share of the whole-path rate")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per job and per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--database-url", help="store to write to (default: SQLite in a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lineguard-bench-") as folder:
        workdir = Path(folder)
        checkpoint = args.checkpoint or train_briefly(workdir)
        model = load_checkpoint(checkpoint, device=args.device)
        size = model.recipe.image_size
        encoded = generated_frames(args.frames + args.latency_frames + args.batch_size, size)
        print(
            f"model {model.version}: image {size}, {model.recipe.backbone} taps {','.join(model.recipe.taps)}, "
            f"student width {model.recipe.student_width}; device {model.device}, {model.precision}, "
            f"torch threads {torch.get_num_threads()}, batch {args.batch_size}, {os.cpu_count()} CPU cores",
            flush=True,
        )
        bare = bare_model_rate(model, encoded[: args.frames], args.batch_size)
        print(f"bare model (score_images on decoded batches):        {bare:7.2f} frames/s", flush=True)
        del model

        settings, line, redis, engine = bench_line(workdir, "bench", checkpoint, args.database_url)
        worker = start_worker(settings, args.device, args.batch_size, workdir / "worker.log")
        try:
            wait_for(lambda: SimpleWorker.count(queue=make_queue(redis, settings.queue_name)) == 1, 120, "the worker to start")
            warm_up = encoded[args.frames + args.latency_frames :]
            run_frames(redis, engine, settings, line, warm_up, args.batch_size, rate=None)
            path_rate = len(encoded[: args.frames]) / run_frames(
                redis, engine, settings, line, encoded[: args.frames], args.batch_size, rate=None
            )
            print(
                f"whole path (publish, queue, decode, score, write):  {path_rate:7.2f} frames/s "
                f"({path_rate / bare:.2f}x the bare model; goal 0.9x)",
                flush=True,
            )
            latency_frames = encoded[args.frames : args.frames + args.latency_frames]
            started_at = datetime.now(UTC)
            run_frames(redis, engine, settings, line, latency_frames, args.batch_size, rate=args.load * path_rate)
            latencies = capture_to_row_latencies(engine, line, started_at)
            print(
                f"capture to row at {args.load:.0%} load ({args.load * path_rate:.1f} frames/s, jobs of up to "
                f"{args.batch_size} frames or {LATENCY_MAX_WAIT_S} s): p50 {np.percentile(latencies, 50):.3f} s, "
                f"p99 {np.percentile(latencies, 99):.3f} s over {len(latencies)} frames",
                flush=True,
            )
        finally:
            worker.terminate()
            worker.wait(30)
            forget_bench_keys(redis, settings.queue_name, line)
            engine.dispose()


def train_briefly(workdir: Path) -> Path:
    """A model of the default recipe, trained for a few steps on 16 generated good parts."""
    recipe = Recipe()
    parts = workdir / "parts"
    parts.mkdir()
    rng = np.random.default_rng(0)
    for index in range(16):
        cv2.imwrite(str(parts / f"{index:02d}.png"), cv2.cvtColor(good_part(recipe.image_size, rng), cv2.COLOR_RGB2BGR))
    started = time.perf_counter()
    settings = TrainingSettings(steps=4, batch_size=8, seed=0)
    # Speed does not depend on the weights' values: without the ImageNet file beside the checkout the
    # bench uses a random teacher rather than download anything.
    teacher = str(TEACHER_WEIGHTS) if TEACHER_WEIGHTS.is_file() else "random"
    if teacher == "random":
        print(f"{TEACHER_WEIGHTS} not found: timing a random-teacher model (same speed)", flush=True)
    result = train(parts, workdir / "bench.pt", recipe, settings, teacher, progress=False)
    print(f"trained a bench model briefly ({time.perf_counter() - started:.0f} s)", flush=True)
    return result.checkpoint


def bench_line(
    workdir: Path, name: str, checkpoint: Path, database_url: str | None = None
) -> tuple[Settings, str, Redis, Engine]:
    """A line of the bench's own on REDIS_URL: (settings, line, Redis, store engine), the store
    (SQLite in `workdir` unless `database_url` is given) upgraded and `checkpoint` active on the line."""
    settings = Settings.from_environment().model_copy(
        update={
            "database_url": database_url or f"sqlite:///{workdir / 'bench.db'}",
            "artifacts_url": str(workdir / "artifacts"),
            "queue_name": f"lineguard-{name}-{os.getpid()}",
        }
    )
    line = f"{name}-{os.getpid()}"
    engine = make_engine(settings.database_url)
    upgrade(engine)
    register_checkpoint(engine, checkpoint, line)
    return settings, line, Redis.from_url(settings.redis_url), engine


def generated_frames(count: int, size: int) -> list[bytes]:
    """`count` PNG-encoded generated parts, DEFECT_SHARE of them defective."""
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(count):
        image = defective_part(size, rng)[0] if rng.random() < DEFECT_SHARE else good_part(size, rng)
        frames.append(cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes())
    return frames


def bare_model_rate(model, encoded: list[bytes], batch_size: int) -> float:
    """Frames/s of score_images on batches of decoded frames (after one warm-up batch)."""
    images = [decode_image(data) for data in encoded]
    model.score_images(images[:batch_size])
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        model.score_images(images[start : start + batch_size])
    return len(images) / (time.perf_counter() - started)


def start_worker(settings: Settings, device: str, batch_size: int, log_path: Path) -> subprocess.Popen[bytes]:
    environment = {**os.environ, **settings.environment()}
    command = [sys.executable, "-m", "lineguard.cli", "worker", "--device", device, "--batch-size", str(batch_size)]
    with log_path.open("wb") as log_file:
        return subprocess.Popen(command, env=environment, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def run_frames(
    redis: Redis, engine: Engine, settings: Settings, line: str, encoded: list[bytes], batch_size: int, rate: float | None
) -> float:
    """Publish `encoded` (all at once, or at `rate` frames/s) and wait for their rows; returns the seconds taken."""
    expected = rows(engine, line) + len(encoded)
    publisher = Publisher(
        redis,
        queue_name=settings.queue_name,
        batch_size=batch_size,
        # All at once: only full jobs (and the rest at the end). Paced: as the ingest CLI does.
        max_wait_s=3600.0 if rate is None else LATENCY_MAX_WAIT_S,
        max_queued_jobs=10_000,
    )
    never = threading.Event()
    started = time.perf_counter()
    for index, data in enumerate(encoded):
        if rate is not None:
            # Waiting through the publisher flushes a job that falls due meanwhile, as a source does.
            publisher.idle(started + index / rate - time.perf_counter(), never)
        publisher.publish(
            Frame(new_frame_id(), line, "cam-1", "bench:generated", datetime.now(UTC), data, origin=f"frame {index}")
        )
    publisher.close()
    wait_for(lambda: rows(engine, line) >= expected, 600, f"{len(encoded)} rows", poll_s=0.1)
    return time.perf_counter() - started


def rows(engine: Engine, line: str) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Inspection).where(Inspection.line == line))


def capture_to_row_latencies(engine: Engine, line: str, since: datetime) -> np.ndarray:
    query = select(Inspection.captured_at, Inspection.finished_at).where(Inspection.line == line, Inspection.captured_at >= since)
    with engine.connect() as connection:
        return np.array([(finished - captured).total_seconds() for captured, finished in connection.execute(query)])


def wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s} s for {what}")
        time.sleep(poll_s)


def forget_bench_keys(redis: Redis, queue_name: str, line: str) -> None:
    """Remove the bench's queue and its counter fields from Redis."""
    queue = make_queue(redis, queue_name)
    queue.delete(delete_jobs=True)
    for key in (PUBLISHED_KEY, DROPS_KEY):
        redis.hdel(key, f"{line}/cam-1")


if __name__ == "__main__":
    main()
