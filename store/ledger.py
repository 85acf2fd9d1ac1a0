"""What happened at the sources: their events (connected, lost, files skipped...) and the folder watcher's ledger."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError
from store.schema import IngestedFile, SourceEvent

#: Events returned by one call to recent_source_events unless the caller asks for another number.
SOURCE_EVENT_PAGE_SIZE = 100
#: Kind of the source event of a file a folder source skipped, before the reason ("skipped:size").
SKIPPED_FILE_KIND_PREFIX = "skipped:"


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
    record_source_events(engine, line, camera, source, [(kind, message)])


def record_source_events(
    engine: Engine, line: str, camera: str, source: str, events: Iterable[tuple[str, str | None]]
) -> None:
    """Record several (kind, message) events of one source, now, in one transaction."""
    at = datetime.now(UTC)
    rows = []
    for kind, message in events:
        if not kind:
            raise InvalidArgumentError(f"source event for {line}/{camera} needs a kind")
        rows.append({"at": at, "line": line, "camera": camera, "source": source, "kind": kind, "message": message})
    if rows:
        with write_transaction(engine) as connection:
            connection.execute(insert(SourceEvent), rows)


def skipped_file_counts(engine: Engine) -> dict[tuple[str, str], dict[str, int]]:
    """Files skipped by folder sources, from their source events: (line, camera) -> {reason: count}.

    A source records each skipped file once per run, so a file skipped by three runs counts three times.
    """
    query = (
        select(SourceEvent.line, SourceEvent.camera, SourceEvent.kind, func.count())
        .where(SourceEvent.kind.startswith(SKIPPED_FILE_KIND_PREFIX, autoescape=True))
        .group_by(SourceEvent.line, SourceEvent.camera, SourceEvent.kind)
        .order_by(SourceEvent.line, SourceEvent.camera, SourceEvent.kind)
    )
    counts: dict[tuple[str, str], dict[str, int]] = {}
    with engine.connect() as connection:
        for line, camera, kind, count in connection.execute(query):
            counts.setdefault((line, camera), {})[kind.removeprefix(SKIPPED_FILE_KIND_PREFIX)] = count
    return counts


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
