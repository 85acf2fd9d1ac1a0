"""The line's capacity without the model: frames/s per stage and of whole workers, on SQLite and PostgreSQL.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/capacity.py [--frames 2000] [--png-frames 200]
        [--workers 1,2] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--formats jpeg640,png1024]
        [--by-reference]

A null model stands in for the network (maps of zeros, no computation), so what is measured is what
a GPU scoring thousands of frames/s would leave: publish (frame bytes and jobs into Redis), queue
(rq dequeue of a job), fetch (the job's frame bytes, one MGET), decode, fit (scaling into the
network's 256x256 input and normalising: the CPU work of `InspectionModel.prepare`), write (the
batch's rows, one upsert) and, last, whole worker processes (`lineguard worker`'s own loop) fed by
a publisher, 1 and 2 of them at once. Stages are timed one at a time in this process, frames/s of
one CPU core; `--by-reference` adds the stage a worker does instead of fetch when frames travel as
paths on a shared volume (reading the file inside its frame root, `worker.references`), and runs the
whole line a second time with frames sent by reference (`ingest folder --by-reference`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import psycopg
from psycopg import sql
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.frames import FileReference, Frame, new_frame_id  # noqa: E402
from ingest.publisher import Publisher  # noqa: E402
from model.calibration import fit_calibration  # noqa: E402
from model.images import decode_image  # noqa: E402
from model.recipe import Recipe  # noqa: E402
from model.scoring import InspectionModel  # noqa: E402
from model.synthetic import good_part  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402
from store.records import InspectionRecord, activate_model, register_model, write_inspections  # noqa: E402
from store.schema import Inspection  # noqa: E402
from wire.protocol import DROPS_KEY, PUBLISHED_KEY, SERIALIZER, FrameEntry, make_queue, payload_entries  # noqa: E402
from worker.references import frame_root, read_reference  # noqa: E402

NULL_VERSION = "null-model"
INPUT_SHAPE = (256, 256)
BATCH = 16
FORMATS = {"jpeg640": (".jpg", 480, 640), "png1024": (".png", 1024, 1024)}


class NullMaps:
    """A runtime that computes nothing: zero maps of the input's size, at once."""

    name = "null"
    device = None
    precision = "fp32"

    def __init__(self) -> None:
        import torch

        self.device = torch.device("cpu")

    def anomaly_maps(self, batch):
        import torch

        return torch.zeros(batch.shape[0], batch.shape[2], batch.shape[3])


def null_model() -> InspectionModel:
    calibration = fit_calibration(np.linspace(0.1, 1.0, 99), 0.01)
    return InspectionModel(NullMaps(), Recipe(input_shape=INPUT_SHAPE), calibration, NULL_VERSION, "random:null")


def encoded_frames(kind: str, count: int) -> list[bytes]:
    """`count` distinct encoded frames of `kind` (generated parts, a little noise so each differs)."""
    suffix, height, width = FORMATS[kind]
    rng = np.random.default_rng(0)
    base = cv2.resize(good_part(min(height, width), rng), (width, height))
    frames = []
    for _ in range(count):
        noisy = np.clip(base.astype(np.int16) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        frames.append(cv2.imencode(suffix, cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))[1].tobytes())
    return frames


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:9.0f} frames/s"


def write_frame_files(frames: list[bytes], folder: Path) -> list[FileReference]:
    """The frames as files in `folder` (a stand-in for the shared volume), flushed to it."""
    folder.mkdir(exist_ok=True)
    references = []
    for index, blob in enumerate(frames):
        path = folder / f"{index:06d}.frame"
        path.write_bytes(blob)
        references.append(FileReference(str(path), len(blob)))
    os.sync()
    return references


