"""Folder source: backfill once, never twice across restarts, only complete files, watch mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, select

from ingest.errors import SourceUnavailableError
from ingest.folder import FolderSource, FolderStats
from ingest.publisher import Publisher
from store.schema import SourceEvent

from ci_requirements import bound_by_file_modes
from hostile_fixtures import OpenWatch
from ingest_fixtures import QUEUE, REDIS_TEST_URL, engine, redis, stopped_at_a_full_queue  # noqa: F401  (fixtures)


@pytest.fixture
def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, queue_name=QUEUE, batch_size=4, max_wait_s=0.1)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return folder


def png_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def write_file(path: Path, data: bytes, age_s: float = 0.0) -> None:
    path.write_bytes(data)
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))


def published_frames(redis: Redis) -> list[tuple[dict, bytes]]:
    """(metadata, bytes) of every frame in the test queue's jobs, in queue order."""
    job_ids = [job_id.decode() for job_id in redis.lrange(f"rq:queue:{QUEUE}", 0, -1)]
    frames = []
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        frames += [(item, redis.get(item["key"])) for item in job.args[0]["frames"]]
    return frames


def source_event_kinds(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(SourceEvent.kind).order_by(SourceEvent.id)))


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(0.02)


def test_backfill_publishes_each_file_once_oldest_first_and_a_restart_publishes_none(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    contents = {f"part_{index}.png": png_bytes(index) for index in range(5)}
    contents["corrupt.jpg"] = b"not an image at all"  # published as is: the worker records it
    for age, (name, data) in enumerate(reversed(contents.items()), start=1):
        write_file(images / name, data, age_s=10.0 * age)
    write_file(images / "notes.txt", b"not an image file")
    write_file(images / ".hidden.png", png_bytes(99))

    stats = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0.1, poll_interval_s=0.05).run(publisher)

    assert stats.published == len(contents)
    frames = published_frames(redis)
    assert [item["origin"] for item, _ in frames] == list(contents)  # oldest mtime first
    assert all(data == contents[item["origin"]] for item, data in frames)
    assert {item["source"] for item, _ in frames} == {f"folder:{images.resolve()}"}

    restarted = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0.1, poll_interval_s=0.05)
    again = restarted.run(Publisher(redis, queue_name=QUEUE, batch_size=4, max_wait_s=0.1))
    assert (again.published, again.already_ingested) == (0, len(contents))
    assert len(published_frames(redis)) == len(contents)
    # notes.txt is skipped and recorded once by each run; the hidden file is passed over.
    assert (stats.skipped, again.skipped) == ({"extension": 1}, {"extension": 1})
    assert source_event_kinds(engine) == ["started", "skipped:extension", "stopped"] * 2


def test_the_same_folder_for_another_camera_is_claimed_separately(
    images: Path, engine: Engine, publisher: Publisher
) -> None:
    write_file(images / "a.png", png_bytes(1), age_s=5)
    first = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)
    second = FolderSource(images, "L1", "C2", engine=engine, stable_seconds=0).run(publisher)
    assert (first.published, second.published) == (1, 1)


def test_a_file_still_being_written_is_taken_only_once_stable(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    chunks = [png_bytes(seed) for seed in range(6)]
    target = images / "growing.png"
    source = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0.4, poll_interval_s=0.05)
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: source.run(publisher, watch=True, stop_event=stop))
    watcher.start()
    try:
        for chunk in chunks:  # a slow writer: a chunk every 0.1 s, well within stable_seconds
            with target.open("ab") as handle:
                handle.write(chunk)
            time.sleep(0.1)
        wait_until(lambda: redis.llen(f"rq:queue:{QUEUE}") >= 1)
        time.sleep(0.2)  # a second, premature publication would show up here
    finally:
        stop.set()
        watcher.join(timeout=5)

    (frame,) = published_frames(redis)
    assert frame[1] == b"".join(chunks)


@contextmanager
def watching(source: FolderSource, publisher: Publisher) -> Iterator[list[FolderStats]]:
    """``source`` watching in a thread until the block ends (then it must stop); its stats land in the list."""
    stop = threading.Event()
    results: list[FolderStats] = []
    watcher = threading.Thread(target=lambda: results.append(source.run(publisher, watch=True, stop_event=stop)))
    watcher.start()
    try:
        yield results
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()


