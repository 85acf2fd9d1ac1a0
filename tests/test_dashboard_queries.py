"""The dashboard's own SQL on both dialects, and the pure functions that turn buckets into figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine
from store_fixtures import BASE_TIME, db_url, make_record, postgres_run_database, store_engine  # noqa: F401

from dashboard import figures, queries
from dashboard.windows import SETTLE_S, WINDOWS, floor_time, window_by_key
from store import (
    CameraCounts,
    RateBucket,
    InspectionFilter,
    activate_model,
    defect_rate_series,
    register_model,
    save_review,
    write_inspections,
)
from store.inspections import inspections_frame


def at(seconds: float) -> datetime:
    return BASE_TIME + timedelta(seconds=seconds)


def register(engine: Engine, version: str, random_teacher: bool) -> None:
    register_model(
        engine,
        version=version,
        checkpoint_path=f"/m/{version}.pt",
        recipe={},
        calibration={"threshold": 1.0},
        metrics=None,
        teacher_source="random" if random_teacher else "file:vgg.pth",
        random_teacher=random_teacher,
        training_data={},
    )


def ids_by_frame(engine: Engine) -> dict[str, int]:
    return inspections_frame(engine).set_index("frame_id")["id"].to_dict()


def test_streams_lists_each_line_and_camera_once(store_engine: Engine) -> None:  # noqa: F811
    assert queries.streams(store_engine) == []
    cameras = [("line-2", "cam-b"), ("line-1", "cam-b"), ("line-1", "cam-a"), ("line-10", "cam-a"), ("line-1", "cam-a")]
    write_inspections(
        store_engine,
        [make_record(f"f{i}", at(i), line=line, camera=camera) for i, (line, camera) in enumerate(cameras)],
    )
    assert queries.streams(store_engine) == sorted(set(cameras))


def test_active_line_models_carry_the_teacher(store_engine: Engine) -> None:  # noqa: F811
    register(store_engine, "real", random_teacher=False)
    register(store_engine, "toy", random_teacher=True)
    activate_model(store_engine, "line-2", "toy")
    activate_model(store_engine, "line-1", "real")
    active = queries.active_line_models(store_engine)
    assert [(info.line, info.model_version, info.random_teacher, info.teacher_source) for info in active] == [
        ("line-1", "real", False, "file:vgg.pth"),
        ("line-2", "toy", True, "random"),
    ]
    assert all(info.activated_at.tzinfo is not None for info in active)


def test_export_filters_unreviewed_and_model(store_engine: Engine) -> None:  # noqa: F811
    write_inspections(
        store_engine,
        [
            make_record("old-a", at(0), verdict="defect", score=0.9, model_version="a"),
            make_record("new-a", at(10), verdict="defect", score=0.8, model_version="a"),
            make_record("new-b", at(20), verdict="defect", score=0.7, model_version="b"),
            make_record("good-b", at(30), model_version="b"),
        ],
    )
    ids = ids_by_frame(store_engine)
    save_review(store_engine, ids["new-a"], "confirmed", "seen", "ana")
    flagged = InspectionFilter(verdict="defect")

    def frames(**options: object) -> list[str]:
        return list(queries.inspections_export(store_engine, options.pop("filters", flagged), **options)["frame_id"])

    assert frames() == ["new-b", "new-a", "old-a"]
    assert frames(unreviewed_only=True) == ["new-b", "old-a"]
    assert frames(filters=InspectionFilter(), model_version="b") == ["good-b", "new-b"]
    assert frames(limit=1) == ["new-b"]
    exported = queries.inspections_export(store_engine, flagged)
    reviewed = exported.set_index("frame_id").loc["new-a"]
    assert (reviewed["review_verdict"], reviewed["review_note"], reviewed["reviewer"]) == ("confirmed", "seen", "ana")
    # A filter value is a bound parameter: SQL in it matches nothing and breaks nothing.
    hostile = InspectionFilter(line="line-1' OR '1'='1")
    assert queries.inspections_export(store_engine, hostile).empty
    with pytest.raises(ValueError, match="limit"):
        queries.inspections_export(store_engine, flagged, limit=0)


def test_figures_from_the_stores_buckets(store_engine: Engine) -> None:  # noqa: F811
    rows = [
        # (frame, line, camera, seconds after BASE_TIME, verdict, capture-to-result latency)
        ("a", "line-1", "cam-0", 5, "good", 0.2),
        ("b", "line-1", "cam-0", 65, "defect", 0.4),
        ("c", "line-1", "cam-1", 70, "error", 0.6),
        ("d", "line-1", "cam-1", 75, "defect", 1.0),
        ("e", "line-2", "cam-0", 10, "good", 0.3),
    ]
    write_inspections(
        store_engine,
        [
            make_record(
                frame,
                at(seconds),
                line=line,
                camera=camera,
                verdict=verdict,
                captured_at=at(seconds - latency),
                **({"score": None, "error": "bad frame"} if verdict == "error" else {"score": 0.9 if verdict == "defect" else 0.1}),
            )
            for frame, line, camera, seconds, verdict, latency in rows
        ],
    )
    buckets = figures.bucket_frame(defect_rate_series(store_engine, BASE_TIME, 60))
    per_line = figures.current_figures(buckets, window_seconds=120, per_camera=False).set_index("line")
    assert per_line.loc["line-1", ["frames", "defects", "errors"]].tolist() == [4, 2, 1]
    assert per_line.loc["line-1", "defect_rate"] == pytest.approx(2 / 3)  # errors are not scored frames
    assert per_line.loc["line-1", "frames_per_s"] == pytest.approx(4 / 120)
    assert per_line.loc["line-1", "mean_latency_s"] == pytest.approx((0.2 + 0.4 + 0.6 + 1.0) / 4, abs=2e-3)
    assert per_line.loc["line-1", "max_latency_s"] == pytest.approx(1.0, abs=2e-3)
    per_camera = figures.current_figures(buckets, window_seconds=120, per_camera=True)
    assert per_camera[["line", "camera", "frames"]].values.tolist() == [
        ["line-1", "cam-0", 2],
        ["line-1", "cam-1", 2],
        ["line-2", "cam-0", 1],
    ]
    assert figures.alarmed(per_camera, alarm_rate=0.5, min_frames=1).tolist() == [True, True, False]
    assert figures.alarmed(per_camera, alarm_rate=0.5, min_frames=2).tolist() == [True, False, False]
    trend = figures.trend(buckets, bucket_seconds=60, per_camera=False)
    assert trend[["start", "series", "frames"]].values.tolist() == [
        [BASE_TIME, "line-1", 1],
        [BASE_TIME, "line-2", 1],
        [at(60), "line-1", 3],
    ]
    assert trend["frames_per_s"].tolist() == pytest.approx([1 / 60, 1 / 60, 3 / 60])


def test_a_camera_with_only_errors_has_no_rate() -> None:
    buckets = pd.DataFrame(
        [(BASE_TIME, "line-1", "cam-0", 3, 0, 3, 0.6, 0.3)], columns=list(figures.BUCKET_COLUMNS)
    )
    only_errors = figures.current_figures(buckets, 60, per_camera=True)
    assert only_errors["defect_rate"].isna().all()
    assert not figures.alarmed(only_errors, alarm_rate=0.01, min_frames=1).any()


def test_windows_cover_whole_buckets_and_read_well_sized_chunks() -> None:
    now = datetime(2025, 3, 3, 12, 34, 56, 789_000, tzinfo=UTC)
    assert [window.key for window in WINDOWS] == ["15min", "hour", "shift", "day"]
    for window in WINDOWS:
        assert 10 <= window.duration.total_seconds() / window.bucket_seconds <= 100, window  # a readable trend
        start = window.start(now)
        assert start.timestamp() % window.bucket_seconds == 0
        assert window.duration <= now - start < window.duration + timedelta(seconds=window.bucket_seconds)
        chunks, recent_since = window.plan(now)
        edges = [start, *(end for _, end in chunks)]
        assert [since for since, _ in chunks] == edges[:-1]  # contiguous, from the window's start
        assert edges[-1] == recent_since
        assert all(edge.timestamp() % window.chunk_seconds == 0 for edge in edges[1:])
        assert recent_since <= now - timedelta(seconds=SETTLE_S) or not chunks
        # What a refresh reads again: less than a chunk plus the settling time.
        assert now - recent_since < timedelta(seconds=window.chunk_seconds + SETTLE_S)
    assert window_by_key("shift").label == "last shift (8 h)"
    with pytest.raises(ValueError, match="15min, hour, shift, day"):
        window_by_key("week")
    assert floor_time(now, 5) == datetime(2025, 3, 3, 12, 34, 55, tzinfo=UTC)


def test_a_window_read_in_chunks_equals_one_query(store_engine: Engine) -> None:  # noqa: F811
    now = BASE_TIME + timedelta(minutes=17, seconds=3)
    records = [
        make_record(f"f{i}", now - timedelta(seconds=97 * i), verdict="defect" if i % 5 == 0 else "good")
        for i in range(1000)  # one frame every 97 s back over 27 hours
    ]
    write_inspections(store_engine, records)
    for window in WINDOWS:
        chunks, recent_since = window.plan(now)
        pieces = [
            bucket
            for since, until in chunks
            for bucket in defect_rate_series(store_engine, since, window.bucket_seconds, until=until)
        ]
        pieces += defect_rate_series(store_engine, recent_since, window.bucket_seconds)
        whole = defect_rate_series(store_engine, window.start(now), window.bucket_seconds)
        assert pieces == whole, window.key


def test_the_present_rate_sits_beside_the_windows_average() -> None:
    buckets = figures.bucket_frame(
        [RateBucket(BASE_TIME, "line-1", camera, 120, 6, 0, 0.5, 1.0) for camera in ("cam-0", "cam-1")]
    )
    per_stream = figures.current_figures(buckets, 3600, per_camera=True)
    present = [CameraCounts("line-1", "cam-0", 240, 1, 0, BASE_TIME)]
    shown = figures.with_present_rate(per_stream, present, 60, per_camera=True)
    assert shown["frames_per_s_now"].tolist() == [4.0, 0.0]  # cam-1 is silent now
    assert shown["frames_per_s"].tolist() == pytest.approx([120 / 3600, 120 / 3600])
    per_line = figures.with_present_rate(figures.current_figures(buckets, 3600, per_camera=False), present, 60, per_camera=False)
    assert per_line["frames_per_s_now"].tolist() == [4.0]
