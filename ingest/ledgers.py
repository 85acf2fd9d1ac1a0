"""The sources' ledgers in the store, kept in step with what Redis still holds.

A source's frames are first written to its ledger (a folder's claims, a stream's sent frames) and
stay *unsettled* until their inspection rows exist. A reconciliation pass looks at the unsettled
frames that are not in the publisher's buffer and sorts them: bytes still in Redis means in flight;
a row means settled; neither means the frame was lost with Redis (or its ingester died before it
was sent). A folder publishes such files again under the same frame id; a stream, which cannot read
a frame again, counts it as lost. Bytes are looked for before rows: a worker writes the row before
it deletes the bytes, so a frame finishing during the pass is never taken for lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine

from ingest.frames import Frame
from store.records import (
    SentFrame,
    UnsettledClaim,
    record_sent_frames,
    recorded_frame_ids,
    settle_claims,
    settle_stream_frames,
    unsettled_claims,
    unsettled_stream_frames,
)
from wire.connections import OutageWaiter
from wire.protocol import frame_key

logger = logging.getLogger(__name__)

#: Frames looked up in Redis per round trip of a reconciliation pass.
REDIS_LOOKUP_CHUNK = 500


@dataclass(frozen=True)
class Waiters:
    """The outage waiters of one source: for Redis and for the database."""

    redis: OutageWaiter
    database: OutageWaiter


def lost_frames(redis: Redis, engine: Engine, frame_ids: Sequence[str], waiters: Waiters) -> tuple[set[str], set[str]]:
    """Sort `frame_ids`: (those with a row, those neither in Redis nor in the store); the rest are in flight."""
    in_redis: set[str] = set()
    for start in range(0, len(frame_ids), REDIS_LOOKUP_CHUNK):
        chunk = frame_ids[start : start + REDIS_LOOKUP_CHUNK]
        exists = waiters.redis.call(lambda chunk=chunk: _exist(redis, chunk), "looking for frames in Redis")
        in_redis.update(frame_id for frame_id, present in zip(chunk, exists) if present)
    absent = [frame_id for frame_id in frame_ids if frame_id not in in_redis]
    recorded = waiters.database.call(lambda: recorded_frame_ids(engine, absent), "looking for rows")
    return recorded, set(absent) - recorded


def _exist(redis: Redis, frame_ids: Sequence[str]) -> list[bool]:
    with redis.pipeline(transaction=False) as pipe:
        for frame_id in frame_ids:
            pipe.exists(frame_key(frame_id))
        return [bool(count) for count in pipe.execute()]


class FolderLedger:
    """A folder's claims (``ingested_files``): drops settle them, a pass finds the lost ones."""

    def __init__(self, engine: Engine, source_key: str, waiters: Waiters) -> None:
        self._engine = engine
        self._source_key = source_key
        self._waiters = waiters

    def before_enqueue(self, frames: Sequence[Frame]) -> None:
        """Nothing to write: each file was claimed, with its frame id, before it was read."""

    def dropped(self, frames: Sequence[Frame]) -> None:
        """A full queue dropped these files (the policy chose to); they are not published again."""
        self.settle([frame.frame_id for frame in frames], "dropped")

    def settle(self, frame_ids: Sequence[str], outcome: str) -> None:
        self._waiters.database.call(
            lambda: settle_claims(self._engine, self._source_key, frame_ids, outcome), f"settling {len(frame_ids)} claims"
        )

    def lost_claims(self, redis: Redis, unsent: set[str]) -> list[UnsettledClaim]:
        """Settle the claims whose rows exist; return those lost (neither in Redis nor in the store),
        leaving out the frames in `unsent` (the publisher's buffer)."""
        lost: list[UnsettledClaim] = []
        after = 0
        while page := self._waiters.database.call(
            lambda: unsettled_claims(self._engine, self._source_key, after_id=after), "reading the folder's ledger"
        ):
            after = page[-1].id
            claims = [claim for claim in page if claim.frame_id not in unsent]
            recorded, missing = lost_frames(redis, self._engine, [claim.frame_id for claim in claims], self._waiters)
            self.settle(sorted(recorded), "recorded")
            lost += [claim for claim in claims if claim.frame_id in missing]
        return lost


class StreamLedger:
    """A stream's sent frames (``stream_frames``): written before they are sent, lost ones counted."""

    def __init__(self, engine: Engine, line: str, camera: str, source: str, waiters: Waiters) -> None:
        self._engine = engine
        self._line = line
        self._camera = camera
        self._source = source
        self._waiters = waiters

    def before_enqueue(self, frames: Sequence[Frame]) -> None:
        """Write the frames to the ledger before their batch goes to Redis."""
        sent = [SentFrame(f.frame_id, f.line, f.camera, f.source, int(f.sequence)) for f in frames]  # type: ignore[arg-type]
        self._waiters.database.call(lambda: record_sent_frames(self._engine, sent), f"recording {len(sent)} sent frames")

    def dropped(self, frames: Sequence[Frame]) -> None:
        """Dropped frames were never sent (nor written to the ledger); the drop counters have them."""

    def settle_lost(self, redis: Redis) -> int:
        """Settle the frames whose rows exist and mark as lost those neither in Redis nor in the
        store; returns how many were found lost."""
        lost = 0
        after = 0
        while page := self._waiters.database.call(
            lambda: unsettled_stream_frames(self._engine, self._line, self._camera, after_id=after),
            "reading the stream's ledger",
        ):
            after = page[-1][0]
            recorded, missing = lost_frames(redis, self._engine, [frame_id for _, frame_id in page], self._waiters)
            for frame_ids, is_lost in ((sorted(recorded), False), (sorted(missing), True)):
                self._waiters.database.call(
                    lambda frame_ids=frame_ids, is_lost=is_lost: settle_stream_frames(self._engine, frame_ids, lost=is_lost),
                    "settling sent frames",
                )
            lost += len(missing)
        return lost
