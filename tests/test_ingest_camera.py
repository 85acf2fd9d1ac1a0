"""Cameras that tell the truth, against a real RTSP server (GStreamer's, tests/rtsp_server.py) and an
HTTP MJPEG stream: a freeze is reported within the stall timeout and publishes no stale frame, a
camera that comes back is read again within 2 s, status shows each source's state."""

from __future__ import annotations

import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest
from camera_fixtures import RtspCamera, events, free_port, published, rtsp_camera  # noqa: F401 - fixture
from ingest_fixtures import QUEUE, REDIS_TEST_URL, engine, redis  # noqa: F401  (fixtures)
from redis import Redis
from sqlalchemy import Engine

from ingest.publisher import Publisher
from ingest.video import VideoSource
from lineguard.cli import main
from lineguard.line_status import line_status

STALL_TIMEOUT_S = 2.0


def wait_for(condition, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def running(source: VideoSource, publisher: Publisher) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(publisher,), kwargs={"stop_event": stop})
    thread.start()
    return thread, stop


def state_of(engine: Engine, redis: Redis) -> str:
    (source,) = line_status(redis, engine, QUEUE)["sources"]
    return source["state"]


def test_an_rtsp_camera_that_freezes_and_drops_is_told_and_read_again_soon(
    rtsp_camera: RtspCamera, engine: Engine, redis: Redis  # noqa: F811
) -> None:
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=2, max_wait_s=0.1, max_queued_jobs=10_000)
    source = VideoSource(rtsp_camera.url, "L1", "C1", engine=engine, stall_timeout_s=STALL_TIMEOUT_S)
    thread, stop = running(source, publisher)
    try:
        wait_for(lambda: len(published(redis)) >= 10, 20, "frames from the camera")
        assert state_of(engine, redis) == "streaming"

        frozen_at = rtsp_camera.signal(signal.SIGUSR1)
        wait_for(lambda: any(kind == "stalled" for kind, _, _ in events(engine)), STALL_TIMEOUT_S + 5, "the freeze to be told")
        (told_at,) = [at for kind, at, _ in events(engine) if kind == "stalled"]
        assert state_of(engine, redis) == "down"
        time.sleep(STALL_TIMEOUT_S)  # frozen a while longer: the source reopens, still no frame
        thawed_at = rtsp_camera.signal(signal.SIGUSR2)
        wait_for(lambda: published(redis)[-1] > thawed_at, 10, "frames after the freeze")
        # Frames already on their way at the freeze (the server's and the sockets' buffers) still
        # arrive; once the freeze is told, nothing is published until the camera gives frames again.
        in_flight = [t for t in published(redis) if frozen_at < t <= told_at]
        last_frame = max([t for t in published(redis) if t <= told_at])
        assert [t for t in published(redis) if told_at < t < thawed_at] == [], "frames published inside the freeze"

        down_at = rtsp_camera.stop()
        wait_for(lambda: state_of(engine, redis) == "down", 10, "the outage to be told")
        time.sleep(3)
        back_at = rtsp_camera.start()
        wait_for(lambda: published(redis)[-1] > back_at, 10, "frames after the camera's return")
        first_back = min(t for t in published(redis) if t > back_at)
        assert state_of(engine, redis) == "streaming"
        print(
            f"\nfreeze told {told_at - last_frame:.2f} s after the last frame (stall timeout {STALL_TIMEOUT_S:g} s; "
            f"{told_at - frozen_at:.2f} s after the freeze, {len(in_flight)} frames were in flight), none published after; "
            f"after a {back_at - down_at:.1f} s outage, the next frame {first_back - back_at:.2f} s after the camera's return"
        )
        assert told_at - last_frame <= STALL_TIMEOUT_S + 1.0
        assert first_back - back_at < 2.0
    finally:
        stop.set()
        thread.join(15)


class MjpegHandler(BaseHTTPRequestHandler):
    """An HTTP MJPEG camera (multipart/x-mixed-replace), 10 frames/s until the server stops."""

    serving = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        rng = np.random.default_rng(0)
        while MjpegHandler.serving.is_set():
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            jpeg = cv2.imencode(".jpg", image)[1].tobytes()
            try:
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            except OSError:
                return
            time.sleep(0.1)

    def log_message(self, *args: object) -> None:
        pass


