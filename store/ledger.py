"""What happened at the sources: their events (connected, lost...) and the folder watcher's ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError
from store.schema import IngestedFile, SourceEvent

#: Events returned by one call to recent_source_events unless the caller asks for another number.
SOURCE_EVENT_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class SourceEventInfo:
    """One recorded source event."""

    at: datetime
    line: str
    camera: str
    source: str
    kind: str
    message: str | None


def record_source_event(
    engine: Engine, line: str, camera: str, source: str, kind: str, message: str | None = None
) -> None:
    """Record that ``kind`` (e.g. "started", "disconnected", "reconnected", "error") happened to a source now."""
    if not kind:
        raise InvalidArgumentError(f"source event for {line}/{camera} needs a kind")
    row = {"at": datetime.now(UTC), "line": line, "camera": camera, "source": source, "kind": kind, "message": message}
    with write_transaction(engine) as connection:
        connection.execute(insert(SourceEvent), row)


def recent_source_events(
    engine: Engine, limit: int = SOURCE_EVENT_PAGE_SIZE, line: str | None = None
) -> list[SourceEventInfo]:
    """The newest ``limit`` source events, of ``line`` only when given, newest first."""
    if limit < 1:
        raise InvalidArgumentError(f"limit must be at least 1, got {limit}")
    query = select(
        SourceEvent.at, SourceEvent.line, SourceEvent.camera, SourceEvent.source, SourceEvent.kind, SourceEvent.message
    )
    if line is not None:
        query = query.where(SourceEvent.line == line)
    query = query.order_by(SourceEvent.at.desc(), SourceEvent.id.desc()).limit(limit)
    with engine.connect() as connection:
        return [SourceEventInfo(*row) for row in connection.execute(query)]


def claim_ingested_file(engine: Engine, source_key: str, path: str, size: int, mtime: float) -> bool:
    """Mark ``path`` of source ``source_key`` as ingested; True only for the first claim ever.

    Race-safe: of concurrent claims of the same file (threads, processes, restarts), exactly one wins.
    """
    claim = (
        upsert_insert(engine, IngestedFile)
        .values(source_key=source_key, path=path, size=size, mtime=mtime, ingested_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=[IngestedFile.source_key, IngestedFile.path])
        # A row comes back only when the insert happened (rowcount is not reliable with RETURNING).
        .returning(IngestedFile.id)
    )
    with write_transaction(engine) as connection:
        return connection.execute(claim).first() is not None
