"""Video source: every frame or a capped rate from a file, end of file, loop, reconnects."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, select

from ingest.errors import SourceUnavailableError
from ingest.publisher import Publisher
from wire.protocol import DROPS_KEY, PUBLISHED_KEY
from ingest.video import VideoSource
from store.schema import SourceEvent

from ingest_fixtures import QUEUE, engine, redis, stopped_at_a_full_queue  # noqa: F401  (fixtures)
VIDEO_FRAMES = 30
VIDEO_FPS = 30.0
VIDEO_SIZE = 64


@pytest.fixture
def publisher(redis: Redis) -> Publisher:
    return Publisher(redis, queue_name=QUEUE, batch_size=8, max_wait_s=0.1)


def write_video(path: Path) -> Path:
    """A MJPG .avi of VIDEO_FRAMES frames whose brightness rises frame by frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (VIDEO_SIZE, VIDEO_SIZE))
    assert writer.isOpened()
    for index in range(VIDEO_FRAMES):
        writer.write(np.full((VIDEO_SIZE, VIDEO_SIZE, 3), index * 8, dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "line.avi")


def published_frames(redis: Redis) -> list[tuple[dict, bytes]]:
    """(metadata, bytes) of every frame in the test queue's jobs, in queue order."""
    job_ids = [job_id.decode() for job_id in redis.lrange(f"rq:queue:{QUEUE}", 0, -1)]
    frames = []
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        frames += [(item, redis.get(item["key"])) for item in job.args[0]["frames"]]
    return frames


def source_events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(SourceEvent.kind, SourceEvent.message).order_by(SourceEvent.id))
        return [(kind, message) for kind, message in rows]


def run_until_more_than_a_video_is_published(source: VideoSource, publisher: Publisher, redis: Redis) -> list:
    """Run `source` in a thread until it has published more frames than the test video holds
    (or 10 s pass), then stop it; returns the list holding its run's stats."""
    stop = threading.Event()
    results = []
    runner = threading.Thread(target=lambda: results.append(source.run(publisher, stop_event=stop)))
    runner.start()
    deadline = time.monotonic() + 10
    while int(redis.hget(PUBLISHED_KEY, "L1/C1") or 0) <= VIDEO_FRAMES and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    runner.join(timeout=5)
    return results