def stage_rates(redis: Redis, engine_urls: dict[str, str], frames: list[bytes], references: list[FileReference] | None, root: Path) -> None:
    queue_name = f"capacity-{os.getpid()}"
    line = f"capacity-{os.getpid()}"
    queue = make_queue(redis, queue_name)
    data = [Frame(new_frame_id(), line, "cam-1", "bench:capacity", datetime.now(UTC), blob) for blob in frames]
    started = time.perf_counter()
    with Publisher(redis, queue_name=queue_name, batch_size=BATCH, max_wait_s=3600, max_queued_jobs=1_000_000) as publisher:
        for frame in data:
            publisher.publish(frame)
    print(f"  publish (bytes and jobs into Redis, jobs of {BATCH}) {rate(len(data), time.perf_counter() - started)}")

    started = time.perf_counter()
    payloads = []
    while (job := queue.dequeue_any([queue], None, connection=redis, serializer=SERIALIZER)) is not None:
        payloads.append(job[0].args[0])
    print(f"  queue (dequeue jobs, read their payloads)      {rate(len(data), time.perf_counter() - started)}")

    started = time.perf_counter()
    entries = [FrameEntry.from_json(entry) for payload in payloads for entry in payload_entries(payload)]
    blobs = []
    for start in range(0, len(entries), BATCH):
        blobs += redis.mget([entry.key for entry in entries[start : start + BATCH]])
    print(f"  fetch (check entries, MGET the bytes)          {rate(len(data), time.perf_counter() - started)}")
    redis.delete(*(entry.key for entry in entries))

    if references is not None:
        root = frame_root(root)
        started = time.perf_counter()
        for reference in references:
            read_reference(reference.path, root, reference.size, 64 * 2**20)
        print(f"  read by reference (checked, page-cached)       {rate(len(references), time.perf_counter() - started)}")

    started = time.perf_counter()
    images = [decode_image(blob) for blob in blobs]
    print(f"  decode                                          {rate(len(images), time.perf_counter() - started)}")

    model = null_model()
    started = time.perf_counter()
    for start in range(0, len(images), BATCH):
        model.prepare(images[start : start + BATCH])
    print(f"  fit into the 256x256 input, normalise           {rate(len(images), time.perf_counter() - started)}")

    now = datetime.now(UTC)
    records = [
        InspectionRecord(
            frame_id=entry.frame_id, line=entry.line, camera=entry.camera, source=entry.source, captured_at=entry.captured_at,
            enqueued_at=entry.enqueued_at, started_at=now, finished_at=now, worker="bench", verdict="good",
            model_version=NULL_VERSION, score=0.1, raw_score=0.0, threshold=1.0,
        )
        for entry in entries
    ]
    for dialect, url in engine_urls.items():
        engine = make_engine(url)
        upgrade(engine)
        for size in (BATCH, 256):
            started = time.perf_counter()
            for start in range(0, len(records), size):
                write_inspections(engine, records[start : start + size])
            print(f"  write {dialect:10} (upserts of {size:3} rows)        {rate(len(records), time.perf_counter() - started)}")
        engine.dispose()
    queue.delete(delete_jobs=True)
    redis.hdel(PUBLISHED_KEY, f"{line}/cam-1")


def whole_line(redis_url: str, database_url: str, frames: list[bytes], workers: int, workdir: Path, references: list[FileReference] | None) -> float:
    """Frames/s of `workers` null-model worker processes, from the first publish to the last row,
    once a warm-up job per worker has been recorded (the workers started, connected and loaded the
    model); with `references`, the frames are sent by reference (their files) instead of by their bytes."""
    run = f"{os.getpid()}-{workers}-{secrets.token_hex(3)}"
    queue_name = f"capacity-line-{run}"
    line = f"capacity-line-{run}"
    engine = make_engine(database_url)
    upgrade(engine)
    register_model(
        engine, version=NULL_VERSION, checkpoint_path="null", recipe=Recipe(input_shape=INPUT_SHAPE).model_dump(mode="json"),
        calibration=null_model().calibration.to_dict(), metrics=None, teacher_source="random:null", random_teacher=True,
        training_data={},
    )
    activate_model(engine, line, NULL_VERSION)
    environment = {
        **os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url, "LINEGUARD_QUEUE": queue_name,
        "LINEGUARD_ARTIFACTS": str(workdir / "artifacts"), "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "LINEGUARD_FRAME_ROOT": str(workdir),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--null-worker", "--batch-size", str(BATCH)], env=environment,
            stdout=subprocess.DEVNULL, stderr=open(workdir / f"worker-{workers}-{index}.log", "wb"),
        )
        for index in range(workers)
    ]
    redis = Redis.from_url(redis_url)
    try:
        count = select(func.count()).select_from(Inspection).where(Inspection.line == line)

        def publish_and_wait(indices: list[int], recorded: int) -> None:
            with Publisher(redis, queue_name=queue_name, batch_size=BATCH, max_wait_s=3600, max_queued_jobs=1_000_000) as publisher:
                for index in indices:
                    reference = None if references is None else references[index]
                    data = frames[index] if reference is None else b""
                    publisher.publish(Frame(new_frame_id(), line, "cam-1", "bench:capacity", datetime.now(UTC), data, reference=reference))
            deadline = time.monotonic() + 900
            while True:
                with engine.connect() as connection:
                    if connection.scalar(count) >= recorded:
                        return
                if time.monotonic() > deadline or any(process.poll() is not None for process in processes):
                    raise RuntimeError(f"the workers did not record {recorded} frames; see {workdir}/worker-*.log")
                time.sleep(0.05)

        warm_up = [index % len(frames) for index in range(BATCH * workers)]
        publish_and_wait(warm_up, len(warm_up))
        started = time.perf_counter()
        publish_and_wait(list(range(len(frames))), len(warm_up) + len(frames))
        return len(frames) / (time.perf_counter() - started)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:  # a warm stop waits out its blocking dequeue; the bench needs no more of it
                process.kill()
                process.wait(30)
        make_queue(redis, queue_name).delete(delete_jobs=True)
        redis.hdel(PUBLISHED_KEY, f"{line}/cam-1")
        redis.hdel(DROPS_KEY, f"{line}/cam-1")
        engine.dispose()


