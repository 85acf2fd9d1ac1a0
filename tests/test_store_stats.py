"""Counts and time-bucketed series computed in SQL, checked on hand-made rows on both dialects."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from store_fixtures import BASE_TIME, db_url, make_record, postgres_run_database, store_engine  # noqa: F401

from store import (
    InvalidArgumentError,
    activate_model,
    defect_rate_series,
    line_counts,
    register_model,
    status_summary,
    write_inspections,
)


def at(seconds: float) -> datetime:
    return BASE_TIME + timedelta(seconds=seconds)


def write_day(engine: Engine) -> None:
    """Rows around BASE_TIME (12:00:00 UTC): see each line for line, camera, finish time and verdict."""
    rows = [
        ("before", "line-1", "cam-0", -1.0, "good", 0.25),  # 11:59:59, before the windows below
        ("a", "line-1", "cam-0", 5.0, "good", 0.25),
        ("b", "line-1", "cam-0", 59.999, "defect", 0.75),  # last millisecond of the 12:00 minute
        ("c", "line-1", "cam-0", 60.0, "good", 1.0),  # first instant of the 12:01 minute
        ("d", "line-1", "cam-0", 90.0, "error", 2.0),
        ("e", "line-1", "cam-1", 190.0, "defect", 0.5),
        ("f", "line-2", "cam-0", 10.0, "good", 0.5),
    ]
    records = []
    for frame_id, line, camera, seconds, verdict, latency in rows:
        outcome = {"score": 0.9} if verdict == "defect" else {"score": 0.1}
        if verdict == "error":
            outcome = {"score": None, "error": "undecodable"}
        records.append(
            make_record(
                frame_id,
                at(seconds),
                line=line,
                camera=camera,
                verdict=verdict,
                captured_at=at(seconds - latency),
                **outcome,
            )
        )
    write_inspections(engine, records)


def as_tuples(buckets: list) -> list[tuple]:
    return [(b.start, b.line, b.camera, b.frames, b.defects, b.errors) for b in buckets]


def test_minute_buckets_split_at_the_minute_and_count_each_outcome(store_engine: Engine) -> None:  # noqa: F811
    write_day(store_engine)
    series = defect_rate_series(store_engine, since=BASE_TIME, bucket_seconds=60)
    assert as_tuples(series) == [
        (at(0), "line-1", "cam-0", 2, 1, 0),
        (at(0), "line-2", "cam-0", 1, 0, 0),
        (at(60), "line-1", "cam-0", 2, 0, 1),
        (at(180), "line-1", "cam-1", 1, 1, 0),
    ]
    first = series[0]
    assert first.mean_latency_s == pytest.approx(0.5, abs=0.002)
    assert first.max_latency_s == pytest.approx(0.75, abs=0.002)
    assert first.defect_rate == pytest.approx(0.5)
    assert series[2].defect_rate == 0.0  # one good, one error: the error is not a scored frame


def test_series_filters_by_line_camera_and_window(store_engine: Engine) -> None:  # noqa: F811
    write_day(store_engine)
    hourly = defect_rate_series(store_engine, since=at(-3600), bucket_seconds=3600, line="line-1", camera="cam-0")
    assert as_tuples(hourly) == [(at(-3600), "line-1", "cam-0", 1, 0, 0), (at(0), "line-1", "cam-0", 4, 1, 1)]
    window = defect_rate_series(store_engine, since=at(5), until=at(60), bucket_seconds=30, line="line-1")
    assert as_tuples(window) == [(at(0), "line-1", "cam-0", 1, 0, 0), (at(30), "line-1", "cam-0", 1, 1, 0)]


@pytest.mark.parametrize(("seconds", "bucket"), [(59.9994, 0), (59.9996, 60), (60.0, 60), (119.999, 60)])
def test_instants_round_to_the_millisecond_before_bucketing(  # SQLite keeps milliseconds only
    store_engine: Engine,  # noqa: F811
    seconds: float,
    bucket: int,
) -> None:
    write_inspections(store_engine, [make_record("edge", at(seconds))])
    series = defect_rate_series(store_engine, since=BASE_TIME, bucket_seconds=60)
    assert [b.start for b in series] == [at(bucket)]


@pytest.mark.parametrize("bucket_seconds", [0, -60, 1.5, True])
def test_bucket_width_must_be_a_positive_whole_number(store_engine: Engine, bucket_seconds: object) -> None:  # noqa: F811
    with pytest.raises(InvalidArgumentError, match="bucket_seconds"):
        defect_rate_series(store_engine, since=BASE_TIME, bucket_seconds=bucket_seconds)  # type: ignore[arg-type]


def test_line_counts_per_camera_in_a_window(store_engine: Engine) -> None:  # noqa: F811
    write_day(store_engine)
    counts = line_counts(store_engine, since=BASE_TIME)
    assert [(c.line, c.camera, c.frames, c.defects, c.errors) for c in counts] == [
        ("line-1", "cam-0", 4, 1, 1),
        ("line-1", "cam-1", 1, 1, 0),
        ("line-2", "cam-0", 1, 0, 0),
    ]
    assert counts[0].last_finished_at == at(90)
    assert line_counts(store_engine, since=at(1000)) == []


def test_status_summary_covers_all_time_and_lines_with_only_a_model(store_engine: Engine) -> None:  # noqa: F811
    write_day(store_engine)
    register_model(
        store_engine,
        version="m-1",
        checkpoint_path="/m.pt",
        recipe={},
        calibration={},
        metrics=None,
        teacher_source="random",
        random_teacher=True,
        training_data={},
    )
    activate_model(store_engine, "line-1", "m-1")
    activate_model(store_engine, "line-3", "m-1")
    summary = status_summary(store_engine)
    assert [(s.line, s.frames, s.flagged, s.errors, s.active_model) for s in summary] == [
        ("line-1", 6, 2, 1, "m-1"),
        ("line-2", 1, 0, 0, None),
        ("line-3", 0, 0, 0, "m-1"),
    ]
    assert summary[0].last_finished_at == at(190)
