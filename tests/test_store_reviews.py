"""Saving reviews, the queue of flagged frames still to review, and the precision of flags."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select
from store_fixtures import BASE_TIME, db_url, make_record, postgres_run_database, store_engine  # noqa: F401

from store import (
    InspectionFilter,
    InvalidArgumentError,
    UnknownInspectionError,
    count_review_queue,
    inspection_detail,
    review_precision,
    review_history,
    review_queue,
    save_frame_reviews,
    save_review,
    write_inspections,
)
from store.schema import Inspection


def ids_by_frame(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {frame_id: id_ for frame_id, id_ in connection.execute(select(Inspection.frame_id, Inspection.id))}


def write_flags(engine: Engine) -> dict[str, int]:
    """Flags d-0..d-5 a minute apart (line-1, cams 0/1 in turn, score 0.6 + 0.05 * i), and earlier other rows."""
    flags = [
        make_record(
            f"d-{i}",
            finished_at=BASE_TIME + timedelta(minutes=i),
            verdict="defect",
            score=0.6 + 0.05 * i,
            camera=f"cam-{i % 2}",
        )
        for i in range(6)
    ]
    earlier = BASE_TIME - timedelta(minutes=1)
    noise = [
        make_record("good", earlier, verdict="good", score=0.1),
        make_record("err", earlier, verdict="error", score=None, error="empty frame"),
        make_record("other-line", earlier, line="line-2", verdict="defect", score=0.9),
    ]
    write_inspections(engine, flags + noise)
    return ids_by_frame(engine)


def queue_frames(engine: Engine, filters: InspectionFilter | None = None, **page: int) -> list[str]:
    return [item.record.frame_id for item in review_queue(engine, filters, **page)]


def test_the_queue_holds_unreviewed_flags_newest_first_in_pages(store_engine: Engine) -> None:  # noqa: F811
    write_flags(store_engine)
    everything = queue_frames(store_engine, limit=100)
    assert everything == ["d-5", "d-4", "d-3", "d-2", "d-1", "d-0", "other-line"]
    assert queue_frames(store_engine, limit=3, offset=3) == ["d-2", "d-1", "d-0"]
    assert count_review_queue(store_engine) == 7
    assert all(item.review is None for item in review_queue(store_engine))


def test_queue_filters_by_line_camera_time_and_score(store_engine: Engine) -> None:  # noqa: F811
    write_flags(store_engine)
    by_camera = InspectionFilter(line="line-1", camera="cam-1")
    assert queue_frames(store_engine, by_camera) == ["d-5", "d-3", "d-1"]
    window = InspectionFilter(since=BASE_TIME + timedelta(minutes=1), until=BASE_TIME + timedelta(minutes=4))
    assert queue_frames(store_engine, window) == ["d-3", "d-2", "d-1"]
    assert queue_frames(store_engine, InspectionFilter(line="line-1", min_score=0.74)) == ["d-5", "d-4", "d-3"]
    assert count_review_queue(store_engine, by_camera) == 3


def test_reviewing_takes_a_flag_off_the_queue_and_a_re_review_replaces_it(store_engine: Engine) -> None:  # noqa: F811
    ids = write_flags(store_engine)
    save_review(store_engine, ids["d-5"], "false_alarm", "reflection", "ana")
    assert "d-5" not in queue_frames(store_engine, limit=100)
    save_review(store_engine, ids["d-5"], "confirmed", None, "ben")
    review = inspection_detail(store_engine, ids["d-5"]).review
    assert review is not None
    assert (review.verdict, review.note, review.reviewer) == ("confirmed", None, "ben")
    assert count_review_queue(store_engine) == 6


def test_precision_per_line_counts_confirmed_over_reviewed(store_engine: Engine) -> None:  # noqa: F811
    ids = write_flags(store_engine)
    save_review(store_engine, ids["d-0"], "confirmed", None, "ana")
    save_review(store_engine, ids["d-1"], "confirmed", None, "ana")
    save_review(store_engine, ids["d-2"], "false_alarm", None, "ana")
    by_line = {entry.line: entry for entry in review_precision(store_engine)}
    line_1, line_2 = by_line["line-1"], by_line["line-2"]
    assert (line_1.flagged, line_1.reviewed, line_1.confirmed, line_1.unreviewed) == (6, 3, 2, 3)
    assert line_1.precision == pytest.approx(2 / 3)
    assert (line_2.flagged, line_2.reviewed, line_2.unreviewed, line_2.precision) == (1, 0, 1, None)
    recent = review_precision(store_engine, since=BASE_TIME + timedelta(minutes=2))
    assert [(entry.line, entry.flagged, entry.reviewed) for entry in recent] == [("line-1", 4, 1)]


def test_reviews_are_validated(store_engine: Engine) -> None:  # noqa: F811
    ids = write_flags(store_engine)
    with pytest.raises(InvalidArgumentError, match="'maybe'"):
        save_review(store_engine, ids["d-0"], "maybe", None, "ana")
    with pytest.raises(InvalidArgumentError, match="reviewer"):
        save_review(store_engine, ids["d-0"], "confirmed", None, " ")
    with pytest.raises(UnknownInspectionError, match="999999"):
        save_review(store_engine, 999_999, "confirmed", None, "ana")


def test_paging_arguments_are_validated(store_engine: Engine) -> None:  # noqa: F811
    with pytest.raises(InvalidArgumentError, match="offset"):
        review_queue(store_engine, limit=10, offset=-1)


def test_a_re_review_keeps_the_earlier_verdicts_in_the_history(store_engine: Engine) -> None:  # noqa: F811
    ids = write_flags(store_engine)
    save_review(store_engine, ids["d-5"], "false_alarm", "reflection", "ana")
    save_frame_reviews(store_engine, ["d-5"], "confirmed", "crack under the label", "ben")
    history = review_history(store_engine, ids["d-5"])
    assert [(entry.verdict, entry.note, entry.reviewer) for entry in history] == [
        ("false_alarm", "reflection", "ana"),
        ("confirmed", "crack under the label", "ben"),
    ]
    assert inspection_detail(store_engine, ids["d-5"]).review.verdict == "confirmed"
    assert review_history(store_engine, ids["d-4"]) == []


def test_frame_reviews_are_all_or_none(store_engine: Engine) -> None:  # noqa: F811
    ids = write_flags(store_engine)
    assert save_frame_reviews(store_engine, ["d-0", "good", "d-0"], "confirmed", None, "ana") == {
        "d-0": ids["d-0"],
        "good": ids["good"],
    }
    with pytest.raises(UnknownInspectionError, match="no-such-frame; nothing was saved"):
        save_frame_reviews(store_engine, ["d-1", "no-such-frame"], "false_alarm", None, "ana")
    with pytest.raises(InvalidArgumentError, match="err could not be scored"):
        save_frame_reviews(store_engine, ["d-1", "err"], "false_alarm", None, "ana")
    assert review_history(store_engine, ids["d-1"]) == []
    assert count_review_queue(store_engine) == 6