def test_a_file_without_cap_publishes_every_frame_as_jpeg(
    video: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    stats = VideoSource(str(video), "L1", "C1", engine=engine).run(publisher)

    assert (stats.frames_read, stats.published, stats.skipped_by_fps_cap) == (VIDEO_FRAMES, VIDEO_FRAMES, 0)
    frames = published_frames(redis)
    assert [item["origin"] for item, _ in frames] == [f"frame {index}" for index in range(VIDEO_FRAMES)]
    brightness = []
    for _, data in frames:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert data[:2] == b"\xff\xd8" and image.shape == (VIDEO_SIZE, VIDEO_SIZE, 3)
        brightness.append(float(image.mean()))
    assert brightness == sorted(brightness)  # frames arrive in order
    assert [kind for kind, _ in source_events(engine)] == ["started", "connected", "stopped"]


@pytest.mark.parametrize("fps_cap", [10.0, 7.0, 60.0])
def test_the_fps_cap_keeps_frames_by_video_time(
    fps_cap: float, video: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    stats = VideoSource(str(video), "L1", "C1", engine=engine, fps_cap=fps_cap).run(publisher)

    expected = min(VIDEO_FRAMES, math.ceil(VIDEO_FRAMES / VIDEO_FPS * fps_cap))
    assert stats.frames_read == VIDEO_FRAMES
    assert (stats.published, stats.skipped_by_fps_cap) == (expected, VIDEO_FRAMES - expected)
    assert len(published_frames(redis)) == expected


def test_a_looping_file_continues_past_its_end_until_stopped(
    video: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    source = VideoSource(str(video), "L1", "C1", engine=engine, loop=True)
    results = run_until_more_than_a_video_is_published(source, publisher, redis)

    assert results[0].frames_read > VIDEO_FRAMES
    assert results[0].reconnects == 0
    assert [kind for kind, _ in source_events(engine)] == ["started", "connected", "stopped"]


@pytest.mark.parametrize("missing", ["rtsp://127.0.0.1:1/no-such-stream", "missing.avi"])
def test_an_unreachable_source_is_retried_with_backoff_then_gives_up(
    missing: str, tmp_path: Path, engine: Engine, publisher: Publisher
) -> None:
    target = missing if "://" in missing else str(tmp_path / missing)
    max_reconnects = 3
    source = VideoSource(
        target, "L1", "C1", engine=engine,
        reconnect_initial_s=0.01, reconnect_max_s=0.04, max_reconnects=max_reconnects, wait=True,
    )
    with pytest.raises(SourceUnavailableError, match=f"after {max_reconnects} reconnect attempts"):
        source.run(publisher)

    kinds = [kind for kind, _ in source_events(engine)]
    assert kinds == ["started"] + ["disconnected"] * (1 + max_reconnects) + ["error"]


def test_a_source_that_appears_later_is_reconnected(
    tmp_path: Path, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    path = tmp_path / "late.avi"
    source = VideoSource(
        str(path), "L1", "C1", engine=engine, reconnect_initial_s=0.05, reconnect_max_s=0.1, max_reconnects=50, wait=True
    )
    results = []
    runner = threading.Thread(target=lambda: results.append(source.run(publisher)))
    runner.start()
    time.sleep(0.2)
    write_video(tmp_path / "staging.avi").rename(path)  # appears complete
    runner.join(timeout=10)

    assert results[0].reconnects == 1
    assert results[0].published == VIDEO_FRAMES
    kinds = [kind for kind, _ in source_events(engine)]
    assert kinds[0] == "started" and kinds[-2:] == ["reconnected", "stopped"]
    assert set(kinds[1:-2]) == {"disconnected"}


class QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def video_url(video: Path) -> Iterator[str]:
    """The synthetic video served over HTTP: a live stream to OpenCV, which drops at each end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFileHandler, directory=str(video.parent)))
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{video.name}"
    server.shutdown()
    serving.join(timeout=5)


def test_a_live_stream_that_drops_is_reconnected(
    video_url: str, engine: Engine, publisher: Publisher, redis: Redis
) -> None:
    source = VideoSource(video_url, "L1", "C1", engine=engine, reconnect_initial_s=0.01, max_reconnects=3)
    assert source.kind == "stream"
    results = run_until_more_than_a_video_is_published(source, publisher, redis)

    assert results[0].published > VIDEO_FRAMES
    assert results[0].reconnects >= 1
    kinds = [kind for kind, _ in source_events(engine)]
    assert kinds[:4] == ["started", "connected", "disconnected", "reconnected"]
    assert kinds[-1] == "stopped"


def test_credentials_in_a_stream_url_are_not_shown(engine: Engine) -> None:
    source = VideoSource("rtsp://admin:secret@10.0.0.5:554/line1", "L1", "C1", engine=engine)
    assert source.source == "video:rtsp://admin:***@10.0.0.5:554/line1"
    assert source.kind == "stream"


def test_camera_indices_and_options_are_checked(video: Path, engine: Engine) -> None:
    assert VideoSource("0", "L1", "C1", engine=engine).kind == "camera"
    with pytest.raises(ValueError, match="loop"):
        VideoSource("rtsp://host/stream", "L1", "C1", engine=engine, loop=True)
    with pytest.raises(ValueError, match="fps_cap"):
        VideoSource(str(video), "L1", "C1", engine=engine, fps_cap=0)


def test_a_stop_at_a_full_queue_ends_the_run_and_counts_the_unsent_frames_as_dropped(video: Path, engine: Engine, redis: Redis) -> None:
    full = Publisher(redis, queue_name=QUEUE, batch_size=8, max_wait_s=60, max_queued_jobs=1, policy="block")
    source = VideoSource(str(video), "L1", "C1", engine=engine)
    stats = stopped_at_a_full_queue(lambda stop: source.run(full, stop_event=stop), full, buffered=8)
    assert (stats.published, stats.unsent) == (15, 8)
    assert int(redis.hget(DROPS_KEY, "L1/C1")) == 8
    assert ("dropped", "8 frames not sent: stopped while the queue was full") in source_events(engine)


@pytest.mark.parametrize("missing", ["rtsp://127.0.0.1:1/no-such-stream", "missing.avi", "9"])
def test_a_source_that_never_existed_fails_at_once_with_its_reason(
    missing: str, tmp_path: Path, engine: Engine, publisher: Publisher
) -> None:
    target = missing if "://" in missing or missing.isdigit() else str(tmp_path / missing)
    source = VideoSource(target, "L1", "C1", engine=engine)
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match="cannot be opened: (.*refused|no such file|there is no camera 9)"):
        source.run(publisher)
    assert time.monotonic() - started < 2
    (kind, message), = [(kind, message) for kind, message in source_events(engine) if kind == "error"]
    assert "cannot be opened" in message