def test_watch_mode_picks_up_a_new_file_until_stopped(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    write_file(images / "old.png", png_bytes(1), age_s=60)
    source = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0.1, poll_interval_s=0.05)
    with watching(source, publisher) as results:
        wait_until(lambda: len(published_frames(redis)) == 1)
        write_file(images / "new.png", png_bytes(2))
        wait_until(lambda: len(published_frames(redis)) == 2)

    assert results[0].published == 2
    assert [item["origin"] for item, _ in published_frames(redis)] == ["old.png", "new.png"]
    assert source_event_kinds(engine) == ["started", "stopped"]


def test_recursive_takes_subfolders_only_when_asked(images: Path, engine: Engine, publisher: Publisher) -> None:
    (images / "shift2").mkdir()
    write_file(images / "top.png", png_bytes(1), age_s=5)
    write_file(images / "shift2" / "deep.png", png_bytes(2), age_s=5)
    flat = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)
    deep = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0, recursive=True).run(publisher)
    assert (flat.published, deep.published, deep.already_ingested) == (1, 1, 1)


# Run in a process bound by file modes (see ci_requirements.bound_by_file_modes), even as root.
UNREADABLE_RUN = """
import json, sys
from redis import Redis
from ingest.folder import FolderSource
from ingest.publisher import Publisher
from store.db import make_engine
folder, database, redis_url, queue = sys.argv[1:]
engine = make_engine(database)
publisher = Publisher(Redis.from_url(redis_url), queue_name=queue, batch_size=4, max_wait_s=0.1)
stats = FolderSource(folder, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)
print(json.dumps([stats.published, stats.skipped]))
"""


def test_an_unreadable_file_is_skipped_and_recorded(images: Path, engine: Engine, redis: Redis) -> None:
    locked = images / "locked.png"
    write_file(locked, png_bytes(1), age_s=5)
    locked.chmod(0)
    write_file(images / "fine.png", png_bytes(2), age_s=5)
    command = bound_by_file_modes([sys.executable, "-c", UNREADABLE_RUN, str(images), str(engine.url), REDIS_TEST_URL, QUEUE])
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    run = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == [1, {"unreadable": 1}]
    assert "skipped:unreadable" in source_event_kinds(engine)


def test_a_missing_folder_is_refused_by_name(tmp_path: Path, engine: Engine) -> None:
    with pytest.raises(SourceUnavailableError, match="nowhere"):
        FolderSource(tmp_path / "nowhere", "L1", "C1", engine=engine)


def source_events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(SourceEvent.kind, SourceEvent.message).order_by(SourceEvent.id))]


def test_only_regular_images_inside_the_folder_are_opened_and_every_skip_is_recorded(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write_file(outside / "real.png", png_bytes(9))
    os.mkfifo(outside / "pipe.png")
    write_file(images / "good.png", png_bytes(1), age_s=30)
    write_file(images / "part.webp", cv2.imencode(".webp", np.full((40, 40, 3), 90, np.uint8))[1].tobytes(), age_s=20)
    (images / "link-inside.png").symlink_to("good.png")
    os.mkfifo(images / "x.png")
    (images / "passwd.png").symlink_to("/etc/passwd")
    # (/dev/zero, which a regression would read without end, is left to the memory-capped
    # subprocess of tests/test_line_hostile_folder.py.)
    (images / "outside.png").symlink_to(outside / "real.png")
    (images / "outside-pipe.png").symlink_to(outside / "pipe.png")
    (images / "anim.gif").write_bytes(b"GIF89a")
    (images / "notes.txt").write_bytes(b"notes")
    with (images / "big.png").open("wb") as big:
        big.truncate(2 * 2**20)
    watch = OpenWatch([images, outside])
    try:
        stats = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0, max_file_bytes=2**20).run(publisher)
        opened = {path.name for path in watch.read()}
    finally:
        watch.close()

    frames = {item["origin"]: data for item, data in published_frames(redis)}
    assert set(frames) == {"good.png", "part.webp", "link-inside.png"}
    assert frames["link-inside.png"] == frames["good.png"] == png_bytes(1)
    assert opened == {"good.png", "part.webp"}  # the link was read through its target; nothing else was opened
    assert stats.skipped == {"kind": 4, "size": 1, "extension": 2}
    assert "0 vanished, 7 skipped (4 kind, 1 size, 2 extension), 0 published again" in stats.summary()
    skips = {message.split(": ", 1)[0]: (kind, message) for kind, message in source_events(engine) if kind.startswith("skipped:")}
    assert {Path(path).name: kind for path, (kind, _) in skips.items()} == {
        "x.png": "skipped:kind", "passwd.png": "skipped:kind", "outside.png": "skipped:kind",
        "outside-pipe.png": "skipped:kind", "big.png": "skipped:size", "anim.gif": "skipped:extension", "notes.txt": "skipped:extension",
    }
    assert "a FIFO (named pipe)" in skips[str(images.resolve() / "x.png")][1]
    assert "/etc/passwd, outside the watched folder" in skips[str(images.resolve() / "passwd.png")][1]


