"""Inspection rows: the record a worker writes per frame, and reading rows back one by one or for export.

Workers write a whole batch in one transaction with :func:`write_inspections`; delivery from the
queue is at least once, so the write is an upsert by ``frame_id`` and a retried batch overwrites its
earlier result instead of adding rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, Row, Select, String, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError, InvalidRecordError, UnknownInspectionError
from store.outbox import OutboxEntry, add_messages
from store.schema import ERROR_VERDICT, REVIEW_VERDICTS, VERDICTS, Inspection, Review

# Longest text each length-limited inspection column holds, by column name.
_TEXT_LIMITS: dict[str, int] = {
    column.name: column.type.length
    for column in Inspection.__table__.columns
    if isinstance(column.type, String) and column.type.length is not None
}


@dataclass(frozen=True, slots=True)
class InspectionRecord:
    """The result for one frame, as a worker writes it (all times timezone-aware, UTC or not).

    ``verdict`` is "good" or "defect" for a scored frame (``score`` required, normalised to 0..1 with
    0.5 at the threshold) and "error" for a frame that could not be scored (``error`` says why).
    ``random_teacher`` marks results of a model trained with a random teacher; ``origin`` says where
    a person finds the part (a file's path inside its folder, a stream's frame position).
    """

    frame_id: str
    line: str
    camera: str
    source: str
    captured_at: datetime
    enqueued_at: datetime
    started_at: datetime
    finished_at: datetime
    verdict: str
    model_version: str | None = None
    score: float | None = None
    raw_score: float | None = None
    threshold: float | None = None
    error: str | None = None
    image_key: str | None = None
    heatmap_key: str | None = None
    worker: str | None = None
    random_teacher: bool = False
    origin: str | None = None

    def __post_init__(self) -> None:
        where = f"inspection record for frame {self.frame_id!r}"
        if not self.frame_id:
            raise InvalidRecordError(f"{where}: frame_id must not be empty")
        # Checked here because SQLite ignores VARCHAR lengths that PostgreSQL enforces.
        for name, limit in _TEXT_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > limit:
                raise InvalidRecordError(f"{where}: {name} has {len(value)} characters; its column holds {limit}")
        if self.verdict not in VERDICTS:
            raise InvalidRecordError(f"{where}: verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.verdict == ERROR_VERDICT and not self.error:
            raise InvalidRecordError(f"{where}: an 'error' verdict needs the reason in error")
        if self.verdict != ERROR_VERDICT and self.score is None:
            raise InvalidRecordError(f"{where}: a {self.verdict!r} verdict needs a score")
        if self.score is not None and not 0.0 <= self.score <= 1.0:
            raise InvalidRecordError(f"{where}: score {self.score!r} is outside 0..1 (it is the normalised score)")
        for name in ("raw_score", "threshold"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InvalidRecordError(f"{where}: {name} {value!r} is not a finite number")
        for name in ("captured_at", "enqueued_at", "started_at", "finished_at"):
            _require_aware(getattr(self, name), f"{where}: {name}", InvalidRecordError)


@dataclass(frozen=True, slots=True)
class ReviewInfo:
    """A reviewer's verdict on a flagged inspection."""

    verdict: str
    note: str | None
    reviewer: str
    reviewed_at: datetime


@dataclass(frozen=True, slots=True)
class StoredInspection:
    """An inspection row as stored: its id, the worker's record and the review, if any."""

    id: int
    record: InspectionRecord
    review: ReviewInfo | None


