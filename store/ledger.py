"""What happened at the sources: their events (connected, lost, files skipped...) and the folder watcher's ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select, update

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError
from store.schema import LEDGER_OUTCOMES, IngestedFile, SourceEvent

#: Events returned by one call to recent_source_events unless the caller asks for another number.
SOURCE_EVENT_PAGE_SIZE = 100
#: Kind of the source event of a file a folder source skipped, before the reason ("skipped:size").
SKIPPED_FILE_KIND_PREFIX = "skipped:"
#: Unsettled claims read per query of a reconciliation pass (the pass pages through all of them).
CLAIM_PAGE_SIZE = 500


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


@dataclass(frozen=True, slots=True)
class UnsettledClaim:
    """A claimed file whose frame has no row yet (see ``IngestedFile``)."""

    id: int
    path: str
    frame_id: str
    mtime: float


def claim_ingested_file(engine: Engine, source_key: str, path: str, size: int, mtime: float, frame_id: str) -> bool:
    """Claim this version (``size``, ``mtime``) of ``path`` of source ``source_key`` under ``frame_id``;
    True only for the first claim of that version ever.

    Race-safe: of concurrent claims of the same file (threads, processes, restarts), exactly one wins.
    The claim stays unsettled until :func:`settle_claims` is told its frame's fate.
    """
    claim = (
        upsert_insert(engine, IngestedFile)
        .values(
            source_key=source_key, path=path, size=size, mtime=mtime, ingested_at=datetime.now(UTC), frame_id=frame_id
        )
        .on_conflict_do_nothing(
            index_elements=[IngestedFile.source_key, IngestedFile.path, IngestedFile.size, IngestedFile.mtime]
        )
        # A row comes back only when the insert happened (rowcount is not reliable with RETURNING).
        .returning(IngestedFile.id)
    )
    with write_transaction(engine) as connection:
        return connection.execute(claim).first() is not None


def unsettled_claims(engine: Engine, source_key: str, after_id: int = 0, limit: int = CLAIM_PAGE_SIZE) -> list[UnsettledClaim]:
    """Up to ``limit`` unsettled claims of ``source_key`` with ids above ``after_id``, oldest first."""
    query = (
        select(IngestedFile.id, IngestedFile.path, IngestedFile.frame_id, IngestedFile.mtime)
        .where(
            IngestedFile.source_key == source_key,
            IngestedFile.settled_at.is_(None),
            IngestedFile.frame_id.is_not(None),
            IngestedFile.id > after_id,
        )
        .order_by(IngestedFile.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [UnsettledClaim(*row) for row in connection.execute(query)]


def settle_claims(engine: Engine, source_key: str, frame_ids: Sequence[str], outcome: str) -> None:
    """Settle the claims of ``frame_ids`` (of ``source_key``) with ``outcome`` (see ``LEDGER_OUTCOMES``)."""
    if outcome not in LEDGER_OUTCOMES:
        raise InvalidArgumentError(f"ledger outcome {outcome!r} is not one of {', '.join(LEDGER_OUTCOMES)}")
    if not frame_ids:
        return
    statement = (
        update(IngestedFile)
        .where(IngestedFile.source_key == source_key, IngestedFile.frame_id.in_(list(frame_ids)))
        .values(settled_at=datetime.now(UTC), outcome=outcome)
    )
    with write_transaction(engine) as connection:
        connection.execute(statement)