def serve_mjpeg(port: int) -> ThreadingHTTPServer:
    MjpegHandler.serving.set()
    server = ThreadingHTTPServer(("127.0.0.1", port), MjpegHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def close_mjpeg(server: ThreadingHTTPServer) -> None:
    """Stop the MJPEG camera: its streams end, the server closes."""
    MjpegHandler.serving.clear()
    server.shutdown()
    server.server_close()


def test_an_http_mjpeg_camera_that_drops_is_read_again_soon(engine: Engine, redis: Redis) -> None:  # noqa: F811
    port = free_port()
    server = serve_mjpeg(port)
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=2, max_wait_s=0.1, max_queued_jobs=10_000)
    source = VideoSource(f"http://127.0.0.1:{port}/stream.mjpg", "L1", "C1", engine=engine, stall_timeout_s=STALL_TIMEOUT_S)
    thread, stop = running(source, publisher)
    try:
        wait_for(lambda: len(published(redis)) >= 10, 20, "frames from the camera")
        close_mjpeg(server)
        wait_for(lambda: state_of(engine, redis) == "down", STALL_TIMEOUT_S + 5, "the drop to be told")
        time.sleep(2)
        back_at = time.time()
        server = serve_mjpeg(port)
        wait_for(lambda: published(redis)[-1] > back_at, 10, "frames after the camera's return")
        assert min(t for t in published(redis) if t > back_at) - back_at < 2.0
        assert state_of(engine, redis) == "streaming"
    finally:
        stop.set()
        thread.join(15)
        close_mjpeg(server)


def test_frames_a_live_camera_could_not_grab_while_publishing_blocked_are_counted(engine: Engine, redis: Redis) -> None:  # noqa: F811
    """A full queue under "block" holds the capture up: the frames the camera sent meanwhile (about the
    time blocked times its rate) are counted as missed, in the run's stats and as a source event."""
    port = free_port()
    server = serve_mjpeg(port)
    publisher = Publisher(redis, queue_name=QUEUE, batch_size=1, max_wait_s=0, max_queued_jobs=1, policy="block")
    source = VideoSource(f"http://127.0.0.1:{port}/stream.mjpg", "L1", "C1", engine=engine, fps_cap=10, stall_timeout_s=STALL_TIMEOUT_S)
    stop = threading.Event()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(source.run(publisher, stop_event=stop)))
    thread.start()
    try:
        wait_for(lambda: len(published(redis)) == 1, 20, "the first frame to fill the queue")
        time.sleep(3)  # the next publish waits for room meanwhile
        redis.delete(f"rq:queue:{QUEUE}")  # room again
        wait_for(lambda: any(kind == "missed" for kind, _, _ in events(engine)), 10, "the missed frames to be told")
    finally:
        stop.set()
        thread.join(15)
        close_mjpeg(server)
    (message,) = [message for kind, _, message in events(engine) if kind == "missed"]
    blocked_s, missed = (float(n) for n in re.fullmatch(r"publishing blocked for ([\d.]+) s: about (\d+) frames not grabbed", message).groups())
    assert blocked_s >= 2.5 and abs(missed - blocked_s * 10) <= 1  # the time blocked (shown to 0.1 s) at 10 frames/s
    assert outcome[0].missed == missed


def test_a_camera_that_never_existed_exits_2_at_once_saying_why(
    rtsp_camera: RtspCamera, engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(engine.url))
    monkeypatch.setenv("REDIS_URL", REDIS_TEST_URL)
    monkeypatch.setenv("LINEGUARD_QUEUE", QUEUE)
    missing = rtsp_camera.url.replace("/cam", "/no-such-camera")
    started = time.monotonic()
    code = main(["ingest", "video", missing, "--line", "L1", "--camera", "C1", "--no-progress"])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    print(f"\nnever-existing RTSP path: exit {code} after {seconds:.2f} s: {err.strip()}")
    assert code == 2 and seconds < 2
    assert "answers but serves no stream at /no-such-camera" in err and "--wait" in err
    (source,) = line_status(redis, engine, QUEUE)["sources"]
    assert source["state"] == "failed" and "no stream" in source["reason"]
