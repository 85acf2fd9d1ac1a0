"""Writing inspection rows idempotently in one transaction, and reading them back."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select
from store_fixtures import BASE_TIME, db_url, make_record, postgres_run_database, store_engine  # noqa: F401

from store import (
    InspectionFilter,
    InvalidArgumentError,
    InvalidRecordError,
    UnknownInspectionError,
    inspection_detail,
    inspections_frame,
    recorded_frame_ids,
    save_review,
    write_inspections,
)
from store.inspections import RECORD_FIELDS
from store.schema import Inspection


def count_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Inspection)).scalar_one()


def id_of(engine: Engine, frame_id: str) -> int:
    with engine.connect() as connection:
        return connection.execute(select(Inspection.id).where(Inspection.frame_id == frame_id)).scalar_one()


def test_record_fields_are_the_inspection_columns_but_id() -> None:
    assert set(RECORD_FIELDS) == {column.name for column in Inspection.__table__.columns} - {"id"}


def test_writing_a_frame_again_updates_its_row_instead_of_adding_one(store_engine: Engine) -> None:  # noqa: F811
    assert write_inspections(store_engine, [make_record("f-1"), make_record("f-2")]) == 2
    first_id = id_of(store_engine, "f-1")
    retried = make_record("f-1", verdict="defect", score=0.9, worker="worker-2", random_teacher=True)
    assert write_inspections(store_engine, [retried]) == 1
    assert count_rows(store_engine) == 2
    stored = inspection_detail(store_engine, first_id)
    assert stored.id == first_id
    assert stored.record == retried


def test_a_frame_repeated_in_one_batch_keeps_its_last_record(store_engine: Engine) -> None:  # noqa: F811
    last = make_record("f-1", verdict="defect", score=0.8)
    assert write_inspections(store_engine, [make_record("f-1"), last]) == 1
    assert inspection_detail(store_engine, id_of(store_engine, "f-1")).record == last


def test_a_batch_with_a_refused_row_writes_nothing(store_engine: Engine) -> None:  # noqa: F811
    write_inspections(store_engine, [make_record("before")])
    batch = [make_record("f-1"), make_record("f-2", line=None), make_record("f-3")]  # line is NOT NULL
    with pytest.raises(InvalidRecordError, match="not written"):
        write_inspections(store_engine, batch)
    assert count_rows(store_engine) == 1


def test_times_come_back_as_the_same_instants_in_utc(store_engine: Engine) -> None:  # noqa: F811
    plus_two = timezone(timedelta(hours=2))
    finished = BASE_TIME.astimezone(plus_two) + timedelta(microseconds=123_456)
    write_inspections(store_engine, [make_record("f-1", finished_at=finished)])
    stored = inspection_detail(store_engine, id_of(store_engine, "f-1")).record
    assert stored.finished_at == finished
    assert stored.finished_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"verdict": "maybe"}, "verdict"),
        ({"verdict": "error", "score": None}, "reason"),
        ({"verdict": "defect", "score": None}, "needs a score"),
        ({"score": 1.5}, "outside 0..1"),
        ({"raw_score": float("nan")}, "finite"),
    ],
)
def test_records_breaking_the_rules_are_refused_when_made(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        make_record("f-1", **changes)


@pytest.mark.parametrize(
    ("frame_id", "changes", "message"),
    [
        ("", {}, "frame_id must not be empty"),
        ("x" * 65, {}, "frame_id has 65 characters; its column holds 64"),
        ("f-1", {"camera": "c" * 129}, "camera has 129 characters; its column holds 128"),
    ],
)
def test_text_must_fit_its_column_on_every_dialect(frame_id: str, changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        make_record(frame_id, **changes)


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidRecordError, match="captured_at must be a timezone-aware"):
        make_record("f-1", captured_at=BASE_TIME.replace(tzinfo=None))


def test_an_error_row_needs_no_score(store_engine: Engine) -> None:  # noqa: F811
    error_row = make_record("f-1", verdict="error", score=None, raw_score=None, error="cannot decode JPEG")
    write_inspections(store_engine, [error_row])
    assert inspection_detail(store_engine, id_of(store_engine, "f-1")).record.error == "cannot decode JPEG"


def test_detail_of_an_unknown_id_raises(store_engine: Engine) -> None:  # noqa: F811
    with pytest.raises(UnknownInspectionError, match="12345"):
        inspection_detail(store_engine, 12345)


def test_export_frame_filters_orders_newest_first_and_joins_reviews(store_engine: Engine) -> None:  # noqa: F811
    records = [
        make_record(f"f-{minute}", finished_at=BASE_TIME + timedelta(minutes=minute), score=0.1 * minute)
        for minute in range(1, 6)
    ] + [make_record("other-line", line="line-2")]
    write_inspections(store_engine, records)
    save_review(store_engine, id_of(store_engine, "f-4"), "false_alarm", "glare", "ana")

    frame = inspections_frame(
        store_engine,
        InspectionFilter(line="line-1", since=BASE_TIME + timedelta(minutes=2), min_score=0.25),
    )

    assert list(frame["frame_id"]) == ["f-5", "f-4", "f-3"]
    assert list(frame.columns) == ["id", *RECORD_FIELDS, "review_verdict", "review_note", "reviewer", "reviewed_at"]
    reviewed = frame.set_index("frame_id").loc["f-4"]
    review = (reviewed["review_verdict"], reviewed["review_note"], reviewed["reviewer"])
    assert review == ("false_alarm", "glare", "ana")
    assert str(frame["finished_at"].dt.tz) == "UTC"
    assert len(inspections_frame(store_engine, limit=2)) == 2


def test_filters_refuse_unknown_verdicts_and_naive_times() -> None:
    with pytest.raises(InvalidArgumentError, match="verdict"):
        InspectionFilter(verdict="bad")
    with pytest.raises(InvalidArgumentError, match="since"):
        InspectionFilter(since=BASE_TIME.replace(tzinfo=None))


def test_recorded_frame_ids_names_only_frames_with_rows(store_engine: Engine) -> None:  # noqa: F811
    write_inspections(store_engine, [make_record("f-1"), make_record("f-2")])
    assert recorded_frame_ids(store_engine, ["f-2", "f-3", "f-1"]) == {"f-1", "f-2"}
    assert recorded_frame_ids(store_engine, []) == set()