def test_a_watch_records_a_skipped_file_once_however_often_it_looks(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    os.mkfifo(images / "x.png")
    source = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0, poll_interval_s=0.02)
    with watching(source, publisher) as results:
        time.sleep(0.3)  # many polls
        write_file(images / "late.png", png_bytes(3))
        wait_until(lambda: len(published_frames(redis)) == 1)
    assert source_event_kinds(engine) == ["started", "skipped:kind", "stopped"]
    assert results[0].skipped == {"kind": 1}


def test_recursive_never_walks_a_symlinked_folder(images: Path, engine: Engine, publisher: Publisher, redis: Redis, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_file(elsewhere / "far.png", png_bytes(4))
    (images / "sub").mkdir()
    write_file(images / "sub" / "deep.png", png_bytes(5))
    (images / "elsewhere").symlink_to(elsewhere)  # no image extension: skipped as such, never walked
    (images / "loop").symlink_to(images)
    stats = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0, recursive=True).run(publisher)
    assert [item["origin"] for item, _ in published_frames(redis)] == ["sub/deep.png"]
    assert stats.skipped == {"extension": 2}


def test_a_file_rewritten_at_an_ingested_path_is_ingested_again_as_a_new_frame(images: Path, engine: Engine, publisher: Publisher, redis: Redis) -> None:
    part = images / "part.png"
    write_file(part, png_bytes(1), age_s=60)
    first = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)
    write_file(part, png_bytes(2) + b"\0" * 7, age_s=30)  # new content, size and mtime at the same path
    second = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)
    third = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(publisher)

    assert (first.published, second.published, second.already_ingested) == (1, 1, 0)
    assert (third.published, third.already_ingested) == (0, 1)
    frames = published_frames(redis)
    assert len({item["frame_id"] for item, _ in frames}) == 2
    assert [data for _, data in frames] == [png_bytes(1), png_bytes(2) + b"\0" * 7]


def test_a_stop_at_a_full_queue_ends_the_run_and_the_next_run_sends_what_was_left(images: Path, engine: Engine, redis: Redis) -> None:
    for index in range(3):
        write_file(images / f"part-{index}.png", png_bytes(index), age_s=60 - index)
    full = Publisher(redis, queue_name=QUEUE, batch_size=1, max_queued_jobs=1, policy="block")
    source = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0)
    stats = stopped_at_a_full_queue(lambda stop: source.run(full, stop_event=stop), full, buffered=1)
    assert (stats.published, stats.unsent) == (1, 1)
    assert "1 left for the next run (stopped at a full queue)" in stats.summary()

    redis.delete(f"rq:queue:{QUEUE}")  # the queue drains (the first frame's bytes stay in Redis: in flight)
    again = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0).run(Publisher(redis, queue_name=QUEUE, batch_size=4, max_wait_s=0.1))
    assert (again.republished, again.published, again.already_ingested) == (1, 1, 2)
    assert sorted(item["origin"] for item, _ in published_frames(redis)) == ["part-1.png", "part-2.png"]


def test_by_reference_sends_each_checked_file_by_its_path_not_its_bytes(
    images: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    contents = {f"part_{index}.png": png_bytes(index) for index in range(3)}
    for age, (name, data) in enumerate(reversed(contents.items()), start=1):
        write_file(images / name, data, age_s=10.0 * age)
    (images / "alias.png").symlink_to(images / "part_0.png")  # a link inside the folder names its target
    os.utime(images / "alias.png", (time.time() - 1, time.time() - 1), follow_symlinks=False)

    stats = FolderSource(images, "L1", "C1", engine=engine, stable_seconds=0.1, poll_interval_s=0.05, by_reference=True).run(publisher)

    assert stats.published == len(contents) + 1
    frames = published_frames(redis)
    by_origin = {item["origin"]: (item, value) for item, value in frames}
    for name, data in contents.items():
        item, value = by_origin[name]
        path = str((images / name).resolve())
        assert item["reference"] == path and value == path.encode()  # the key holds the path, so its TTL means what it does for bytes
        assert item["size"] == len(data)
    assert by_origin["alias.png"][0]["reference"] == str((images / "part_0.png").resolve())
