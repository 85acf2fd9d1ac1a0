"""Reviews of flagged frames: saving a reviewer's verdict (and its history), the queue still to review, flag precision."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, case, func, select
from sqlalchemy import insert as insert_into
from sqlalchemy.sql.elements import ColumnElement

from store.db import write_transaction
from store.dialect import upsert_insert
from store.errors import InvalidArgumentError, UnknownInspectionError
from store.inspections import InspectionFilter, ReviewInfo, StoredInspection, inspections_with_reviews, stored_inspection
from store.schema import (
    CONFIRMED_REVIEW,
    ERROR_VERDICT,
    FLAGGED_VERDICT,
    REVIEW_VERDICTS,
    Inspection,
    Review,
    ReviewHistory,
)

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

    The earlier verdicts stay in the inspection's history (``review_history``).
    Raises UnknownInspectionError when the inspection does not exist.
    """
    _check_review(verdict, reviewer)
    with write_transaction(engine) as connection:
        # Checked first (under the write lock) so a missing inspection is named, not a bare FK violation.
        exists = connection.execute(select(Inspection.id).where(Inspection.id == inspection_id)).first()
        if exists is None:
            raise UnknownInspectionError(f"cannot review inspection {inspection_id}: no such inspection")
        _write_review(engine, connection, inspection_id, verdict, note, reviewer)


def save_frame_reviews(
    engine: Engine, frame_ids: Sequence[str], verdict: str, note: str | None, reviewer: str
) -> dict[str, int]:
    """Record one verdict on the inspections of ``frame_ids``, all or none; returns their ids by frame id.

    Any frame of a line may be reviewed once scored (a passed part found defective later is a
    review too); a frame id without a row, or whose frame could not be scored, refuses the lot.
    """
    _check_review(verdict, reviewer)
    wanted = list(dict.fromkeys(frame_ids))
    if not wanted:
        raise InvalidArgumentError("name at least one frame id to review")
    with write_transaction(engine) as connection:
        rows = connection.execute(
            select(Inspection.frame_id, Inspection.id, Inspection.verdict).where(Inspection.frame_id.in_(wanted))
        ).all()
        found = {row.frame_id: row for row in rows}
        missing = [frame_id for frame_id in wanted if frame_id not in found]
        if missing:
            raise UnknownInspectionError(f"no inspection of frame(s) {', '.join(missing)}; nothing was saved")
        unscored = [frame_id for frame_id in wanted if found[frame_id].verdict == ERROR_VERDICT]
        if unscored:
            raise InvalidArgumentError(
                f"frame(s) {', '.join(unscored)} could not be scored (error rows) and cannot be reviewed; nothing was saved"
            )
        for frame_id in wanted:
            _write_review(engine, connection, found[frame_id].id, verdict, note, reviewer)
    return {frame_id: found[frame_id].id for frame_id in wanted}


def review_history(engine: Engine, inspection_id: int) -> list[ReviewInfo]:
    """Every review of an inspection, oldest first; the last one is its verdict now."""
    query = (
        select(ReviewHistory.verdict, ReviewHistory.note, ReviewHistory.reviewer, ReviewHistory.reviewed_at)
        .where(ReviewHistory.inspection_id == inspection_id)
        .order_by(ReviewHistory.reviewed_at, ReviewHistory.id)
    )
    with engine.connect() as connection:
        return [ReviewInfo(row.verdict, row.note, row.reviewer, row.reviewed_at) for row in connection.execute(query)]


def _check_review(verdict: str, reviewer: str) -> None:
    if verdict not in REVIEW_VERDICTS:
        raise InvalidArgumentError(f"review verdict {verdict!r} is not one of {', '.join(REVIEW_VERDICTS)}")
    if not reviewer or not reviewer.strip():
        raise InvalidArgumentError("reviewer must name who reviewed (got an empty name)")


def _write_review(
    engine: Engine, connection: Connection, inspection_id: int, verdict: str, note: str | None, reviewer: str
) -> None:
    """The latest review in ``reviews`` (replacing any) and one more line of history, in the caller's transaction."""
    values = {"verdict": verdict, "note": note, "reviewer": reviewer, "reviewed_at": datetime.now(UTC)}
    insert = upsert_insert(engine, Review).values(inspection_id=inspection_id, **values)
    connection.execute(
        insert.on_conflict_do_update(index_elements=[Review.inspection_id], set_={name: insert.excluded[name] for name in values})
    )
    connection.execute(insert_into(ReviewHistory).values(inspection_id=inspection_id, **values))


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
