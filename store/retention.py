"""Retention: what the store and the artifact storage forget, by age and by bytes.

`apply_retention` removes, older than the policy's age:
- inspection rows (by ``finished_at``) with every row that refers to them (reviews...) and their
  pictures;
- source events (by ``at``);
- the stream ledger's settled frames (by ``published_at``), but the newest of each camera, which
  carries the camera's sequence number on;
- the folder ledger's settled claims (by ``ingested_at``) of files no longer in their folder: a claim
  of a file still there is what keeps it from being ingested again;
- the outbox's messages (by ``created_at``) that no configured sink still waits for (the policy's
  `outbox_sinks`): one still waiting is kept however old, so that an outage loses nothing;
- artifacts (by when they were written), whatever wrote them;
then, while the artifacts left weigh more than the policy's bytes, the oldest artifacts. A row that
keeps its place but loses a picture has the picture's key cleared. A dry run counts and removes
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, and_, delete, func, select, update
from sqlalchemy.orm import aliased

from store.artifacts import ArtifactEntry, ArtifactStore
from store.db import write_transaction
from store.errors import InvalidArgumentError
from store.outbox import settled_before
from store.schema import OUTBOX_SINKS, Base, IngestedFile, Inspection, OutboxMessage, SourceEvent, StreamFrame

#: Rows looked at and removed per transaction.
RETENTION_CHUNK = 1000


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep: rows, events, ledgers and artifacts younger than `max_age`; at most
    `max_artifact_bytes` of artifacts. None keeps everything by that measure."""

    max_age: timedelta | None = None
    max_artifact_bytes: int | None = None
    outbox_sinks: tuple[str, ...] = ()
    """The configured sinks of the outbox (lineguard.settings.Settings.outbox_sinks): their unsent messages stay."""

    def __post_init__(self) -> None:
        unknown = set(self.outbox_sinks) - set(OUTBOX_SINKS)
        if unknown:
            raise InvalidArgumentError(f"unknown outbox sinks {sorted(unknown)}: the sinks are {list(OUTBOX_SINKS)}")
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise InvalidArgumentError(f"retention age must be positive, got {self.max_age}")
        if self.max_artifact_bytes is not None and self.max_artifact_bytes < 0:
            raise InvalidArgumentError(f"retention bytes must be >= 0, got {self.max_artifact_bytes}")


@dataclass
class RetentionReport:
    """What a retention pass removed (or, in a dry run, would remove)."""

    inspections: int = 0
    referring_rows: int = 0
    source_events: int = 0
    stream_frames: int = 0
    file_claims: int = 0
    outbox_messages: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0
    dry_run: bool = False

    def summary(self) -> str:
        counts = ", ".join(f"{getattr(self, f.name)} {f.name.replace('_', ' ')}" for f in fields(self) if f.name != "dry_run")
        return ("would remove " if self.dry_run else "removed ") + counts


def apply_retention(
    engine: Engine, artifacts: ArtifactStore, policy: RetentionPolicy, *, now: datetime, dry_run: bool = False
) -> RetentionReport:
    """Apply `policy` as of `now` (timezone-aware); see the module docstring."""
    report = RetentionReport(dry_run=dry_run)
    stored = sorted(artifacts.entries(), key=lambda entry: entry.written_at)
    doomed: list[ArtifactEntry] = []
    if policy.max_age is not None:
        cutoff = now - policy.max_age
        doomed_keys = _remove_old_inspections(engine, cutoff, report, dry_run)
        _remove_old_events_and_ledgers(engine, cutoff, policy.outbox_sinks, report, dry_run)
        doomed = [entry for entry in stored if entry.written_at < cutoff or entry.key in doomed_keys]
    if policy.max_artifact_bytes is not None:
        gone = {entry.key for entry in doomed}
        kept = [entry for entry in stored if entry.key not in gone]
        excess = sum(entry.size for entry in kept) - policy.max_artifact_bytes
        for entry in kept:  # oldest first
            if excess <= 0:
                break
            doomed.append(entry)
            excess -= entry.size
    report.artifacts = len(doomed)
    report.artifact_bytes = sum(entry.size for entry in doomed)
    if not dry_run:
        keys = [entry.key for entry in doomed]
        for start in range(0, len(keys), RETENTION_CHUNK):
            _clear_picture_keys(engine, keys[start : start + RETENTION_CHUNK])
        for key in keys:
            artifacts.delete(key)
    return report


