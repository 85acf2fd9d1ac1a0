"""Fixtures and helpers for tests of a running line (worker, line commands, demo).

They use the real Redis, in a database of its own (flushed before and after each test), and the
store fixtures' databases. Import what a module uses, e.g.
``from line_fixtures import line_redis, line_settings, make_part``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from ci_requirements import requirement_missing
from redis import Redis
from sqlalchemy import Engine, func, select

from ingest.frames import Frame, new_frame_id
from server_urls import redis_test_url
from ingest.publisher import Publisher
from lineguard.registration import register_checkpoint as register_model_file
from lineguard.settings import Settings
from model.synthetic import good_part
from store.db import make_engine, upgrade
from store.schema import Inspection

#: Redis database of these tests; the ingest tests use 15.
LINE_REDIS_URL = redis_test_url(14)
LINE = "line-1"
CAMERA = "cam-1"
QUEUE = "lineguard-test"
#: Side of the generated parts, the small checkpoint's input size.
PART_SIZE = 128
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def line_redis() -> Iterator[Redis]:
    """The test Redis database, empty."""
    connection = Redis.from_url(LINE_REDIS_URL)
    try:
        connection.ping()
    except Exception as error:  # noqa: BLE001 - any failure to reach Redis means the same here
        requirement_missing(f"Redis at {LINE_REDIS_URL} is unreachable: {error}")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh, upgraded SQLite store, for tests whose subject does not depend on the dialect."""
    engine = make_engine(f"sqlite:///{tmp_path / 'line.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def line_settings(line_redis: Redis, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a line on the test Redis and a fresh database of each dialect, also set in the
    environment (for the CLI and for subprocesses)."""
    return _settings_in_environment(db_url, tmp_path, monkeypatch)


@pytest.fixture
def sqlite_line_settings(line_redis: Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """As line_settings, on SQLite only: for tests whose subject does not depend on the dialect."""
    return _settings_in_environment(f"sqlite:///{tmp_path / 'line.db'}", tmp_path, monkeypatch)


def _settings_in_environment(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings(
        redis_url=LINE_REDIS_URL, database_url=database_url, artifacts_url=str(tmp_path / "artifacts"), queue_name=QUEUE
    )
    for variable, value in settings.environment().items():
        monkeypatch.setenv(variable, value)
    return settings


def register_checkpoint(engine: Engine, checkpoint: Path, line: str = LINE) -> str:
    """Register `checkpoint` and activate it for `line`; returns its version."""
    return register_model_file(engine, checkpoint, line)["version"]


def make_part(rng: np.random.Generator, defective: bool) -> np.ndarray:
    """(PART_SIZE, PART_SIZE, 3) uint8 RGB part; a defective one carries a patch of noise on the ring.

    The patch is a defect the small test model flags every time, unlike the subtler generated
    defects it was not trained long enough to separate.
    """
    image = good_part(PART_SIZE, rng)
    if defective:
        angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.3) * PART_SIZE
        x, y = int(PART_SIZE / 2 + radius * np.cos(angle)), int(PART_SIZE / 2 + radius * np.sin(angle))
        image[y - 8 : y + 8, x - 8 : x + 8] = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return image


def png(image: np.ndarray) -> bytes:
    """An RGB (or gray, or RGBA when 4 channels are given as BGRA) array as PNG bytes."""
    converted = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 and image.shape[2] == 3 else image
    return cv2.imencode(".png", converted)[1].tobytes()


def make_frame(data: bytes, origin: str, line: str = LINE) -> Frame:
    return Frame(
        frame_id=new_frame_id(),
        line=line,
        camera=CAMERA,
        source="test:line",
        captured_at=datetime.now(UTC),
        data=data,
        origin=origin,
    )


def publish(redis: Redis, frames: list[Frame], batch_size: int) -> None:
    """Publish `frames` on the test queue in jobs of `batch_size`."""
    with Publisher(redis, queue_name=QUEUE, batch_size=batch_size, max_wait_s=60) as publisher:
        for frame in frames:
            publisher.publish(frame)


def row_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(Inspection))


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def start_lineguard(*argv: str, log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """`lineguard ARGV...` as a subprocess of this test (environment inherited), output to `log_path`."""
    with log_path.open("wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "lineguard.cli", *argv], stdout=log_file, stderr=subprocess.STDOUT, cwd=cwd or REPO_ROOT
        )


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    """Send `sig` to `process` (if it still runs) and wait for its exit status."""
    return stop_all([process], sig, timeout_s)[0]


def stop_all(processes: list[subprocess.Popen[bytes]], sig: int = signal.SIGTERM, timeout_s: float = 30) -> list[int]:
    """Send `sig` to each of `processes` still running, then wait for their exit statuses: they stop
    side by side, not one after the other."""
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, sig)
    return [process.wait(timeout_s) for process in processes]