def run_null_worker(batch_size: int) -> None:
    """`lineguard worker` with the null model in place of every registered model."""
    import logging

    import worker.model_cache
    from lineguard.settings import Settings
    from worker.process import WorkerOptions, run_worker

    logging.basicConfig(level=logging.WARNING)
    worker.model_cache.load_model = lambda *args, **kwargs: null_model()
    settings = Settings.from_environment()
    options = WorkerOptions(device="cpu", batch_size=batch_size, frame_root=settings.frame_root)
    run_worker(settings.redis_url, settings.database_url, settings.artifacts_url, settings.queue_name, options)


def bench_postgres(admin_url: str) -> tuple[str, str]:
    """A database of its own on the server of `admin_url`: (its URL, its name)."""
    name = f"lineguard_capacity_{secrets.token_hex(4)}"
    conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False), name


def drop_postgres(admin_url: str, name: str) -> None:
    conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per run of 640x480 JPEG")
    parser.add_argument("--png-frames", type=int, default=200, help="frames per run of 1024x1024 PNG (about 3 MB each in Redis)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--formats", default="jpeg640,png1024")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--by-reference", action="store_true", help="also time reading frames from files, and the whole line by reference")
    parser.add_argument("--null-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_worker:
        run_null_worker(args.batch_size)
        return
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis = Redis.from_url(redis_url)
    postgres_url, postgres_name = bench_postgres(args.postgres)
    try:
        with tempfile.TemporaryDirectory(prefix="lineguard-capacity-") as folder:
            workdir = Path(folder)
            databases = {"sqlite": f"sqlite:///{workdir / 'capacity.db'}", "postgresql": postgres_url}
            print(f"{os.cpu_count()} CPU cores; Redis {redis_url}; {args.frames} frames per run; jobs of {BATCH} frames")
            for kind in args.formats.split(","):
                frames = encoded_frames(kind, args.png_frames if kind == "png1024" else args.frames)
                print(f"{kind}: {len(frames)} frames of {np.mean([len(f) for f in frames]) / 1e3:.0f} kB; stages, one core:")
                references = write_frame_files(frames, workdir / f"shared-{kind}") if args.by_reference else None
                stage_rates(redis, databases, frames, references, workdir)
                ways = {"bytes": None} | ({"reference": references} if references is not None else {})
                for dialect, url in databases.items():
                    for workers in [int(n) for n in args.workers.split(",")]:
                        for way, references in ways.items():
                            total = whole_line(redis_url, url, frames, workers, workdir, references)
                            print(
                                f"  whole line, {workers} null-model worker(s), {dialect:10}, by {way:9} {total:9.0f} frames/s "
                                f"({total / workers:.0f} per worker)", flush=True,
                            )
    finally:
        drop_postgres(args.postgres, postgres_name)


if __name__ == "__main__":
    main()