@dataclass(frozen=True, slots=True)
class InspectionFilter:
    """Which inspections a page or an export shows; every field left None does not filter.

    ``since`` is inclusive and ``until`` exclusive, both on ``finished_at``; scores are normalised.
    """

    line: str | None = None
    camera: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    min_score: float | None = None
    max_score: float | None = None
    verdict: str | None = None
    review_verdict: str | None = None

    def __post_init__(self) -> None:
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise InvalidArgumentError(f"filter verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}")
        if self.review_verdict is not None and self.review_verdict not in REVIEW_VERDICTS:
            raise InvalidArgumentError(
                f"filter review_verdict {self.review_verdict!r} is not one of {', '.join(REVIEW_VERDICTS)}"
            )
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                _require_aware(value, f"filter {name}", InvalidArgumentError)

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE conditions on ``inspections`` (and ``reviews``, outer-joined) this filter means."""
        conditions: list[ColumnElement[bool]] = []
        if self.line is not None:
            conditions.append(Inspection.line == self.line)
        if self.camera is not None:
            conditions.append(Inspection.camera == self.camera)
        if self.since is not None:
            conditions.append(Inspection.finished_at >= self.since)
        if self.until is not None:
            conditions.append(Inspection.finished_at < self.until)
        if self.min_score is not None:
            conditions.append(Inspection.score >= self.min_score)
        if self.max_score is not None:
            conditions.append(Inspection.score <= self.max_score)
        if self.verdict is not None:
            conditions.append(Inspection.verdict == self.verdict)
        if self.review_verdict is not None:
            conditions.append(Review.verdict == self.review_verdict)
        return conditions


#: Names of the columns a worker writes, in ``InspectionRecord`` order.
RECORD_FIELDS: tuple[str, ...] = tuple(field.name for field in fields(InspectionRecord))
#: Most rows one export returns unless the caller asks for another limit.
EXPORT_ROW_LIMIT = 100_000


def write_inspections(
    engine: Engine, records: Sequence[InspectionRecord], outbox: Sequence[OutboxEntry] = ()
) -> int:
    """Write a batch of results in one transaction, replacing earlier rows of the same frame ids.

    A frame id repeated in the batch keeps its last record. `outbox` messages (the batch's verdicts
    for the line, see store.outbox) are queued in the same transaction. All rows are written or none:
    a row the database refuses raises :class:`InvalidRecordError` and leaves the tables as they were.
    Returns the number of distinct frames written.
    """
    latest_by_frame = {record.frame_id: record for record in records}
    if not latest_by_frame:
        return 0
    rows = [{name: getattr(record, name) for name in RECORD_FIELDS} for record in latest_by_frame.values()]
    insert = upsert_insert(engine, Inspection)
    upsert = insert.on_conflict_do_update(
        index_elements=[Inspection.frame_id],
        set_={name: insert.excluded[name] for name in RECORD_FIELDS if name != "frame_id"},
    )
    try:
        with write_transaction(engine) as connection:
            connection.execute(upsert, rows)
            add_messages(connection, outbox)
    except (IntegrityError, DataError) as error:
        named = sorted(latest_by_frame)[:5]
        frames = ", ".join(named) + (", ..." if len(rows) > len(named) else "")
        message = f"batch of {len(rows)} inspections ({frames}) was not written: {error.orig}"
        raise InvalidRecordError(message) from error
    return len(rows)


def recorded_frame_ids(engine: Engine, frame_ids: Sequence[str]) -> set[str]:
    """Those of `frame_ids` that already have an inspection row (a retried job checks this)."""
    if not frame_ids:
        return set()
    with engine.connect() as connection:
        return set(connection.scalars(select(Inspection.frame_id).where(Inspection.frame_id.in_(list(frame_ids)))))


def inspections_frame(
    engine: Engine, filters: InspectionFilter | None = None, limit: int = EXPORT_ROW_LIMIT
) -> pd.DataFrame:
    """Inspections matching ``filters`` with their reviews, newest first, at most ``limit`` rows.

    Columns: ``id``, the InspectionRecord fields, then review_verdict, review_note, reviewer,
    reviewed_at (empty when unreviewed); times are timezone-aware UTC. Made for CSV export.
    """
    if limit < 1:
        raise InvalidArgumentError(f"limit must be at least 1, got {limit}")
    query = (
        inspections_with_reviews()
        .where(*(filters or InspectionFilter()).conditions())
        .order_by(Inspection.finished_at.desc(), Inspection.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame.from_records(list(result), columns=list(result.keys()))


def inspection_detail(engine: Engine, inspection_id: int) -> StoredInspection:
    """The inspection with ``inspection_id`` and its review; raises UnknownInspectionError if absent."""
    query = inspections_with_reviews().where(Inspection.id == inspection_id)
    with engine.connect() as connection:
        row = connection.execute(query).one_or_none()
    if row is None:
        raise UnknownInspectionError(f"no inspection with id {inspection_id}")
    return stored_inspection(row)


def inspections_with_reviews() -> Select[Any]:
    """SELECT of every inspection column plus its review's (NULL when unreviewed), for pages."""
    return select(
        Inspection.id,
        *(getattr(Inspection, name) for name in RECORD_FIELDS),
        Review.verdict.label("review_verdict"),
        Review.note.label("review_note"),
        Review.reviewer,
        Review.reviewed_at,
    ).outerjoin(Review, Review.inspection_id == Inspection.id)


def stored_inspection(row: Row[Any]) -> StoredInspection:
    """A row of :func:`inspections_with_reviews` as a StoredInspection."""
    values = row._mapping
    review = None
    if values["review_verdict"] is not None:
        review = ReviewInfo(
            verdict=values["review_verdict"],
            note=values["review_note"],
            reviewer=values["reviewer"],
            reviewed_at=values["reviewed_at"],
        )
    record = InspectionRecord(**{name: values[name] for name in RECORD_FIELDS})
    return StoredInspection(id=values["id"], record=record, review=review)


def _require_aware(moment: datetime, what: str, error: type[InvalidArgumentError]) -> None:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise error(f"{what} must be a timezone-aware datetime, got {moment!r}")
