"""Engines, transactions, sessions and schema migrations.

SQLite (a file, WAL mode) is the default; PostgreSQL is chosen by URL (``postgresql+psycopg://...``).
The schema is brought to the newest migration by :func:`upgrade`, which every process may call at
start: on PostgreSQL concurrent callers queue on an advisory lock, on SQLite on the write lock.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import Error as PsycopgError
from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from store.dialect import SUPPORTED_DIALECTS
from store.errors import StoreError

#: Environment variable naming the database when no URL is given explicitly.
DATABASE_URL_ENV = "DATABASE_URL"
#: Database used when neither an explicit URL nor ``DATABASE_URL`` is given (relative to the cwd).
DEFAULT_DATABASE_URL = "sqlite:///lineguard-data/lineguard.db"
#: How long a SQLite connection waits for another writer's lock before failing, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Pause between tries to switch a new SQLite file to WAL while another connection holds it.
SQLITE_WAL_RETRY_S = 0.02
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations ("lineguard" in ASCII).
MIGRATION_LOCK_KEY = 0x6C696E6567756172
#: Seconds a new PostgreSQL connection may take before it counts as refused (unless the URL says).
POSTGRES_CONNECT_TIMEOUT_S = 10
#: SQLSTATEs of a PostgreSQL server that is going away or not yet there: admin/crash shutdown, starting up.
_POSTGRES_GOING_AWAY = {"57P01", "57P02", "57P03"}
#: Folder holding Alembic's env.py, script template and versions.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE).
_WRITES_OPTION = "lineguard_writes"


def database_url(explicit: str | None = None) -> str:
    """The database URL to use: ``explicit``, else ``$DATABASE_URL``, else the default SQLite file.

    ``postgresql://`` and ``postgres://`` URLs are given the psycopg (v3) driver, the one installed.
    """
    chosen = explicit or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    return _with_supported_driver(_parse_url(chosen)).render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """A new engine for ``url``; SQLite files get their folder created and WAL, foreign keys, busy timeout.

    Engines hold connection pools: create one per process and URL and keep it (caching is the caller's).
    """
    parsed = _with_supported_driver(_parse_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def is_database_outage(error: BaseException) -> bool:
    """Whether `error` means the database is away for now (to be waited for), not a bug or bad data.

    PostgreSQL: a connection that could not be made or was lost (no SQLSTATE, class 08, or the server
    shutting down or starting). SQLite: the file is locked by another writer for longer than the busy
    timeout. Anything else (a missing table, a constraint) is not an outage.
    """
    if isinstance(error, PoolTimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause = error.orig
    if isinstance(cause, PsycopgError):
        state = cause.sqlstate
        return state is None or state.startswith("08") or state in _POSTGRES_GOING_AWAY
    if isinstance(cause, sqlite3.OperationalError):
        message = str(cause)
        return "locked" in message or "busy" in message
    return False


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write; committed on success, rolled back on error.

    On SQLite the transaction takes the write lock at its start (``BEGIN IMMEDIATE``), so a
    read-then-write transaction waits for other writers instead of failing with "database is locked".
    """
    with engine.connect() as connection:
        connection.execution_options(**{_WRITES_OPTION: True})
        with connection.begin():
            yield connection


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker bound to ``engine`` whose objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the migrations shipped in this package (no alembic.ini needed).

    With ``url``, Alembic commands that open their own connection (e.g.
    ``command.revision(alembic_config(url), autogenerate=True, message=...)``) use that database.
    """
    config = Config()
    # Config values go through ConfigParser interpolation, where '%' must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", database_url(url).replace("%", "%%"))
    return config


def upgrade(target: str | Engine) -> None:
    """Bring the database at ``target`` (URL or engine) to the newest schema; a no-op when it is there.

    Safe to call at every start and from several processes at once.
    """
    engine = target if isinstance(target, Engine) else make_engine(target)
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; a concurrent caller then finds the schema at head.
                connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if engine is not target:
            engine.dispose()


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def schema_revision(engine: Engine) -> str | None:
    """The migration revision the database is at, or None for a database never upgraded."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as error:  # SQLAlchemy raises ArgumentError or ValueError depending on the flaw
        raise StoreError(f"invalid database URL {url!r}: {error}") from error


def _with_supported_driver(url: URL) -> URL:
    backend = url.get_backend_name()
    if backend == "postgres":  # the spelling some hosting services put in DATABASE_URL
        url = url.set(drivername="postgresql")
        backend = "postgresql"
    if backend not in SUPPORTED_DIALECTS:
        raise StoreError(
            f"database URL {url.render_as_string()!r} names backend {backend!r}; "
            f"supported: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if backend == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_engine(url: URL) -> Engine:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module so _begin_sqlite_transaction can choose the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}")
        _switch_to_wal(cursor)
        # With WAL, NORMAL stays consistent; only a power loss can undo the last commits.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """PRAGMA journal_mode = WAL, retried while another connection holds the file: switching a new
    file takes an exclusive lock without waiting for it (the busy timeout does not apply), so
    processes opening a new database at once would otherwise fail. Once one has switched it, the
    others find it in WAL mode."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(SQLITE_WAL_RETRY_S)


def _begin_sqlite_transaction(connection: Connection) -> None:
    writes = connection.get_execution_options().get(_WRITES_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
