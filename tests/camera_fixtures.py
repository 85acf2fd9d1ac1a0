"""A real RTSP camera (GStreamer's RTSP server, tests/rtsp_server.py) and readers of what a video
source published and recorded, for the camera tests and bench/camera_truth.py."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from ci_requirements import requirement_missing
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, select

from ingest_fixtures import QUEUE
from store.schema import SourceEvent

RTSP_SERVER = Path(__file__).resolve().parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RtspCamera:
    """GStreamer's RTSP server in a subprocess of the system Python (which has its bindings)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> float:
        """Start serving; returns the time.time() it was ready."""
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SERVER), str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"
        return time.time()

    def signal(self, number: int) -> float:
        assert self.process is not None
        self.process.send_signal(number)
        return time.time()

    def stop(self) -> float:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        return time.time()


@pytest.fixture
def rtsp_camera() -> Iterator[RtspCamera]:
    check = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"],
        capture_output=True,
    )
    if check.returncode != 0:
        requirement_missing("GStreamer's RTSP server bindings are missing (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)")
    camera = RtspCamera()
    camera.start()
    yield camera
    camera.stop()


def published(redis: Redis, queue: str = QUEUE) -> list[float]:
    """Capture times (epoch seconds) of every frame in `queue`'s jobs, in order."""
    times = []
    for job_id in redis.lrange(f"rq:queue:{queue}", 0, -1):
        job = Job.fetch(job_id.decode(), connection=redis, serializer=JSONSerializer)
        times += [datetime.fromisoformat(item["captured_at"]).timestamp() for item in job.args[0]["frames"]]
    return sorted(times)


def events(engine: Engine) -> list[tuple[str, float, str]]:
    with engine.connect() as connection:
        rows = connection.execute(select(SourceEvent.kind, SourceEvent.at, SourceEvent.message).order_by(SourceEvent.id))
        return [(kind, at.timestamp(), message) for kind, at, message in rows]
