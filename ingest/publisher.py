"""Publishing frames into Redis: frame bytes (or a frame's file path) under keys with a TTL,
micro-batches as rq jobs.

The wire format (keys, payload, job function, counters) is `wire.protocol`'s; this module decides
when a batch goes and what happens at a full queue:
- the queue is bounded by its number of waiting jobs: at the bound the publisher blocks or drops
  the batch (its policy); published and dropped frames are counted per "<line>/<camera>";
- the frame keys, the published counters and the job are written in one Redis transaction, so a
  worker never sees a job whose frames are not there yet;
- a Redis outage is waited out with the batch kept (`wire.connections.OutageWaiter`);
- a stop (the publisher's `should_stop`, or the stop event of the run it keeps a ledger for) ends a
  wait for room within `BLOCK_POLL_S` with PublishInterrupted, the unsent frames kept for the source;
- a source's ledger (`BatchLedger`) hears of each batch just before it is sent and of each batch
  dropped, so what was sent is known to the store whatever Redis forgets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Literal, Protocol, get_args

from redis import Redis
from rq import Queue

from ingest.errors import PublishInterrupted, QueueFullError
from ingest.frames import Frame
from wire.connections import OutageWaiter, is_redis_outage
from wire.protocol import (
    DEFAULT_QUEUE_NAME,
    DROPS_KEY,
    PUBLISHED_KEY,
    SCORE_FRAMES_FUNCTION,
    FrameEntry,
    enqueue_scoring_job,
    frame_key,
    make_queue,
    stream_field,
)

logger = logging.getLogger(__name__)

BLOCK_POLL_S = 0.05
"""How often a blocked publisher looks at the queue length again."""

DROP_WARNING_INTERVAL_S = 10.0
"""At most one drop warning per this many seconds; the next warning reports the drops between."""

BackpressurePolicy = Literal["block", "drop"]
"""What a publisher does at a full queue: wait for room, or drop the micro-batch (counted)."""


class BatchLedger(Protocol):
    """What a source keeps in the store about its frames, told by the publisher."""

    def before_enqueue(self, frames: Sequence[Frame]) -> None:
        """`frames` are about to be sent (write-ahead: called before the Redis transaction)."""

    def dropped(self, frames: Sequence[Frame]) -> None:
        """`frames` were dropped at a full queue and will not be sent."""


def _stream_counts(frames: Sequence[Frame]) -> Counter[str]:
    """Count `frames` per "<line>/<camera>", the field name of the counter hashes."""
    return Counter(stream_field(frame.line, frame.camera) for frame in frames)


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
        job_timeout_s: int = 300,
        result_ttl_s: int = 0,
        failure_ttl_s: int = 86400,
        should_stop: Callable[[], bool] = lambda: False,
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
            job_timeout_s: rq's limit on one job's run time.
            result_ttl_s: how long rq keeps a finished job (0: delete at once).
            failure_ttl_s: how long rq keeps a failed job for inspection.
            should_stop: polled while Redis is away (the wait ends in OutageInterrupted) and while
                the queue is full (PublishInterrupted); the unsent frames stay buffered.
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
        self._redis = redis
        self._queue = make_queue(redis, queue_name)
        self._batch_size = batch_size
        self._max_wait_s = max_wait_s
        self._max_queued_jobs = max_queued_jobs
        self._policy = policy
        self._block_timeout_s = block_timeout_s
        self._frame_ttl_s = frame_ttl_s
        self._should_stop = should_stop
        self._redis_waiter = OutageWaiter("Redis", is_redis_outage, should_stop=self._stopping)
        self._ledger: BatchLedger | None = None
        self._run_stop: threading.Event | None = None
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
    def redis(self) -> Redis:
        """The connection this publisher sends on."""
        return self._redis

    @property
    def queue(self) -> Queue:
        """The rq queue this publisher enqueues on."""
        return self._queue

    @property
    def buffered(self) -> int:
        """Frames waiting in the buffer for their batch to be flushed."""
        return len(self._buffer)

    def buffered_frame_ids(self) -> set[str]:
        """Ids of the frames in the buffer: not yet sent, so not yet anywhere but here."""
        return {frame.frame_id for frame in self._buffer}

    @contextmanager
    def keeping(self, ledger: BatchLedger, stop_event: threading.Event | None = None) -> Iterator[None]:
        """Tell `ledger` about every batch sent or dropped while the block runs; `stop_event` (the
        run's) ends waits as `should_stop` does."""
        self._ledger, self._run_stop = ledger, stop_event
        try:
            yield
        finally:
            self._ledger, self._run_stop = None, None

    def take_unsent(self) -> list[Frame]:
        """Empty the buffer and return what it held: frames a stop left unsent (see PublishInterrupted)."""
        unsent, self._buffer = self._buffer, []
        self._oldest_buffered_at = None
        return unsent

    def _stopping(self) -> bool:
        return self._should_stop() or (self._run_stop is not None and self._run_stop.is_set())

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
        policy "block" waited `block_timeout_s` in vain, PublishInterrupted when stopped while
        waiting; the unsent frames stay buffered.
        """
        enqueued = 0
        while self._buffer:
            batch = self._buffer[: self._batch_size]
            if self._redis_waiter.call(self._wait_for_room, "waiting for room in the queue"):
                if self._ledger is not None:
                    self._ledger.before_enqueue(batch)
                self._redis_waiter.call(lambda: self._enqueue(batch), f"sending a batch of {len(batch)} frames")
                enqueued += len(batch)
            else:
                self.drop(batch)
            del self._buffer[: len(batch)]
        self._oldest_buffered_at = None
        return enqueued

    def drop(self, frames: Sequence[Frame]) -> None:
        """Count `frames` as dropped (in Redis, per stream, and on this publisher) and tell the ledger:
        a full queue's batch under policy "drop", or frames a stop left unsent that cannot be read again."""
        self._redis_waiter.call(lambda: self._drop(frames), "counting a dropped batch")
        if self._ledger is not None:
            self._ledger.dropped(frames)

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
        """Return True when the queue has room for a job; False when the batch is to be dropped.
        Raises PublishInterrupted when a stop is asked for while it waits."""
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
            if self._stopping():
                raise PublishInterrupted(
                    f"stopped while queue {self._queue.name!r} was full; {len(self._buffer)} frames not sent"
                )
            time.sleep(BLOCK_POLL_S)
        logger.info("queue %r has room again after %.1f s", self._queue.name, time.monotonic() - started)
        return True

    def _enqueue(self, batch: list[Frame]) -> None:
        """Store the batch's frame bytes, count them, and enqueue their job, in one transaction."""
        enqueued_at = datetime.now(timezone.utc)
        entries = [
            FrameEntry(
                frame_id=frame.frame_id,
                line=frame.line,
                camera=frame.camera,
                source=frame.source,
                origin=frame.origin,
                sequence=frame.sequence,
                captured_at=frame.captured_at,
                enqueued_at=enqueued_at,
                expires_at=enqueued_at + timedelta(seconds=self._frame_ttl_s),
                key=frame_key(frame.frame_id),
                size=frame.size,
                reference=frame.reference.path if frame.reference is not None else None,
            )
            for frame in batch
        ]
        streams = _stream_counts(batch)
        with self._redis.pipeline(transaction=True) as pipe:
            # MULTI first: rq adds its own commands to this pipeline and requires the transaction open.
            pipe.multi()
            for frame, entry in zip(batch, entries):
                # A frame sent by reference keeps its path under the key, so the key means what it does for bytes.
                value = frame.data if entry.reference is None else entry.reference.encode()
                pipe.set(entry.key, value, ex=self._frame_ttl_s)
            for stream, count in streams.items():
                pipe.hincrby(PUBLISHED_KEY, stream, count)
            enqueue_scoring_job(
                self._queue,
                entries,
                pipeline=pipe,
                job_timeout_s=self._job_timeout_s,
                result_ttl_s=self._result_ttl_s,
                failure_ttl_s=self._failure_ttl_s,
                # rq's default description repeats the whole payload; a summary is enough.
                description=f"{SCORE_FRAMES_FUNCTION}: {len(batch)} frames from {', '.join(sorted(streams))}",
            )
            pipe.execute()
        self.published += len(batch)

    def _drop(self, batch: Sequence[Frame]) -> None:
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
