"""The live page's figures, summed from the store's time buckets (``store.defect_rate_series``).

The database aggregates a window's rows into a few hundred buckets per line and camera; these pure
functions turn those buckets into current figures and trend lines per line or per camera, so one
query serves both the tiles and the chart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from store import CameraCounts, RateBucket

#: Columns of a bucket frame (see :func:`bucket_frame`).
BUCKET_COLUMNS = ("start", "line", "camera", "frames", "defects", "errors", "latency_sum_s", "max_latency_s")


def bucket_frame(buckets: Sequence[RateBucket]) -> pd.DataFrame:
    """One row per bucket with the columns of BUCKET_COLUMNS; ``latency_sum_s`` is mean latency x frames."""
    rows = [
        (b.start, b.line, b.camera, b.frames, b.defects, b.errors, b.mean_latency_s * b.frames, b.max_latency_s)
        for b in buckets
    ]
    return pd.DataFrame.from_records(rows, columns=list(BUCKET_COLUMNS))


def current_figures(buckets: pd.DataFrame, window_seconds: float, per_camera: bool) -> pd.DataFrame:
    """Totals over the window per line (or per line and camera), sorted.

    Columns: line, [camera,] frames, defects, errors, defect_rate (defects per scored frame, NaN
    when none was scored), frames_per_s (over the whole window), mean_latency_s, max_latency_s.
    """
    keys = ["line", "camera"] if per_camera else ["line"]
    totals = _summed(buckets, keys)
    totals["frames_per_s"] = totals["frames"] / window_seconds
    return totals[[*keys, "frames", "defects", "errors", "defect_rate", "frames_per_s", "mean_latency_s", "max_latency_s"]]


def with_present_rate(figures: pd.DataFrame, present: Sequence[CameraCounts], present_seconds: float, per_camera: bool) -> pd.DataFrame:
    """``figures`` with ``frames_per_s_now``: the rate over the last ``present_seconds`` (from ``present``), 0 when silent."""
    keys = ["line", "camera"] if per_camera else ["line"]
    frames: dict[tuple[str, ...], int] = {}
    for counts in present:
        key = (counts.line, counts.camera) if per_camera else (counts.line,)
        frames[key] = frames.get(key, 0) + counts.frames
    result = figures.copy()
    result["frames_per_s_now"] = [frames.get(tuple(row), 0) / present_seconds for row in figures[keys].itertuples(index=False)]
    return result


def trend(buckets: pd.DataFrame, bucket_seconds: int, per_camera: bool) -> pd.DataFrame:
    """Per bucket and line (or "line/camera"), in a ``series`` column: defect_rate, frames_per_s, mean_latency_s."""
    keys = ["start", "line", "camera"] if per_camera else ["start", "line"]
    points = _summed(buckets, keys)
    points["series"] = points["line"] + "/" + points["camera"] if per_camera else points["line"]
    points["frames_per_s"] = points["frames"] / bucket_seconds
    return points[["start", "series", "frames", "defect_rate", "frames_per_s", "mean_latency_s"]]


def alarmed(figures: pd.DataFrame, alarm_rate: float, min_frames: int) -> pd.Series:
    """Whether each row of ``figures`` stands out: rate at or above ``alarm_rate`` over at least ``min_frames`` scored frames."""
    scored = figures["frames"] - figures["errors"]
    return (scored >= min_frames) & (figures["defect_rate"] >= alarm_rate)


def _summed(buckets: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    grouped = buckets.groupby(keys, sort=True, as_index=False).agg(
        frames=("frames", "sum"),
        defects=("defects", "sum"),
        errors=("errors", "sum"),
        latency_sum_s=("latency_sum_s", "sum"),
        max_latency_s=("max_latency_s", "max"),
    )
    scored = grouped["frames"] - grouped["errors"]
    grouped["defect_rate"] = grouped["defects"] / scored.where(scored > 0, np.nan)
    grouped["mean_latency_s"] = grouped["latency_sum_s"] / grouped["frames"].where(grouped["frames"] > 0, np.nan)
    return grouped
