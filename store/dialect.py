"""SQL that differs between SQLite and PostgreSQL, behind one portable name each.

Only these two dialects are supported; any other raises :class:`~store.errors.StoreError` (or
SQLAlchemy's ``CompileError`` when an expression is compiled for it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Float
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from store.errors import StoreError

SUPPORTED_DIALECTS: tuple[str, ...] = ("sqlite", "postgresql")


def upsert_insert(engine: Engine, entity: type[DeclarativeBase]) -> sqlite.Insert | postgresql.Insert:
    """An INSERT into ``entity``'s table that supports ``on_conflict_do_update``/``do_nothing`` here."""
    if engine.dialect.name == "sqlite":
        return sqlite.insert(entity)
    if engine.dialect.name == "postgresql":
        return postgresql.insert(entity)
    raise StoreError(
        f"database dialect {engine.dialect.name!r} is not supported; use one of {', '.join(SUPPORTED_DIALECTS)}"
    )


class seconds_between(FunctionElement[float]):
    """``seconds_between(later, earlier)``: the time from ``earlier`` to ``later`` in seconds, a float.

    Millisecond precision on SQLite (its date functions keep milliseconds), microseconds on PostgreSQL.
    """

    type = Float()
    name = "seconds_between"
    inherit_cache = True


class epoch_bucket(FunctionElement[int]):
    """``epoch_bucket(moment, width_seconds)``: start of the bucket holding ``moment``, in epoch seconds.

    Buckets are ``width_seconds`` wide and aligned to the Unix epoch. Instants are first rounded to
    the millisecond, as SQLite's date functions do, so an instant falls in the same bucket on both.
    """

    type = BigInteger()
    name = "epoch_bucket"
    inherit_cache = True


def _arguments(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> list[str]:
    return [compiler.process(argument, **kw) for argument in element.clauses]


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    later, earlier = _arguments(element, compiler, **kw)
    # date_part gives float8; EXTRACT gives numeric since PostgreSQL 14, about twice as slow to aggregate.
    return f"date_part('epoch', {later} - {earlier})"


@compiles(epoch_bucket, "sqlite")
def _epoch_bucket_sqlite(element: epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    moment, width = _arguments(element, compiler, **kw)
    # 2440587.5 is the Julian day of 1970-01-01T00:00Z. julianday() holds whole (rounded) milliseconds
    # and the float arithmetic errs by well under 0.1 ms, so adding half a millisecond before
    # truncating gives the exact whole second (julianday is about twice as fast as strftime('%s')).
    epoch = f"CAST((julianday({moment}) - 2440587.5) * 86400.0 + 0.0005 AS INTEGER)"
    return f"(({epoch} / CAST({width} AS INTEGER)) * CAST({width} AS INTEGER))"


@compiles(epoch_bucket, "postgresql")
def _epoch_bucket_postgresql(element: epoch_bucket, compiler: SQLCompiler, **kw: Any) -> str:
    moment, width = _arguments(element, compiler, **kw)
    # + 0.0005 rounds to the millisecond first, like SQLite; date_part is float8 (see seconds_between).
    epoch = f"CAST(FLOOR(date_part('epoch', {moment}) + 0.0005) AS BIGINT)"
    return f"(({epoch} / CAST({width} AS BIGINT)) * CAST({width} AS BIGINT))"
