"""How long a stop signal takes: from the signal to the end of our code's stop, and to the process's exit.

Two processes, each stopped --runs times on a private redis-server and a SQLite store:

- `lineguard ingest folder` blocked at a full queue (no worker, `--max-queued-jobs 1 --policy block`),
  sent SIGINT (Ctrl-C). Its stop ends with the "stopped" source event, whose time the store keeps;
- an idle `lineguard worker`, sent SIGTERM. Its stop ends when it has unregistered from Redis
  (polled every 5 ms).

What comes after that and before the exit is the interpreter's own teardown (modules, torch's
libraries in the worker), which grows with the machine's load. Prints the median and the worst of each.

    .venv/bin/python bench/stop_times.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from redis import Redis
from sqlalchemy import select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fault tests' private servers
from fault_servers import PrivateRedis  # noqa: E402

from model.synthetic import good_part  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402
from store.schema import SourceEvent  # noqa: E402
from wire.protocol import make_queue, worker_beats  # noqa: E402

QUEUE = "lineguard-stop-times"


def wait(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def lineguard(env: dict[str, str], log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "lineguard.cli", *argv], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def ingester_stop(root: Path, env: dict[str, str], redis: Redis) -> tuple[float, float]:
    """(seconds to the "stopped" event, seconds to exit) of an ingester blocked at a full queue."""
    redis.flushdb()
    folder = root / "incoming"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(4):
        cv2.imwrite(str(folder / f"part-{index}.png"), good_part(128, rng))
    engine = make_engine(env["DATABASE_URL"])
    try:
        stopped_before = _stopped_events(engine)
        ingester = lineguard(env, root / "ingest.log", "ingest", "folder", str(folder), "--line", "L", "--camera", "C",
                             "--no-progress", "--batch-size", "1", "--max-queued-jobs", "1", "--policy", "block")
        wait(lambda: make_queue(redis, QUEUE).count >= 1, 120, "the queue to fill")
        time.sleep(1)  # the next file waits for room
        asked = time.time()
        ingester.send_signal(signal.SIGINT)
        ingester.wait(60)
        exited = time.time() - asked
        (stopped_at,) = _stopped_events(engine)[len(stopped_before):]
        return stopped_at - asked, exited
    finally:
        engine.dispose()
        for image in folder.iterdir():
            image.unlink()


def _stopped_events(engine) -> list[float]:  # noqa: ANN001 - the store's engine
    with engine.connect() as connection:
        rows = connection.execute(select(SourceEvent.at).where(SourceEvent.kind == "stopped").order_by(SourceEvent.id))
        return [at.timestamp() for (at,) in rows]


def worker_stop(root: Path, env: dict[str, str], redis: Redis, name: str) -> tuple[float, float]:
    """(seconds to its unregistering, seconds to exit) of an idle worker sent SIGTERM."""
    worker = lineguard(env, root / "worker.log", "worker", "--device", "cpu", "--name", name)
    wait(lambda: name in {beat.name for beat in worker_beats(redis, QUEUE)}, 300, f"worker {name} to register")
    time.sleep(1)
    asked = time.time()
    worker.send_signal(signal.SIGTERM)
    wait(lambda: name not in {beat.name for beat in worker_beats(redis, QUEUE)}, 60, "the worker to unregister", poll_s=0.005)
    unregistered = time.time() - asked
    worker.wait(60)
    return unregistered, time.time() - asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-stop-times-") as scratch:
        root = Path(scratch)
        server = PrivateRedis(root / "redis")
        server.start()
        env = {**os.environ, "REDIS_URL": server.url, "DATABASE_URL": f"sqlite:///{root / 'line.db'}",
               "LINEGUARD_ARTIFACTS": str(root / "artifacts"), "LINEGUARD_QUEUE": QUEUE}
        engine = make_engine(env["DATABASE_URL"])
        upgrade(engine)
        engine.dispose()
        redis = Redis.from_url(server.url)
        try:
            results = {
                "ingester, SIGINT at a full queue (to the 'stopped' event)": [],
                "idle worker, SIGTERM (to unregistered)": [],
            }
            ingester_runs, worker_runs = results.values()
            for run in range(args.runs):
                ingester_runs.append(ingester_stop(root, env, redis))
                worker_runs.append(worker_stop(root, env, redis, f"w{run}"))
            print("load average at the end: " + " ".join(f"{load:.1f}" for load in os.getloadavg()))
            print("| process, signal | our code's stop, median (worst) | exit, median (worst) |")
            print("|---|---|---|")
            for label, runs in results.items():
                ours, exits = zip(*runs)
                print(f"| {label} | {statistics.median(ours):.2f} s ({max(ours):.2f} s) | {statistics.median(exits):.2f} s ({max(exits):.2f} s) |")
        finally:
            redis.close()
            server.stop()


if __name__ == "__main__":
    main()
