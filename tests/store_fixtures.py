"""Fixtures for tests that use the store: a fresh database of each dialect, and records to write.

Import the fixtures into a test module (``from store_fixtures import db_url, store_engine``) to use them.
PostgreSQL tests skip (fail in CI), saying why, when the server is unreachable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from ci_requirements import requirement_missing
from psycopg import sql
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from store import InspectionRecord, make_engine, upgrade

#: Environment variable naming the PostgreSQL database from which test databases are created.
POSTGRES_ADMIN_URL_ENV = "LINEGUARD_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: A fixed instant that test records are placed around (a Monday, 12:00 UTC).
BASE_TIME = datetime(2025, 3, 3, 12, 0, 0, tzinfo=UTC)


def _libpq_conninfo(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_run_database() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test run and dropped after it."""
    admin_url = os.environ.get(POSTGRES_ADMIN_URL_ENV, DEFAULT_POSTGRES_ADMIN_URL)
    name = f"lineguard_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(_libpq_conninfo(admin_url), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        requirement_missing(f"PostgreSQL at {admin_url} is unreachable (set {POSTGRES_ADMIN_URL_ENV}): {error}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq_conninfo(admin_url), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty database (no tables) of each dialect, fresh for every test.

    SQLite: a file under tmp_path. PostgreSQL: a new schema in the run's database, made the
    connection's search path, dropped after the test.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    run_url = request.getfixturevalue("postgres_run_database")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(_libpq_conninfo(run_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield make_url(run_url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(_libpq_conninfo(run_url), autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store_engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh, upgraded database of each dialect; disposed after the test."""
    engine = make_engine(db_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def make_record(frame_id: str, finished_at: datetime = BASE_TIME, **changes: object) -> InspectionRecord:
    """A valid 'good' record for line-1/cam-0 finished at ``finished_at``, with ``changes`` applied."""
    record = InspectionRecord(
        frame_id=frame_id,
        line="line-1",
        camera="cam-0",
        source="/data/line-1/cam-0",
        captured_at=finished_at - timedelta(milliseconds=250),
        enqueued_at=finished_at - timedelta(milliseconds=200),
        started_at=finished_at - timedelta(milliseconds=50),
        finished_at=finished_at,
        verdict="good",
        model_version="model-a",
        score=0.2,
        raw_score=1.5,
        threshold=3.0,
        worker="worker-1",
    )
    return replace(record, **changes)
