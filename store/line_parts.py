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
    engine: Engine, line: str, model_versions: Collection[str], since: datetime | None = None
) -> list[ScoredPart]:
    """The frames of ``line`` scored by one of ``model_versions``, oldest first; with ``since``, only
    those finished at or after it. Pass versions that share their weights (a model and its
    recalibrations): their raw scores are comparable, whatever the threshold."""
    conditions = [
        Inspection.line == line,
        Inspection.verdict != ERROR_VERDICT,
        Inspection.raw_score.is_not(None),
        Inspection.model_version.in_(list(model_versions)),
    ]
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