def _remove_old_inspections(engine: Engine, cutoff: datetime, report: RetentionReport, dry_run: bool) -> set[str]:
    """Remove (or count) the inspections finished before `cutoff` and the rows referring to them;
    returns their pictures' keys."""
    keys: set[str] = set()
    referring = _tables_referring_to(Inspection.__table__)
    after = 0
    while True:
        query = (
            select(Inspection.id, Inspection.image_key, Inspection.heatmap_key)
            .where(Inspection.finished_at < cutoff, Inspection.id > after)
            .order_by(Inspection.id)
            .limit(RETENTION_CHUNK)
        )
        with engine.connect() as connection:
            chunk = connection.execute(query).all()
        if not chunk:
            return keys
        after = chunk[-1].id
        ids = [row.id for row in chunk]
        keys.update(key for row in chunk for key in (row.image_key, row.heatmap_key) if key)
        report.inspections += len(ids)
        if dry_run:
            with engine.connect() as connection:
                for table, column in referring:
                    report.referring_rows += connection.scalar(select(func.count()).select_from(table).where(column.in_(ids)))
            continue
        with write_transaction(engine) as connection:
            for table, column in referring:
                report.referring_rows += connection.execute(delete(table).where(column.in_(ids))).rowcount
            connection.execute(delete(Inspection).where(Inspection.id.in_(ids)))


def _remove_old_events_and_ledgers(
    engine: Engine, cutoff: datetime, outbox_sinks: Sequence[str], report: RetentionReport, dry_run: bool
) -> None:
    newer = aliased(StreamFrame)
    newest_of_camera = (
        select(func.max(newer.sequence)).where(newer.line == StreamFrame.line, newer.camera == StreamFrame.camera).scalar_subquery()
    )
    conditions = {
        "source_events": (SourceEvent, SourceEvent.at < cutoff),
        "stream_frames": (
            StreamFrame,
            and_(StreamFrame.settled_at.is_not(None), StreamFrame.published_at < cutoff, StreamFrame.sequence < newest_of_camera),
        ),
        "outbox_messages": (OutboxMessage, settled_before(outbox_sinks, cutoff)),
    }
    for name, (table, condition) in conditions.items():
        if dry_run:
            with engine.connect() as connection:
                setattr(report, name, connection.scalar(select(func.count()).select_from(table).where(condition)))
        else:
            with write_transaction(engine) as connection:
                setattr(report, name, connection.execute(delete(table).where(condition)).rowcount)
    settled = select(IngestedFile.id, IngestedFile.path).where(IngestedFile.settled_at.is_not(None), IngestedFile.ingested_at < cutoff)
    with engine.connect() as connection:
        gone = [row.id for row in connection.execute(settled) if not os.path.lexists(row.path)]
    report.file_claims = len(gone)
    if not dry_run:
        for start in range(0, len(gone), RETENTION_CHUNK):
            with write_transaction(engine) as connection:
                connection.execute(delete(IngestedFile).where(IngestedFile.id.in_(gone[start : start + RETENTION_CHUNK])))


def _clear_picture_keys(engine: Engine, keys: Sequence[str]) -> None:
    """Rows that stay but lose a picture no longer point to it."""
    with write_transaction(engine) as connection:
        connection.execute(update(Inspection).where(Inspection.image_key.in_(keys)).values(image_key=None))
        connection.execute(update(Inspection).where(Inspection.heatmap_key.in_(keys)).values(heatmap_key=None))


def _tables_referring_to(target: Table) -> list[tuple[Table, object]]:
    """(table, column) of every foreign key to `target`'s id in the schema, whoever added it."""
    return [
        (table, foreign_key.parent)
        for table in Base.metadata.sorted_tables
        for foreign_key in table.foreign_keys
        if foreign_key.column.table is target
    ]
