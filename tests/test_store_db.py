"""Engines, URLs and migrations of the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from store_fixtures import db_url, postgres_run_database, store_engine  # noqa: F401  (fixtures)

from store import (
    StoreError,
    alembic_config,
    database_url,
    head_revision,
    make_engine,
    schema_revision,
    upgrade,
    write_transaction,
)
from store.schema import Base

TABLES = {"inspections", "models", "line_models", "reviews", "source_events", "ingested_files", "stream_frames"}


def test_database_url_prefers_explicit_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    assert database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"
    assert database_url(None) == "sqlite:///from-env.db"
    monkeypatch.delenv("DATABASE_URL")
    assert database_url(None) == "sqlite:///lineguard-data/lineguard.db"


@pytest.mark.parametrize("given", ["postgresql://u@h:5432/d", "postgres://u@h:5432/d"])
def test_postgres_urls_get_the_psycopg_driver(given: str) -> None:
    assert database_url(given) == "postgresql+psycopg://u@h:5432/d"


@pytest.mark.parametrize("bad", ["mysql://u@h/d", "not a url"])
def test_unsupported_or_invalid_urls_raise_store_errors(bad: str) -> None:
    with pytest.raises(StoreError, match="URL"):
        make_engine(bad)


def test_sqlite_engine_creates_the_folder_and_sets_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'deeper' / 'store.db'}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert (tmp_path / "nested" / "deeper").is_dir()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": 1}


def test_upgrade_creates_the_tables_and_is_idempotent(db_url: str) -> None:  # noqa: F811
    engine = make_engine(db_url)
    try:
        assert schema_revision(engine) is None
        upgrade(engine)
        upgrade(engine)
        upgrade(db_url)  # by URL too, as `lineguard db upgrade` does
        assert TABLES <= set(inspect(engine).get_table_names())
        assert schema_revision(engine) == head_revision()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        engine.dispose()


def test_downgrade_to_base_removes_the_tables_and_upgrade_restores_them(store_engine: Engine) -> None:  # noqa: F811
    config = alembic_config()
    with write_transaction(store_engine) as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert not TABLES & set(inspect(store_engine).get_table_names())
    upgrade(store_engine)
    assert TABLES <= set(inspect(store_engine).get_table_names())


def test_migrated_schema_matches_the_declared_tables(store_engine: Engine) -> None:  # noqa: F811
    with store_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_processes_opening_a_new_sqlite_file_at_once_all_connect(tmp_path: Path) -> None:
    """Switching a new file to WAL can fail at once with "database is locked" while another
    connection is switching it (the busy timeout does not cover it): several workers starting on a
    new database must all connect. Eight at once on each of sixty new files."""
    failures: list[BaseException] = []

    def connect(engine: Engine, start: threading.Barrier) -> None:
        start.wait()
        try:
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        except BaseException as error:  # collected and asserted on below
            failures.append(error)

    for trial in range(60):
        engines = [make_engine(f"sqlite:///{tmp_path / f'new-{trial}.db'}") for _ in range(8)]
        start = threading.Barrier(len(engines))
        threads = [threading.Thread(target=connect, args=(engine, start)) for engine in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for engine in engines:
            engine.dispose()
    assert failures == []


def test_concurrent_upgrades_from_several_engines_all_succeed(db_url: str) -> None:  # noqa: F811
    engines = [make_engine(db_url) for _ in range(3)]
    start = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def run(engine: Engine) -> None:
        start.wait()
        try:
            upgrade(engine)
        except BaseException as error:  # collected and asserted on below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    try:
        assert failures == []
        assert schema_revision(engines[0]) == head_revision()
    finally:
        for engine in engines:
            engine.dispose()
