"""Queue health from Redis: queue depth, frames published and dropped, workers alive.

Reads only, through ``wire.protocol`` (which never runs rq's registry cleanups): the counters are the
ones the publisher keeps, the workers those registered on the queue with their heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError

from wire.protocol import queue_counters, worker_beats


@dataclass(frozen=True, slots=True)
class StreamCounters:
    """Frames one line and camera put into the queue, and frames dropped at a full queue."""

    line: str
    camera: str
    published: int
    dropped: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker registered on the queue: its name, state ("idle", "busy"...), last heartbeat (UTC)
    and whether that heartbeat is recent enough to count it alive."""

    name: str
    state: str
    last_heartbeat: datetime | None
    alive: bool = True


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """The queue's state now; ``error`` says why Redis could not be read (then the figures are empty)."""

    queue: str
    queued_jobs: int
    started_jobs: int
    failed_jobs: int
    published: int
    dropped: int
    streams: tuple[StreamCounters, ...]
    workers: tuple[WorkerInfo, ...]
    error: str | None = None


def queue_health(redis: Redis, queue_name: str) -> QueueHealth:
    """The health of ``queue_name`` on ``redis``; a Redis failure is reported in ``error``, not raised.

    The live page must keep showing the store's figures while Redis is down, so a connection error
    becomes a QueueHealth with zero counts and the reason.
    """
    try:
        counters = queue_counters(redis, queue_name)
        now = datetime.now(UTC)
        worker_infos = tuple(
            WorkerInfo(beat.name, beat.state, beat.last_heartbeat, beat.alive(now)) for beat in worker_beats(redis, queue_name)
        )
    except RedisError as error:
        return QueueHealth(queue_name, 0, 0, 0, 0, 0, (), (), error=f"{type(error).__name__}: {error}")
    streams = tuple(
        StreamCounters(stream["line"], stream["camera"], stream["published"], stream["dropped"])
        for stream in counters["streams"]
    )
    return QueueHealth(
        queue=queue_name,
        queued_jobs=counters["queued_jobs"],
        started_jobs=counters["started_jobs"],
        failed_jobs=counters["failed_jobs"],
        published=counters["published"],
        dropped=counters["dropped"],
        streams=streams,
        workers=worker_infos,
    )
