"""Fixtures shared by the ingest tests: a flushed Redis database and an upgraded SQLite store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from ci_requirements import requirement_missing
from redis import Redis
from sqlalchemy import Engine

from ingest.publisher import Publisher
from store.db import make_engine, upgrade
from server_urls import redis_test_url

T = TypeVar("T")
REDIS_TEST_URL = redis_test_url(15)
QUEUE = "lineguard-test"


@pytest.fixture
def redis() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_TEST_URL)
    try:
        connection.ping()
    except Exception as error:  # noqa: BLE001 - any failure to reach Redis means the same here
        requirement_missing(f"Redis at {REDIS_TEST_URL} is unreachable: {error}")
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    database = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(database)
    yield database
    database.dispose()


def stopped_at_a_full_queue(run: Callable[[threading.Event], T], publisher: Publisher, buffered: int) -> T:
    """What `run(stop_event)` returns when stopped while `publisher` waits for room with `buffered`
    frames (its queue bound being one job); fails the test if the run ignores the stop for a second."""
    stop = threading.Event()
    results: list[T] = []
    running = threading.Thread(target=lambda: results.append(run(stop)))
    running.start()
    deadline = time.monotonic() + 10
    while not (publisher.queue.count == 1 and publisher.buffered == buffered) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the next batch waits for room by now
    stop.set()
    running.join(timeout=1)
    assert not running.is_alive(), "the run ignored its stop at a full queue"
    return results[0]
