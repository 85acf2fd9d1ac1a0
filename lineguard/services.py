"""Opening the shared services that settings name: Redis and the store, with errors a user can act on."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from lineguard.settings import Settings
from store.artifacts import ArtifactStore, open_artifact_store
from store.db import database_url, make_engine, upgrade

#: Seconds to wait for Redis to answer before saying it is unreachable.
REDIS_CONNECT_TIMEOUT_S = 3.0


class ServiceUnavailableError(Exception):
    """Redis or the database named by the settings does not answer."""


def redis_answers(url: str) -> bool:
    """Whether a Redis server answers PING at `url`."""
    connection = Redis.from_url(url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)
    try:
        return bool(connection.ping())
    except RedisError:
        return False
    finally:
        connection.close()


def connect_redis(settings: Settings) -> Redis:
    """A connection to the line's Redis, checked to answer (bytes responses, as rq needs)."""
    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S)
    try:
        connection.ping()
    except RedisError as error:
        connection.close()
        raise ServiceUnavailableError(
            f"cannot reach Redis at {settings.redis_url} (set REDIS_URL, or start redis-server): {error}"
        ) from error
    return connection


def open_store(settings: Settings) -> Engine:
    """An engine on the line's database, its schema brought up to date (a no-op when it is)."""
    url = database_url(settings.database_url)
    engine = make_engine(url)
    try:
        upgrade(engine)
    except OperationalError as error:
        engine.dispose()
        shown = make_url(url).render_as_string(hide_password=True)
        raise ServiceUnavailableError(f"cannot open the database at {shown} (DATABASE_URL): {error.orig}") from error
    return engine


def open_artifacts(settings: Settings) -> ArtifactStore:
    """The line's artifact store (LINEGUARD_ARTIFACTS)."""
    return open_artifact_store(settings.artifacts_url)
