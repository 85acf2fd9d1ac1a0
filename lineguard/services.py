"""Opening the shared services that settings name: Redis and the store, with errors a user can act on."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from lineguard.settings import Settings
from store.artifacts import ArtifactStore, open_artifact_store
from store.db import database_url, head_revision, make_engine, schema_revision, upgrade
from wire.connections import connect_redis as redis_client
from wire.connections import redact_url


class ServiceUnavailableError(Exception):
    """Redis or the database named by the settings does not answer, or the schema is behind."""


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at `url`."""
    connection = redis_client(url)
    try:
        return bool(connection.ping())
    except RedisError:
        return False
    finally:
        connection.close()


def connect_redis(settings: Settings) -> Redis:
    """A connection to the line's Redis, checked to answer (bytes responses, as rq needs)."""
    connection = redis_client(settings.redis_url)
    try:
        connection.ping()
    except RedisError as error:
        connection.close()
        raise ServiceUnavailableError(
            f"cannot reach Redis at {redact_url(settings.redis_url)} (set REDIS_URL, or start redis-server): {error}"
        ) from error
    return connection


def open_store(settings: Settings, *, migrate: bool = False) -> Engine:
    """An engine on the line's database. With `migrate` its schema is brought up to date (only
    `lineguard db upgrade`, a worker's start and the demo do that); otherwise the schema must
    already be at the newest revision, and a database behind it is a clear error."""
    url = database_url(settings.database_url)
    shown = make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
            return engine
        revision, head = schema_revision(engine), head_revision()
    except OperationalError as error:
        engine.dispose()
        raise ServiceUnavailableError(f"cannot open the database at {shown} (DATABASE_URL): {error.orig}") from error
    if revision != head:
        engine.dispose()
        found = "has no lineguard schema" if revision is None else f"is at schema revision {revision}"
        raise ServiceUnavailableError(
            f"the database at {shown} {found}, this lineguard needs {head}: run `lineguard db upgrade` (or start a worker)"
        )
    return engine


def open_artifacts(settings: Settings) -> ArtifactStore:
    """The line's artifact store (LINEGUARD_ARTIFACTS)."""
    return open_artifact_store(settings.artifacts_url)
