"""The line under faults, on real frames: N toothbrush images in, and what came out.

Each fault runs on a fresh private redis-server (a free port, SIGKILLed and restarted empty where
the fault says so), a fresh store and two `lineguard worker` processes:

- redis-kill (folder):  Redis SIGKILLed mid-run and restarted empty after a few seconds;
- db-refuses (folder):  PostgreSQL, behind a TCP proxy, refuses every connection for --outage-s
                        seconds (default 65) while the workers score;
- ingester-kill:        the folder ingester SIGKILLed between claim and publish, then run again;
- foreign-jobs:         os.system and subprocess.call jobs on the queue beside the frames;
- redis-kill (camera):  a video of the frames, Redis SIGKILLed and restarted empty with frames
                        queued; a camera cannot send them again, so they must be counted as lost.
- take-gap-term/-kill:  one worker, one frame a job; 20 times, after a random pause, the worker is sent
                        SIGTERM (or SIGKILL) the moment a job sits taken but unstarted in rq's
                        intermediate queue, then restarted; the note counts the kills that left one;
- poison:               every flagged frame fails on every attempt (its line's artifact folder is a
                        file): its job is retried, then each such frame gets a dead-letter row;
- full-disk:            artifacts on a full 2 MiB tmpfs: no flagged frame's pictures can be written;
- hung-batch:           one worker whose batches outlive --batch-deadline (0.05 s): it gives them
                        back and restarts itself, the other worker scores them;
- ctrl-c-full-queue:    workers stopped, a folder ingester blocked at a full queue gets SIGINT (the
                        seconds it takes to exit are shown); then workers and a second run.

For each: N files in, N rows out (error rows where due), 0 duplicates, seconds to settle.

Prints one table. The model is trained here with a RANDOM teacher at 128 px for speed (the faults
are about the line, not about the scores); `--checkpoint` takes another.

    .venv/bin/python bench/faults.py [--frames N] [--outage-s S] [--checkpoint MODEL.pt]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the fault tests' private servers
from fault_servers import PrivateRedis, RefusingProxy  # noqa: E402

from lineguard.line_status import workers_alive  # noqa: E402
from lineguard.registration import register_checkpoint  # noqa: E402
from model.recipe import Recipe, TrainingSettings  # noqa: E402
from model.teacher import RANDOM_TEACHER  # noqa: E402
from model.training import train  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402
from store.records import lost_frame_counts  # noqa: E402
from store.schema import Inspection  # noqa: E402
from wire.protocol import make_queue, worker_beats  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "mvtec_toothbrush"
LINE, CAMERA, QUEUE = "bench-line", "cam-1", "lineguard-faults"
WORKERS = 2
LEASE_S = 5
#: Longest wait for a fault's rows, seconds.
RECOVERY_TIMEOUT_S = 900
#: Address-space cap of every ingester this benchmark starts (a watched folder must not take the machine).
INGESTER_MEMORY_BYTES = 4 * 1024**3
FOREIGN_MARKERS = ("os-system-ran", "subprocess-call-ran")


@dataclass
class Outcome:
    fault: str
    files: int
    rows: int = 0
    duplicates: int = 0
    failed_jobs: int = 0
    lost_counted: str = "-"
    workers_alive: str = "-"
    recover_s: float | None = None
    foreign_run: int = 0
    error_rows: int = 0
    note: str = ""


def capped_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (INGESTER_MEMORY_BYTES, INGESTER_MEMORY_BYTES))


class Line:
    """Private Redis, a store, two workers and the environment every `lineguard` child reads."""

    def __init__(
        self, root: Path, checkpoint: Path, database_url: str | None = None, artifacts: Path | None = None,
        worker_args: tuple[tuple[str, ...], ...] = ((),) * WORKERS,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.redis = PrivateRedis(root / "redis")
        self.redis.start()
        self.database_url = database_url or f"sqlite:///{root / 'line.db'}"
        self.env = {
            **os.environ, "REDIS_URL": self.redis.url, "DATABASE_URL": self.database_url,
            "LINEGUARD_ARTIFACTS": str(artifacts or root / "artifacts"), "LINEGUARD_QUEUE": QUEUE,
        }
        self.engine = make_engine(self.database_url)
        upgrade(self.engine)
        register_checkpoint(self.engine, checkpoint, LINE)
        self.worker_args = worker_args
        self.workers = [self.start_worker(n) for n in range(len(worker_args))]
        wait(lambda: self.alive() == len(worker_args), 180, "the workers to register")

    def start_worker(self, n: int, name: str | None = None) -> subprocess.Popen[bytes]:
        """Worker `n` (its arguments of `worker_args`), named `name` (default wN): a killed worker's
        name stays registered until its registration expires, so its successor takes another."""
        argv = ("worker", "--device", "cpu", "--threads", "1", "--batch-size", "8", "--lease", str(LEASE_S), "--name", name or f"w{n}")
        return self.start(*argv, *self.worker_args[n], log=f"worker-{n}")

    def start(self, *argv: str, log: str, capped: bool = False) -> subprocess.Popen[bytes]:
        with (self.root / f"{log}.log").open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "lineguard.cli", *argv], env=self.env, cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=capped_memory if capped else None,
            )

    def run(self, *argv: str) -> None:
        process = self.start(*argv, log="commands", capped=argv[0] == "ingest")
        if process.wait(600) != 0:
            raise RuntimeError(f"lineguard {' '.join(argv)} failed; see {self.root / 'commands.log'}")

    def ingest_folder(self, folder: Path, *extra: str, watch: bool = False) -> subprocess.Popen[bytes]:
        argv = ["ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--batch-size", "4", "--reconcile-interval", "2", *extra]
        return self.start(*argv, *(["--watch"] if watch else []), log="ingest", capped=True)

    def error_rows(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Inspection).where(Inspection.verdict == "error"))

    def rows(self) -> tuple[int, int]:
        """(rows, rows beyond one per origin)."""
        with self.engine.connect() as connection:
            rows, origins = connection.execute(select(func.count(), func.count(Inspection.origin.distinct()))).one()
        return rows, rows - origins

    def alive(self) -> int:
        connection = Redis.from_url(self.redis.url, socket_timeout=2)
        try:
            return workers_alive(connection, QUEUE)
        except Exception:  # noqa: BLE001 - Redis away: none counted
            return 0
        finally:
            connection.close()

    def failed_jobs(self) -> int:
        connection = Redis.from_url(self.redis.url)
        try:
            return make_queue(connection, QUEUE).failed_job_registry.get_job_count(cleanup=False)
        finally:
            connection.close()

    def finish(self, outcome: Outcome) -> Outcome:
        outcome.rows, outcome.duplicates = self.rows()
        outcome.error_rows = self.error_rows()
        outcome.failed_jobs = self.failed_jobs()
        running = sum(worker.poll() is None for worker in self.workers)
        outcome.workers_alive = f"{self.alive()}/{len(self.workers)} ({len(self.workers) - running} exited)"
        return outcome

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.engine.dispose()
        self.redis.stop()


def wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def frames_folder(root: Path, count: int) -> Path:
    found = sorted((DATA / "test").rglob("*.png"))
    images = [found[index % len(found)] for index in range(count)]  # the test images again when more are asked for
    folder = root / "incoming"
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        shutil.copy(image, folder / f"{index:04d}-{image.parent.name}-{image.name}")
    return folder


def redis_kill_folder(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint)
    try:
        folder = frames_folder(root, count)
        ingester = line.ingest_folder(folder, watch=True)
        wait(lambda: line.rows()[0] >= 4, 300, "the first rows")
        line.redis.kill()
        time.sleep(8)
        line.redis.start()
        back = time.monotonic()
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        wait(lambda: line.alive() == WORKERS, RECOVERY_TIMEOUT_S, "the workers to count as alive again")
        outcome = line.finish(Outcome("redis SIGKILL, restarted empty (folder)", count, recover_s=time.monotonic() - back))
        ingester.send_signal(signal.SIGTERM)
        ingester.wait(60)
        return outcome
    finally:
        line.close()


def db_refuses(root: Path, checkpoint: Path, count: int, outage_s: float) -> Outcome:
    import psycopg
    from psycopg import sql

    admin = "postgresql://postgres@127.0.0.1:5432/test"
    name = f"lineguard_faults_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    proxy = RefusingProxy("127.0.0.1", 5432)
    proxy.accept()
    line = None
    try:
        line = Line(root, checkpoint, f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{name}")
        folder = frames_folder(root, count)
        line.run("ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--batch-size", "4")
        wait(lambda: line.rows()[0] >= 4, 300, "the first rows")
        line.engine.dispose()
        proxy.refuse()
        time.sleep(outage_s)
        proxy.accept()
        back = time.monotonic()
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        return line.finish(Outcome(f"database refuses connections {outage_s:g} s", count, recover_s=time.monotonic() - back))
    finally:
        if line is not None:
            line.close()
        proxy.refuse()
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def ingester_kill(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint)
    try:
        for worker in line.workers:  # nothing may be scored before the kill
            worker.send_signal(signal.SIGSTOP)
        folder = frames_folder(root, count)
        ingester = line.ingest_folder(folder, "--batch-size", str(count + 1), "--max-wait", "3600", watch=True)
        from store.schema import IngestedFile

        def claims() -> int:
            with line.engine.connect() as connection:
                return connection.scalar(select(func.count()).select_from(IngestedFile))

        wait(lambda: claims() == count, 300, "every file claimed")
        ingester.send_signal(signal.SIGKILL)
        ingester.wait(30)
        for worker in line.workers:
            worker.send_signal(signal.SIGCONT)
        started = time.monotonic()
        line.run("ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--batch-size", "4")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        return line.finish(Outcome("ingester SIGKILL between claim and publish", count, recover_s=time.monotonic() - started))
    finally:
        line.close()


def foreign_jobs(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint)
    try:
        markers = [root / marker for marker in FOREIGN_MARKERS]
        connection = Redis.from_url(line.redis.url)
        queue = make_queue(connection, QUEUE)
        queue.enqueue("os.system", f"touch {markers[0]}")
        queue.enqueue("subprocess.call", ["touch", str(markers[1])])
        connection.close()
        started = time.monotonic()
        line.run("ingest", "folder", str(frames_folder(root, count)), "--line", LINE, "--camera", CAMERA, "--no-progress")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        outcome = line.finish(Outcome("foreign jobs (os.system, subprocess.call)", count, recover_s=time.monotonic() - started))
        outcome.foreign_run = sum(marker.exists() for marker in markers)
        return outcome
    finally:
        line.close()


def redis_kill_camera(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint)
    try:
        images = sorted((DATA / "test").rglob("*.png"))[:count]
        video = root / "belt.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 256))
        for image in images:
            writer.write(cv2.resize(cv2.imread(str(image)), (256, 256)))
        writer.release()
        for worker in line.workers:  # frames stay queued until Redis is killed
            worker.send_signal(signal.SIGSTOP)
        line.run("ingest", "video", str(video), "--line", LINE, "--camera", CAMERA, "--no-progress")
        line.redis.kill()
        line.redis.start()
        for worker in line.workers:
            worker.send_signal(signal.SIGCONT)
        back = time.monotonic()
        wait(lambda: line.alive() == WORKERS, RECOVERY_TIMEOUT_S, "the workers to count as alive again")
        # The camera's next run finds the frames lost with Redis; its own frames are scored.
        line.run("ingest", "video", str(video), "--line", LINE, "--camera", CAMERA, "--no-progress")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per frame of the second run")
        outcome = line.finish(Outcome("redis SIGKILL, restarted empty (camera)", 2 * count, recover_s=time.monotonic() - back))
        lost = {counts.camera: counts.lost for counts in lost_frame_counts(line.engine)}
        outcome.lost_counted = ", ".join(f"{camera}: {n}" for camera, n in lost.items()) or "0"
        return outcome
    finally:
        line.close()


#: Kills of the take-to-start gap fault.
GAP_KILLS = 20


def take_gap(sig: signal.Signals) -> Callable[[Path, Path, int, float], Outcome]:
    """One worker on one-frame jobs, sent `sig` GAP_KILLS times: each time after a random pause, at
    the first moment a job sits in rq's intermediate queue unstarted (taken, not started), and
    restarted; the kills that left such a job behind are counted."""

    def fault(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
        line = Line(root, checkpoint, worker_args=((),))
        line.workers[0].send_signal(signal.SIGTERM)  # idle: each kill below gets a fresh worker of its own
        line.workers[0].wait(60)
        try:
            line.run("ingest", "folder", str(frames_folder(root, count)), "--line", LINE, "--camera", CAMERA, "--no-progress", "--batch-size", "1")
            connection = Redis.from_url(line.redis.url)
            queue = make_queue(connection, QUEUE)

            def unstarted() -> set[str]:
                return set(queue.intermediate_queue.get_job_ids()) - set(queue.started_job_registry.get_job_ids(cleanup=False))

            in_gap = 0
            rng = random.Random(0)
            for kill in range(GAP_KILLS):
                name = f"w0-{kill}"
                line.workers[0] = line.start_worker(0, name)
                wait(lambda: name in {beat.name for beat in worker_beats(connection, QUEUE)}, 180, f"worker {name} to register")
                time.sleep(rng.uniform(0.0, 0.5))
                deadline = time.monotonic() + 10
                while not unstarted() and time.monotonic() < deadline and queue.count:
                    pass  # as fast as Redis answers: the gap lasts milliseconds
                line.workers[0].send_signal(sig)
                line.workers[0].wait(120)
                in_gap += bool(unstarted())
            line.workers[0] = line.start_worker(0, "w0-after")
            connection.close()
            settling = time.monotonic()
            wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
            outcome = line.finish(Outcome(f"{sig.name} x{GAP_KILLS} in the take-to-start gap", count, recover_s=time.monotonic() - settling))
            outcome.note = f"{in_gap} of {GAP_KILLS} kills left a taken job unstarted"
            return outcome
        finally:
            line.close()

    return fault


def flagged_frames_fail(root: Path, checkpoint: Path, count: int, artifacts: Path, fault: str) -> Outcome:
    """The folder's frames on a line whose flagged frames' pictures cannot be written to `artifacts`."""
    line = Line(root, checkpoint, artifacts=artifacts)
    try:
        started = time.monotonic()
        line.run("ingest", "folder", str(frames_folder(root, count)), "--line", LINE, "--camera", CAMERA, "--no-progress")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        outcome = line.finish(Outcome(fault, count, recover_s=time.monotonic() - started))
        with line.engine.connect() as connection:
            letters = connection.scalar(select(func.count()).select_from(Inspection).where(Inspection.error.like("dead letter:%")))
        outcome.note = f"{letters} dead letters"
        return outcome
    finally:
        line.close()


def poison(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    artifacts = root / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / LINE).write_bytes(b"")  # the line's artifact folder cannot be made
    return flagged_frames_fail(root, checkpoint, count, artifacts, "poison frames (every attempt fails)")


def full_disk(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    disk = root / "artifacts-tmpfs"
    disk.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        with (disk / "filler").open("wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass  # full
        return flagged_frames_fail(root, checkpoint, count, disk, "full artifact disk (2 MiB tmpfs)")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def hung_batch(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint, worker_args=(("--batch-deadline", "0.05"), ()))
    try:
        started = time.monotonic()
        line.run("ingest", "folder", str(frames_folder(root, count)), "--line", LINE, "--camera", CAMERA, "--no-progress")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        outcome = line.finish(Outcome("hung batch (deadline 0.05 s on one worker)", count, recover_s=time.monotonic() - started))
        restarts = (root / "worker-0.log").read_text().count("worker restarted")
        outcome.note = f"{restarts} batches given back and restarts"
        return outcome
    finally:
        line.close()


def ctrl_c_full_queue(root: Path, checkpoint: Path, count: int, _outage_s: float) -> Outcome:
    line = Line(root, checkpoint)
    try:
        for worker in line.workers:
            worker.send_signal(signal.SIGSTOP)
        folder = frames_folder(root, count)
        ingester = line.ingest_folder(folder, "--batch-size", "1", "--max-queued-jobs", "2", "--policy", "block")
        connection = Redis.from_url(line.redis.url)
        wait(lambda: make_queue(connection, QUEUE).count >= 2, 120, "the queue to fill")
        connection.close()
        time.sleep(1)
        asked = time.monotonic()
        ingester.send_signal(signal.SIGINT)
        ingester.wait(60)
        exit_s = time.monotonic() - asked
        for worker in line.workers:
            worker.send_signal(signal.SIGCONT)
        settling = time.monotonic()
        line.run("ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress")
        wait(lambda: line.rows()[0] >= count, RECOVERY_TIMEOUT_S, "a row per file")
        outcome = line.finish(Outcome("Ctrl-C at a full queue, then a second run", count, recover_s=time.monotonic() - settling))
        outcome.note = f"ingester exited {exit_s:.2f} s after SIGINT (status {ingester.returncode})"
        return outcome
    finally:
        line.close()


FAULTS = {
    "redis-kill": redis_kill_folder,
    "db-refuses": db_refuses,
    "ingester-kill": ingester_kill,
    "foreign-jobs": foreign_jobs,
    "camera-redis-kill": redis_kill_camera,
    "take-gap-term": take_gap(signal.SIGTERM),
    "take-gap-kill": take_gap(signal.SIGKILL),
    "poison": poison,
    "full-disk": full_disk,
    "hung-batch": hung_batch,
    "ctrl-c-full-queue": ctrl_c_full_queue,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="real frames per fault (default 40)")
    parser.add_argument("--outage-s", type=float, default=65.0, help="how long the database refuses connections")
    parser.add_argument("--checkpoint", type=Path, help="model to score with (default: train one with a random teacher)")
    parser.add_argument("--only", choices=sorted(FAULTS), action="append", help="run only these faults")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lineguard-faults-") as scratch:
        root = Path(scratch)
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = root / "model.pt"
            print("training a 128 px model with a RANDOM teacher (the faults are about the line, not the scores)...", flush=True)
            train(DATA, checkpoint, Recipe(image_size=128, student_width=0.25, taps=["relu2_2", "relu3_3"]),
                  TrainingSettings(steps=64, batch_size=8, device="cpu", seed=0),
                  RANDOM_TEACHER, progress=False)
        outcomes = []
        for key in args.only or FAULTS:
            print(f"fault {key}...", flush=True)
            outcomes.append(FAULTS[key](root / key, checkpoint, args.frames, args.outage_s))
    header = (
        "fault", "files", "rows", "error rows", "duplicates", "jobs failed", "frames lost and counted", "workers alive",
        "seconds to settle", "foreign jobs run", "note",
    )
    rows = [
        (o.fault, str(o.files), str(o.rows), str(o.error_rows), str(o.duplicates), str(o.failed_jobs), o.lost_counted,
         o.workers_alive, "-" if o.recover_s is None else f"{o.recover_s:.1f}", str(o.foreign_run), o.note)
        for o in outcomes
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for line in (header, tuple("-" * width for width in widths), *rows):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths)) + " |")


if __name__ == "__main__":
    main()
