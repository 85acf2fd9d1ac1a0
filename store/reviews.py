"""Reviews of flagged frames: saving a reviewer's verdict, the queue still to review, flag precision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError, UnknownInspectionError
from store.inspections import InspectionFilter, StoredInspection, inspections_with_reviews, stored_inspection
from store.schema import CONFIRMED_REVIEW, FLAGGED_VERDICT, REVIEW_VERDICTS, Inspection, Review

#: Rows per review-queue page unless the caller asks for another size.
REVIEW_PAGE_SIZE = 50


@dataclass(frozen=True, slots=True)
class LinePrecision:
    """How a line's flags fared in review; ``precision`` is confirmed/reviewed, None before any review."""

    line: str
    flagged: int
    reviewed: int
    confirmed: int
    unreviewed: int

    @property
    def precision(self) -> float | None:
        """Share of reviewed flags that reviewers confirmed as defects."""
        return self.confirmed / self.reviewed if self.reviewed else None


def save_review(engine: Engine, inspection_id: int, verdict: str, note: str | None, reviewer: str) -> None:
    """Record ``reviewer``'s verdict ("confirmed" or "false_alarm") on an inspection, replacing any earlier one.

    Raises UnknownInspectionError when the inspection does not exist.
    """
    if verdict not in REVIEW_VERDICTS:
        raise InvalidArgumentError(f"review verdict {verdict!r} is not one of {', '.join(REVIEW_VERDICTS)}")
    if not reviewer or not reviewer.strip():
        raise InvalidArgumentError("reviewer must name who reviewed (got an empty name)")
    values = {"verdict": verdict, "note": note, "reviewer": reviewer, "reviewed_at": datetime.now(UTC)}
    insert = upsert_insert(engine, Review).values(inspection_id=inspection_id, **values)
    upsert = insert.on_conflict_do_update(
        index_elements=[Review.inspection_id], set_={name: insert.excluded[name] for name in values}
    )
    with write_transaction(engine) as connection:
        # Checked first (under the write lock) so a missing inspection is named, not a bare FK violation.
        exists = connection.execute(select(Inspection.id).where(Inspection.id == inspection_id)).first()
        if exists is None:
            raise UnknownInspectionError(f"cannot review inspection {inspection_id}: no such inspection")
        connection.execute(upsert)


def review_queue(
    engine: Engine, filters: InspectionFilter | None = None, limit: int = REVIEW_PAGE_SIZE, offset: int = 0
) -> list[StoredInspection]:
    """One page of flagged, unreviewed inspections matching ``filters``, newest first."""
    if limit < 1 or offset < 0:
        raise InvalidArgumentError(f"page needs limit >= 1 and offset >= 0, got limit={limit}, offset={offset}")
    query = (
        inspections_with_reviews()
        .where(*_queue_conditions(filters))
        .order_by(Inspection.finished_at.desc(), Inspection.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as connection:
        return [stored_inspection(row) for row in connection.execute(query)]


def count_review_queue(engine: Engine, filters: InspectionFilter | None = None) -> int:
    """How many flagged, unreviewed inspections match ``filters`` (for the queue's page count)."""
    query = (
        select(func.count())
        .select_from(Inspection)
        .outerjoin(Review, Review.inspection_id == Inspection.id)
        .where(*_queue_conditions(filters))
    )
    with engine.connect() as connection:
        return connection.execute(query).scalar_one()


def review_precision(engine: Engine, since: datetime | None = None) -> list[LinePrecision]:
    """Per line: flagged frames, how many were reviewed and confirmed, and how many await review.

    With ``since``, only frames finished at or after it count. Lines come sorted by name.
    """
    filters = InspectionFilter(since=since, verdict=FLAGGED_VERDICT)
    query = (
        select(
            Inspection.line,
            func.count().label("flagged"),
            func.count(Review.id).label("reviewed"),
            func.coalesce(func.sum(case((Review.verdict == CONFIRMED_REVIEW, 1), else_=0)), 0).label("confirmed"),
        )
        .select_from(Inspection)
        .outerjoin(Review, Review.inspection_id == Inspection.id)
        .where(*filters.conditions())
        .group_by(Inspection.line)
        .order_by(Inspection.line)
    )
    with engine.connect() as connection:
        return [
            LinePrecision(
                line=row.line,
                flagged=row.flagged,
                reviewed=row.reviewed,
                confirmed=row.confirmed,
                unreviewed=row.flagged - row.reviewed,
            )
            for row in connection.execute(query)
        ]


def _queue_conditions(filters: InspectionFilter | None) -> list[ColumnElement[bool]]:
    return [
        *(filters or InspectionFilter()).conditions(),
        Inspection.verdict == FLAGGED_VERDICT,
        Review.id.is_(None),
    ]
