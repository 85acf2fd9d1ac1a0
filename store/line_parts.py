"""A line's scored parts with their reviews: what recalibrating and comparing models learn from."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from store.schema import ERROR_VERDICT, Inspection, Review


@dataclass(frozen=True, slots=True)
class ScoredPart:
    """A scored frame of a line: the model's verdict and raw score, and a person's review if any."""

    inspection_id: int
    frame_id: str
    camera: str
    finished_at: datetime
    model_version: str
    verdict: str
    raw_score: float
    review: str | None
    image_key: str | None


def scored_parts(
    engine: Engine,
    line: str,
    model_versions: Collection[str] | None,
    since: datetime | None = None,
    with_image: bool = False,
) -> list[ScoredPart]:
    """The frames of ``line`` scored by one of ``model_versions`` (any model when None), oldest
    first; with ``since``, only those finished at or after it; with ``with_image``, only those whose
    picture was kept. Raw scores are comparable between versions that share their weights (a model
    and its recalibrations), whatever the threshold."""
    conditions = [
        Inspection.line == line,
        Inspection.verdict != ERROR_VERDICT,
        Inspection.raw_score.is_not(None),
    ]
    if model_versions is not None:
        conditions.append(Inspection.model_version.in_(list(model_versions)))
    if with_image:
        conditions.append(Inspection.image_key.is_not(None))
    if since is not None:
        conditions.append(Inspection.finished_at >= since)
    query = (
        select(
            Inspection.id, Inspection.frame_id, Inspection.camera, Inspection.finished_at, Inspection.model_version,
            Inspection.verdict, Inspection.raw_score, Review.verdict.label("review"), Inspection.image_key,
        )
        .outerjoin(Review, Review.inspection_id == Inspection.id)
        .where(*conditions)
        .order_by(Inspection.finished_at, Inspection.id)
    )
    with engine.connect() as connection:
        return [ScoredPart(*row) for row in connection.execute(query)]
