"""SQL the dashboard's pages need beyond what ``store.records`` offers.

SQLAlchemy Core on the store's tables, read-only; every value a user chooses reaches SQL as a bound
parameter. Candidates to move into the store once it settles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, func, select

from store import InspectionFilter, InvalidArgumentError
from store.inspections import EXPORT_ROW_LIMIT, inspections_with_reviews
from store.schema import Inspection, LineModel, Model, Review


@dataclass(frozen=True, slots=True)
class LineModelInfo:
    """The model a line scores with now, and whether it was trained with a random teacher."""

    line: str
    model_version: str
    activated_at: datetime
    random_teacher: bool
    teacher_source: str


def active_line_models(engine: Engine) -> list[LineModelInfo]:
    """Every line with an active model, and that model's teacher; sorted by line."""
    query = (
        select(LineModel.line, LineModel.model_version, LineModel.activated_at, Model.random_teacher, Model.teacher_source)
        .join(Model, Model.version == LineModel.model_version)
        .order_by(LineModel.line)
    )
    with engine.connect() as connection:
        return [
            LineModelInfo(row.line, row.model_version, row.activated_at, row.random_teacher, row.teacher_source)
            for row in connection.execute(query)
        ]


def streams(engine: Engine) -> list[tuple[str, str]]:
    """Every (line, camera) that has inspections, sorted.

    A loose index scan: two recursive CTEs step from one distinct line, then camera, to the next
    through the (line, camera, finished_at) index, so the cost grows with the number of cameras,
    not of rows (a plain DISTINCT reads the whole index: 50 ms at a million rows on SQLite).
    """
    later = Inspection.__table__.alias("later")
    lines = select(func.min(Inspection.line).label("line")).cte("lines", recursive=True)
    lines = lines.union_all(
        select(select(func.min(later.c.line)).where(later.c.line > lines.c.line).scalar_subquery()).where(
            lines.c.line.is_not(None)
        )
    )
    cameras = (
        select(
            lines.c.line,
            select(func.min(later.c.camera)).where(later.c.line == lines.c.line).scalar_subquery().label("camera"),
        )
        .where(lines.c.line.is_not(None))
        .cte("cameras", recursive=True)
    )
    cameras = cameras.union_all(
        select(
            cameras.c.line,
            select(func.min(later.c.camera))
            .where(later.c.line == cameras.c.line, later.c.camera > cameras.c.camera)
            .scalar_subquery(),
        ).where(cameras.c.camera.is_not(None))
    )
    query = (
        select(cameras.c.line, cameras.c.camera)
        .where(cameras.c.camera.is_not(None))
        .order_by(cameras.c.line, cameras.c.camera)
    )
    with engine.connect() as connection:
        return [(row.line, row.camera) for row in connection.execute(query)]


def inspections_export(
    engine: Engine,
    filters: InspectionFilter,
    *,
    unreviewed_only: bool = False,
    model_version: str | None = None,
    limit: int = EXPORT_ROW_LIMIT,
) -> pd.DataFrame:
    """Inspections matching ``filters`` with their reviews, newest first, at most ``limit`` rows.

    ``unreviewed_only`` keeps rows without a review (what the review queue shows); ``model_version``
    keeps rows scored by that model. Columns as ``store.inspections_frame``: ``id``, the
    InspectionRecord fields, review_verdict, review_note, reviewer, reviewed_at.
    """
    if limit < 1:
        raise InvalidArgumentError(f"export limit must be at least 1, got {limit}")
    conditions = filters.conditions()
    if unreviewed_only:
        conditions.append(Review.id.is_(None))
    if model_version is not None:
        conditions.append(Inspection.model_version == model_version)
    query = (
        inspections_with_reviews()
        .where(*conditions)
        .order_by(Inspection.finished_at.desc(), Inspection.id.desc())
        .limit(limit)
    )
    with engine.connect() as connection:
        result = connection.execute(query)
        return pd.DataFrame.from_records(list(result), columns=list(result.keys()))
