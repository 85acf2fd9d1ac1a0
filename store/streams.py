"""The stream ledger: what video and camera sources sent, so frames lost with Redis are counted.

A source writes its frames here (with the camera's sequence number) just before their batch goes
to Redis; its reconciliation settles the frames whose rows exist and marks as lost those that
neither Redis nor the store has any more. Lost frames are counted per camera; a lost frame whose row
turns up after all (it was only late) stops counting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, select, update

from store.db import write_transaction
from store.dialect import upsert_insert
from store.schema import Inspection, StreamFrame

#: Unsettled frames read per query of a reconciliation pass (the pass pages through all of them).
STREAM_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class SentFrame:
    """A frame as its source sent it."""

    frame_id: str
    line: str
    camera: str
    source: str
    sequence: int


@dataclass(frozen=True, slots=True)
class LostFrames:
    """Frames of one line and camera that were sent and are gone without a row."""

    line: str
    camera: str
    lost: int


def next_stream_sequence(engine: Engine, line: str, camera: str) -> int:
    """The sequence number of the camera's next frame: one past the last one sent, 0 for a new camera."""
    query = select(func.max(StreamFrame.sequence)).where(StreamFrame.line == line, StreamFrame.camera == camera)
    with engine.connect() as connection:
        last = connection.scalar(query)
    return 0 if last is None else last + 1


def record_sent_frames(engine: Engine, frames: Sequence[SentFrame]) -> None:
    """Write `frames` to the ledger, unsettled; a frame already there is left as it is."""
    if not frames:
        return
    now = datetime.now(UTC)
    rows = [
        {"frame_id": f.frame_id, "line": f.line, "camera": f.camera, "source": f.source, "sequence": f.sequence, "published_at": now}
        for f in frames
    ]
    statement = upsert_insert(engine, StreamFrame).on_conflict_do_nothing(index_elements=[StreamFrame.frame_id])
    with write_transaction(engine) as connection:
        connection.execute(statement, rows)


def unsettled_stream_frames(
    engine: Engine, line: str, camera: str, after_id: int = 0, limit: int = STREAM_PAGE_SIZE
) -> list[tuple[int, str]]:
    """Up to `limit` (ledger id, frame id) of the camera's unsettled frames above `after_id`, oldest first."""
    query = (
        select(StreamFrame.id, StreamFrame.frame_id)
        .where(StreamFrame.line == line, StreamFrame.camera == camera, StreamFrame.settled_at.is_(None), StreamFrame.id > after_id)
        .order_by(StreamFrame.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [(row.id, row.frame_id) for row in connection.execute(query)]


def settle_stream_frames(engine: Engine, frame_ids: Sequence[str], *, lost: bool) -> None:
    """Settle `frame_ids`: recorded (their rows exist) or, with `lost`, gone without a row."""
    if not frame_ids:
        return
    now = datetime.now(UTC)
    values = {"settled_at": now, "lost_at": now} if lost else {"settled_at": now}
    with write_transaction(engine) as connection:
        connection.execute(update(StreamFrame).where(StreamFrame.frame_id.in_(list(frame_ids))).values(**values))


def lost_frame_counts(engine: Engine) -> list[LostFrames]:
    """Frames lost per line and camera (sent, gone, and still without a row), sorted by line, camera."""
    recorded = select(Inspection.id).where(Inspection.frame_id == StreamFrame.frame_id).exists()
    query = (
        select(StreamFrame.line, StreamFrame.camera, func.count().label("lost"))
        .where(StreamFrame.lost_at.is_not(None), ~recorded)
        .group_by(StreamFrame.line, StreamFrame.camera)
        .order_by(StreamFrame.line, StreamFrame.camera)
    )
    with engine.connect() as connection:
        return [LostFrames(row.line, row.camera, row.lost) for row in connection.execute(query)]
