"""Connecting to the line's Redis, and riding out outages of Redis or the database.

An outage is a wait, not a failure: `OutageWaiter.call` tries a step again after a capped
exponential backoff for as long as the dependency is away, says once that it went away and once that
it is back, and hands every other error to the caller. What counts as an outage is the waiter's
``is_outage`` (`is_redis_outage` here, ``store.db.is_database_outage`` for the database).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis import Redis
from redis.exceptions import AuthenticationError, ConnectionError, TimeoutError

logger = logging.getLogger(__name__)

REDIS_CONNECT_TIMEOUT_S = 5.0
"""Seconds to wait for a TCP (and TLS) connection to Redis."""
REDIS_SOCKET_TIMEOUT_S = 15.0
"""Seconds to wait for Redis to answer a command; a worker raises its own above its blocking dequeue."""
BACKOFF_INITIAL_S = 0.5
"""First wait before a step is tried again in an outage."""
BACKOFF_MAX_S = 30.0
"""Longest wait between two tries in an outage (the wait doubles up to it)."""
STOP_POLL_S = 0.2
"""How often a wait looks at its stop condition."""

T = TypeVar("T")


class OutageInterrupted(Exception):
    """The process was asked to stop while it waited for a dependency to come back."""


def connect_redis(url: str, *, socket_timeout_s: float = REDIS_SOCKET_TIMEOUT_S) -> Redis:
    """A Redis client for `url` (redis://, rediss:// with TLS, unix://; passwords and TLS options as
    in the URL) with connect and socket timeouts, so a silent network fails in seconds; bytes
    responses, as rq needs. Connects lazily."""
    return Redis.from_url(
        url,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        socket_timeout=socket_timeout_s,
        # An idle pooled connection is checked before use, so a restarted Redis is noticed at once.
        health_check_interval=30,
    )


def redact_url(url: str) -> str:
    """`url` fit to print: its password replaced by '***'."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def is_redis_outage(error: BaseException) -> bool:
    """Whether `error` means Redis is away (connection refused or lost, timeout, still loading its
    data); a refused password is a configuration error, not an outage."""
    return isinstance(error, ConnectionError | TimeoutError) and not isinstance(error, AuthenticationError)


class OutageWaiter:
    """Tries steps that need one dependency until they succeed, for as long as it is away.

    One waiter per dependency and process: whichever step notices the outage first logs it, the
    first step to succeed afterwards logs its end. Thread-safe.
    """

    def __init__(
        self,
        service: str,
        is_outage: Callable[[BaseException], bool],
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_recovered: Callable[[], None] = lambda: None,
        initial_s: float = BACKOFF_INITIAL_S,
        max_s: float = BACKOFF_MAX_S,
    ) -> None:
        """Args:
            service: how messages name the dependency ("Redis", "the database").
            is_outage: tells an outage from any other error.
            should_stop: polled while waiting; when it turns true the wait ends in OutageInterrupted.
            on_recovered: called once when an outage ends.
            initial_s, max_s: first and longest wait between tries.
        """
        if not 0 < initial_s <= max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.service = service
        self._is_outage = is_outage
        self._should_stop = should_stop
        self._on_recovered = on_recovered
        self._initial_s = initial_s
        self._max_s = max_s
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self.outages = 0
        """Outages seen by this waiter."""

    @property
    def in_outage(self) -> bool:
        """Whether the dependency is away, as far as this waiter knows."""
        return self._down_since is not None

    def call(self, step: Callable[[], T], what: str) -> T:
        """Run `step` until it succeeds; outages are waited out, other errors propagate.

        `what` names the step in the outage warning ("writing 8 rows").
        """
        delay = self._initial_s
        while True:
            try:
                result = step()
            except Exception as error:
                if not self._is_outage(error):
                    raise
                self.failed(error, what)
                self._sleep(delay, error)
                delay = min(2 * delay, self._max_s)
                continue
            self.succeeded()
            return result

    def failed(self, error: BaseException, what: str) -> None:
        """Note that a step failed with an outage; the first failure of an outage is logged."""
        with self._lock:
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
            self.outages += 1
        logger.warning(
            "%s is unreachable while %s (%s: %s); waiting for it, trying again every %g s at most",
            self.service, what, type(error).__name__, error, self._max_s,
        )

    def succeeded(self) -> None:
        """Note that a step succeeded; ends the outage, if there was one, with a log line."""
        if self._down_since is None:
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
        if down_since is not None:
            logger.warning("%s is back after %.1f s", self.service, time.monotonic() - down_since)
            self._on_recovered()

    def _sleep(self, seconds: float, error: BaseException) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._should_stop():
                raise OutageInterrupted(f"stopped while waiting for {self.service}: {error}") from error
            time.sleep(min(STOP_POLL_S, remaining))
        if self._should_stop():
            raise OutageInterrupted(f"stopped while waiting for {self.service}: {error}") from error
