"""Fixtures shared by the ingest tests: a flushed Redis database and an upgraded SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_requirements import requirement_missing
from redis import Redis
from sqlalchemy import Engine

from store.db import make_engine, upgrade
from server_urls import redis_test_url

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
