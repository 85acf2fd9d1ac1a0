"""Publishing frames into Redis: frame bytes under keys with a TTL, micro-batches as rq jobs.

Queue protocol (see docs/design.md):
- each frame's encoded bytes are stored once under `lineguard:frame:<frame_id>`, expiring after
  the frame TTL;
- one rq job (JSON serializer, never pickle) per micro-batch carries
  `{"frames": [Frame.metadata() + {"key", "enqueued_at"}, ...]}`;
- the queue is bounded by its number of waiting jobs: at the bound the publisher blocks or drops
  the batch (its policy); published and dropped frames are counted per "<line>/<camera>" in the
  Redis hashes `lineguard:published` and `lineguard:drops`.

The frame keys, the published counters and the job are written in one Redis transaction, so a
worker never sees a job whose frames are not there yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Literal, get_args

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from ingest.errors import QueueFullError
from ingest.frames import Frame

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_NAME = "lineguard"
"""Name of the rq queue that workers listen on."""

DEFAULT_JOB_FUNCTION = "worker.jobs.score_frames"
"""Dotted path of the job function; rq resolves it in the worker, never here."""

FRAME_KEY_PREFIX = "lineguard:frame:"
"""Prefix of the Redis key that holds one frame's encoded bytes."""

PUBLISHED_KEY = "lineguard:published"
"""Redis hash: frames enqueued, per "<line>/<camera>" field."""

DROPS_KEY = "lineguard:drops"
"""Redis hash: frames dropped at a full queue, per "<line>/<camera>" field."""

BLOCK_POLL_S = 0.05
"""How often a blocked publisher looks at the queue length again."""

DROP_WARNING_INTERVAL_S = 10.0
"""At most one drop warning per this many seconds; the next warning reports the drops between."""

BackpressurePolicy = Literal["block", "drop"]
"""What a publisher does at a full queue: wait for room, or drop the micro-batch (counted)."""


def frame_key(frame_id: str) -> str:
    """Return the Redis key that holds the encoded bytes of frame `frame_id`."""
    return f"{FRAME_KEY_PREFIX}{frame_id}"


