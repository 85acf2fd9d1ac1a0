"""Counts and time series of inspections, aggregated in SQL for the dashboard and ``lineguard status``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, func, select
from sqlalchemy.sql.elements import ColumnElement

from store.dialect import epoch_bucket, seconds_between
from store.errors import InvalidArgumentError
from store.inspections import InspectionFilter
from store.registry import active_models
from store.schema import ERROR_VERDICT, FLAGGED_VERDICT, Inspection


@dataclass(frozen=True, slots=True)
class CameraCounts:
    """Frames of one line and camera in a window, by outcome."""

    line: str
    camera: str
    frames: int
    defects: int
    errors: int
    last_finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class LineStatus:
    """All-time frames of one line by outcome, and the model it scores with now (None: none active)."""

    line: str
    frames: int
    flagged: int
    errors: int
    last_finished_at: datetime | None
    active_model: str | None


@dataclass(frozen=True, slots=True)
class RateBucket:
    """Frames of one line and camera that finished in ``[start, start + bucket_seconds)``.

    Latencies are capture-to-result (``finished_at - captured_at``) in seconds.
    """

    start: datetime
    line: str
    camera: str
    frames: int
    defects: int
    errors: int
    mean_latency_s: float
    max_latency_s: float

    @property
    def defect_rate(self) -> float | None:
        """Defects per scored frame (errors excluded); None when no frame was scored."""
        scored = self.frames - self.errors
        return self.defects / scored if scored else None


def line_counts(engine: Engine, since: datetime, until: datetime | None = None) -> list[CameraCounts]:
    """Frames, defects and errors per line and camera finished in ``[since, until)``, sorted by line, camera."""
    conditions = InspectionFilter(since=since, until=until).conditions()
    query = (
        select(Inspection.line, Inspection.camera, *_outcome_counts())
        .where(*conditions)
        .group_by(Inspection.line, Inspection.camera)
        .order_by(Inspection.line, Inspection.camera)
    )
    with engine.connect() as connection:
        return [
            CameraCounts(
                line=row.line,
                camera=row.camera,
                frames=row.frames,
                defects=row.defects,
                errors=row.errors,
                last_finished_at=row.last_finished_at,
            )
            for row in connection.execute(query)
        ]


def status_summary(engine: Engine) -> list[LineStatus]:
    """Per line, all time: frames, flagged frames, errors, last result and active model, sorted by line.

    Lines with an active model but no frames yet are included with zero counts.
    """
    query = select(Inspection.line, *_outcome_counts()).group_by(Inspection.line)
    with engine.connect() as connection:
        counts = {
            row.line: (row.frames, row.defects, row.errors, row.last_finished_at) for row in connection.execute(query)
        }
    models = active_models(engine)
    summary = []
    for line in sorted(counts.keys() | models.keys()):
        frames, flagged, errors, last_finished_at = counts.get(line, (0, 0, 0, None))
        summary.append(LineStatus(line, frames, flagged, errors, last_finished_at, models.get(line)))
    return summary


def defect_rate_series(
    engine: Engine,
    since: datetime,
    bucket_seconds: int,
    line: str | None = None,
    camera: str | None = None,
    until: datetime | None = None,
) -> list[RateBucket]:
    """Counts and latencies per time bucket, line and camera, for frames finished in ``[since, until)``.

    Buckets are ``bucket_seconds`` wide and aligned to the Unix epoch (a 3600 s bucket starts on the
    hour, UTC); buckets without frames are absent. Sorted by start, line, camera.
    """
    if isinstance(bucket_seconds, bool) or not isinstance(bucket_seconds, int) or bucket_seconds < 1:
        raise InvalidArgumentError(f"bucket_seconds must be a whole number of seconds >= 1, got {bucket_seconds!r}")
    conditions = InspectionFilter(line=line, camera=camera, since=since, until=until).conditions()
    # Bucketed in a subquery: PostgreSQL cannot match a GROUP BY expression that holds a bound parameter.
    per_frame = (
        select(
            epoch_bucket(Inspection.finished_at, bucket_seconds).label("bucket"),
            Inspection.line,
            Inspection.camera,
            Inspection.verdict,
            seconds_between(Inspection.finished_at, Inspection.captured_at).label("latency"),
        )
        .where(*conditions)
        .subquery()
    )
    query = (
        select(
            per_frame.c.bucket,
            per_frame.c.line,
            per_frame.c.camera,
            func.count().label("frames"),
            _count_where(per_frame.c.verdict == FLAGGED_VERDICT).label("defects"),
            _count_where(per_frame.c.verdict == ERROR_VERDICT).label("errors"),
            func.avg(per_frame.c.latency).label("mean_latency"),
            func.max(per_frame.c.latency).label("max_latency"),
        )
        # Sorted here, not in SQL: an ORDER BY steers PostgreSQL to a sort-based aggregate that
        # spills to disk on a day of rows, where hashing the few buckets is several times faster.
        .group_by(per_frame.c.bucket, per_frame.c.line, per_frame.c.camera)
    )
    with engine.connect() as connection:
        buckets = [
            RateBucket(
                start=datetime.fromtimestamp(row.bucket, UTC),
                line=row.line,
                camera=row.camera,
                frames=row.frames,
                defects=row.defects,
                errors=row.errors,
                mean_latency_s=float(row.mean_latency),
                max_latency_s=float(row.max_latency),
            )
            for row in connection.execute(query)
        ]
    return sorted(buckets, key=lambda bucket: (bucket.start, bucket.line, bucket.camera))


def _outcome_counts() -> list[ColumnElement[Any]]:
    return [
        func.count().label("frames"),
        _count_where(Inspection.verdict == FLAGGED_VERDICT).label("defects"),
        _count_where(Inspection.verdict == ERROR_VERDICT).label("errors"),
        func.max(Inspection.finished_at).label("last_finished_at"),
    ]


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)
