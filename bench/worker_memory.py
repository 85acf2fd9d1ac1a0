"""A worker's peak memory with a batch of very large frames queued at once.

32 frames of 64 MP (8,000 x 8,000 JPEGs of a generated part) are published as one job on a private
redis-server; one `lineguard worker --burst --batch-size 32` scores them; the bench prints the
worker's peak resident memory (the child's ru_maxrss). Run once with the default decode budget and
once with a budget so large that only the cut of each frame to MAX_FRAME_SIDE pixels bounds it.
The goal: under 2 GB.

    .venv/bin/python bench/worker_memory.py [--checkpoint MODEL.pt] [--frames 32] [--side 8000]

Without --checkpoint a 128 px model with a RANDOM teacher is trained briefly on generated parts
(memory does not depend on how well it is trained). Every worker runs under an address-space cap.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
from redis import Redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fault tests' private servers
from fault_servers import PrivateRedis  # noqa: E402

from ingest.frames import Frame, new_frame_id  # noqa: E402
from ingest.publisher import Publisher  # noqa: E402
from lineguard.registration import register_checkpoint  # noqa: E402
from model.recipe import Recipe, TrainingSettings  # noqa: E402
from model.synthetic import good_part, write_category  # noqa: E402
from model.teacher import RANDOM_TEACHER  # noqa: E402
from model.training import train  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402

LINE, CAMERA, QUEUE = "memory-line", "cam-1", "lineguard-memory"
#: Address-space cap of the worker (torch reserves much more address space than it uses).
WORKER_ADDRESS_SPACE_BYTES = 12 * 1024**3


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_ADDRESS_SPACE_BYTES, WORKER_ADDRESS_SPACE_BYTES))


def big_frame(side: int) -> bytes:
    """A generated part scaled up to side x side, as a JPEG."""
    part = good_part(256, np.random.default_rng(0))
    big = cv2.resize(part, (side, side), interpolation=cv2.INTER_CUBIC)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def peak_worker_gib(root: Path, checkpoint: Path, frames: int, data: bytes, budget_mb: int | None) -> tuple[float, float, int]:
    """(peak resident GiB of the worker, seconds, rows) for one batch of `frames` copies of `data`."""
    redis = PrivateRedis(root / "redis")
    redis.start()
    try:
        database_url = f"sqlite:///{root / 'line.db'}"
        engine = make_engine(database_url)
        upgrade(engine)
        register_checkpoint(engine, checkpoint, LINE)
        connection = Redis.from_url(redis.url)
        with Publisher(connection, queue_name=QUEUE, batch_size=frames, max_wait_s=60) as publisher:
            for index in range(frames):
                publisher.publish(Frame(new_frame_id(), LINE, CAMERA, "bench:memory", datetime.now(UTC), data, f"frame {index}"))
        env = {**os.environ, "REDIS_URL": redis.url, "DATABASE_URL": database_url, "LINEGUARD_ARTIFACTS": str(root / "artifacts"), "LINEGUARD_QUEUE": QUEUE}
        argv = [sys.executable, "-m", "lineguard.cli", "worker", "--burst", "--device", "cpu", "--batch-size", str(frames), "--good-sample-every", "1"]
        if budget_mb is not None:
            argv += ["--decode-budget-mb", str(budget_mb)]
        started = time.monotonic()
        with (root / "worker.log").open("wb") as log:
            process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, preexec_fn=capped)
            _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        if status != 0:
            raise SystemExit(f"the worker failed (status {status}); see {root / 'worker.log'}")
        with engine.connect() as db:
            rows = db.exec_driver_sql("SELECT count(*) FROM inspections").scalar_one()
        engine.dispose()
        return usage.ru_maxrss / 1024**2, seconds, rows
    finally:
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="model to score with (default: train a small one)")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--side", type=int, default=8000, help="frame side in pixels (8000: 64 MP)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-memory-") as scratch:
        root = Path(scratch)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = root / "model.pt"
            write_category(root / "parts", n_train=16, n_test_good=2, n_test_defective=2, size=128, seed=0)
            print("training a small 128 px model with a RANDOM teacher...", flush=True)
            train(root / "parts", checkpoint, Recipe(image_size=128, student_width=0.25, taps=["relu2_2", "relu3_3"]),
                  TrainingSettings(steps=20, batch_size=4, device="cpu", seed=0), RANDOM_TEACHER, progress=False)
        data = big_frame(args.side)
        print(f"{args.frames} frames of {args.side}x{args.side} ({args.side**2 / 1e6:.0f} MP), JPEG of {len(data) / 2**20:.1f} MiB each", flush=True)
        for label, budget in (("default decode budget", None), ("budget 100000 MB (the side cut only)", 100_000)):
            peak, seconds, rows = peak_worker_gib(root / label.split()[0], checkpoint, args.frames, data, budget)
            print(f"{label}: worker peak RSS {peak:.2f} GiB, {rows} rows in {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