def make_queue(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> Queue:
    """Return the rq queue `queue_name` on `redis`, with the JSON serializer used everywhere."""
    return Queue(queue_name, connection=redis, serializer=JSONSerializer)


def _stream_counts(frames: Sequence[Frame]) -> Counter[str]:
    """Count `frames` per "<line>/<camera>", the field name of the counter hashes."""
    return Counter(f"{frame.line}/{frame.camera}" for frame in frames)


class Publisher:
    """Buffers frames into micro-batches and enqueues each batch as one rq job.

    A batch is flushed when it holds `batch_size` frames or when its oldest frame has waited
    `max_wait_s`. The wait is checked on `publish`, `poll` and `flush`; a source calls `poll`
    in its loop (and may sleep until `seconds_until_flush`) so a slow source still flushes on
    time, and `close` at its end. One publisher serves one thread.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str = DEFAULT_QUEUE_NAME,
        batch_size: int = 8,
        max_wait_s: float = 0.5,
        max_queued_jobs: int = 128,
        policy: BackpressurePolicy = "block",
        block_timeout_s: float | None = None,
        frame_ttl_s: int = 3600,
        job_function: str = DEFAULT_JOB_FUNCTION,
        job_timeout_s: int = 300,
        result_ttl_s: int = 0,
        failure_ttl_s: int = 86400,
    ) -> None:
        """Create a publisher on `redis`.

        Args:
            redis: connection (bytes responses, as rq needs).
            queue_name: rq queue to enqueue on.
            batch_size: frames per job at most.
            max_wait_s: longest time a buffered frame waits for its batch to fill.
            max_queued_jobs: queue bound in waiting jobs; at the bound `policy` applies.
            policy: "block" waits for room, "drop" drops the batch and counts it.
            block_timeout_s: with "block", raise QueueFullError after waiting this long;
                None waits as long as it takes.
            frame_ttl_s: lifetime of frame bytes in Redis; a frame not scored by then expires.
            job_function: dotted path of the worker's job function.
            job_timeout_s: rq's limit on one job's run time.
            result_ttl_s: how long rq keeps a finished job (0: delete at once).
            failure_ttl_s: how long rq keeps a failed job for inspection.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if max_queued_jobs < 1:
            raise ValueError(f"max_queued_jobs must be at least 1, got {max_queued_jobs}")
        if policy not in get_args(BackpressurePolicy):
            raise ValueError(f"policy must be one of {get_args(BackpressurePolicy)}, got {policy!r}")
        if block_timeout_s is not None and block_timeout_s < 0:
            raise ValueError(f"block_timeout_s must be >= 0 or None, got {block_timeout_s}")
        if frame_ttl_s < 1:
            raise ValueError(f"frame_ttl_s must be at least 1 second, got {frame_ttl_s}")
        if "." not in job_function:
            raise ValueError(f"job_function must be a dotted path like 'pkg.module.func', got {job_function!r}")
        self._redis = redis
        self._queue = make_queue(redis, queue_name)
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._max_queued_jobs = max_queued_jobs
        self._policy = policy
        self._block_timeout_s = block_timeout_s
        self._frame_ttl_s = frame_ttl_s
        self._job_function = job_function
        self._job_timeout_s = job_timeout_s
        self._result_ttl_s = result_ttl_s
        self._failure_ttl_s = failure_ttl_s
        self._buffer: list[Frame] = []
        self._oldest_buffered_at: float | None = None
        self._last_drop_warning_at: float | None = None
        self._drops_since_warning = 0
        self.published = 0
        """Frames enqueued by this publisher."""
        self.dropped = 0
        """Frames this publisher dropped at a full queue."""

    @property
    def queue(self) -> Queue:
        """The rq queue this publisher enqueues on."""
        return self._queue

    @property
    def buffered(self) -> int:
        """Frames waiting in the buffer for their batch to be flushed."""
        return len(self._buffer)

    def publish(self, frame: Frame) -> int:
        """Buffer `frame`; flush the batch if it is full or due. Returns the frames enqueued now."""
        if not self._buffer:
            self._oldest_buffered_at = time.monotonic()
        self._buffer.append(frame)
        if len(self._buffer) >= self._batch_size:
            return self.flush()
        return self.poll()

    def seconds_until_flush(self) -> float | None:
        """Seconds until the buffered batch is due (0 when overdue), or None when nothing is buffered."""
        if self._oldest_buffered_at is None:
            return None
        return max(0.0, self._oldest_buffered_at + self._max_wait_s - time.monotonic())

    def poll(self) -> int:
        """Flush the buffered batch if its oldest frame has waited `max_wait_s`. Returns frames enqueued."""
        if self.seconds_until_flush() == 0.0:
            return self.flush()
        return 0

    def flush(self) -> int:
        """Enqueue everything buffered now, in batches of at most `batch_size`.

        Returns the number of frames enqueued (dropped ones are not). Raises QueueFullError when
        policy "block" waited `block_timeout_s` in vain; the unsent frames stay buffered.
        """
        enqueued = 0
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            if self._wait_for_room():
                self._enqueue(batch)
                enqueued += len(batch)
            else:
                self._drop(batch)
            del self._buffer[: len(batch)]
        self._oldest_buffered_at = None
        return enqueued

    def idle(self, seconds: float, stop_event: threading.Event) -> bool:
        """Wait up to `seconds` for `stop_event`, flushing the buffered batch when it falls due.

        Sources call this instead of sleeping, so a batch never waits longer than `max_wait_s`
        because its source is idle. Returns True as soon as `stop_event` is set.
        """
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            due = self.seconds_until_flush()
            if stop_event.wait(remaining if due is None else min(remaining, due)):
                return True
            self.poll()
        return stop_event.is_set()

    def close(self) -> None:
        """Flush what is buffered; call at the end of a source's run."""
        self.flush()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _wait_for_room(self) -> bool:
        """Return True when the queue has room for a job; False when the batch is to be dropped."""
        if self._queue.count < self._max_queued_jobs:
            return True
        if self._policy == "drop":
            return False
        started = time.monotonic()
        logger.info("queue %r full (%d jobs); waiting for room", self._queue.name, self._max_queued_jobs)
        while self._queue.count >= self._max_queued_jobs:
            waited = time.monotonic() - started
            if self._block_timeout_s is not None and waited >= self._block_timeout_s:
                raise QueueFullError(
                    f"queue {self._queue.name!r} stayed full ({self._max_queued_jobs} jobs) "
                    f"for {waited:.1f} s (block_timeout_s={self._block_timeout_s})"
                )
            time.sleep(BLOCK_POLL_S)
        logger.info("queue %r has room again after %.1f s", self._queue.name, time.monotonic() - started)
        return True

    def _enqueue(self, batch: list[Frame]) -> None:
        """Store the batch's frame bytes, count them, and enqueue their job, in one transaction."""
        enqueued_at = datetime.now(timezone.utc).isoformat()
        payload: dict[str, Any] = {
            "frames": [
                {**frame.metadata(), "key": frame_key(frame.frame_id), "enqueued_at": enqueued_at}
                for frame in batch
            ]
        }
        streams = _stream_counts(batch)
        with self._redis.pipeline(transaction=True) as pipe:
            # MULTI first: rq adds its own commands to this pipeline and requires the transaction open.
            pipe.multi()
            for frame in batch:
                pipe.set(frame_key(frame.frame_id), frame.data, ex=self._frame_ttl_s)
            for stream, count in streams.items():
                pipe.hincrby(PUBLISHED_KEY, stream, count)
            self._queue.enqueue(
                self._job_function,
                payload,
                job_timeout=self._job_timeout_s,
                result_ttl=self._result_ttl_s,
                failure_ttl=self._failure_ttl_s,
                # rq's default description repeats the whole payload; a summary is enough.
                description=f"{self._job_function}: {len(batch)} frames from {', '.join(sorted(streams))}",
                pipeline=pipe,
            )
            pipe.execute()
        self.published += len(batch)

    def _drop(self, batch: list[Frame]) -> None:
        """Count a dropped batch in Redis and on this publisher; warn at most every few seconds."""
        with self._redis.pipeline(transaction=True) as pipe:
            for stream, count in _stream_counts(batch).items():
                pipe.hincrby(DROPS_KEY, stream, count)
            pipe.execute()
        self.dropped += len(batch)
        self._drops_since_warning += len(batch)
        now = time.monotonic()
        if self._last_drop_warning_at is None or now - self._last_drop_warning_at >= DROP_WARNING_INTERVAL_S:
            logger.warning(
                "queue %r full (%d jobs): dropped %d frames since the last warning, %d in all",
                self._queue.name, self._max_queued_jobs, self._drops_since_warning, self.dropped,
            )
            self._last_drop_warning_at = now
            self._drops_since_warning = 0


def _read_stream_hash(redis: Redis, key: str) -> dict[str, int]:
    """Read a per-"<line>/<camera>" counter hash as {field: count}."""
    return {
        (name.decode() if isinstance(name, bytes) else name): int(value)
        for name, value in redis.hgetall(key).items()
    }


def queue_counters(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> dict[str, Any]:
    """Read the queue's health: depth, jobs in progress or failed, frames published and dropped.

    Returns a JSON-safe dict:
        {"queue": name, "queued_jobs": int, "started_jobs": int, "failed_jobs": int,
         "published": int, "dropped": int,
         "streams": [{"line", "camera", "published", "dropped"}, ...] sorted by line, camera}
    """
    queue = make_queue(redis, queue_name)
    published = _read_stream_hash(redis, PUBLISHED_KEY)
    dropped = _read_stream_hash(redis, DROPS_KEY)
    streams = []
    for stream in sorted(published.keys() | dropped.keys()):
        line, _, camera = stream.partition("/")
        streams.append(
            {"line": line, "camera": camera, "published": published.get(stream, 0), "dropped": dropped.get(stream, 0)}
        )
    return {
        "queue": queue_name,
        "queued_jobs": queue.count,
        "started_jobs": queue.started_job_registry.count,
        "failed_jobs": queue.failed_job_registry.count,
        "published": sum(published.values()),
        "dropped": sum(dropped.values()),
        "streams": streams,
    }
