"""Retention by age and bytes: old rows with their reviews and pictures, events, settled ledgers, the
outbox's messages no sink waits for, artifacts."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, update
from store_fixtures import BASE_TIME, db_url, make_record, postgres_run_database, store_engine  # noqa: F401  (fixtures)

from store import SentFrame, claim_ingested_file, record_sent_frames, record_source_event, save_review, settle_claims, settle_stream_frames, write_inspections
from store.artifacts import FileArtifactStore
from store.outbox import OutboxEntry, add_messages, mark_sent
from store.retention import RetentionPolicy, apply_retention
from store.schema import IngestedFile, Inspection, OutboxMessage, Review, SourceEvent, StreamFrame


def count(engine: Engine, table: type) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table))


def put(artifacts: FileArtifactStore, key: str, size: int, written_at: datetime) -> None:
    artifacts.put(key, b"x" * size)
    stamp = written_at.timestamp()
    os.utime(artifacts.root / key, (stamp, stamp))


def test_retention_by_age_then_bytes_and_a_dry_run_first(store_engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    now = datetime.now(UTC)
    artifacts = FileArtifactStore(tmp_path / "artifacts")
    old_flag = make_record("old-flag", BASE_TIME, verdict="defect", score=0.9, image_key="l/old-flag.image.jpg", heatmap_key="l/old-flag.heatmap.jpg")
    new_rows = [make_record(f"new-{n}", now - timedelta(hours=n), image_key=f"l/new-{n}.image.jpg") for n in range(3)]
    write_inspections(store_engine, [old_flag, make_record("old-good", BASE_TIME), *new_rows])
    with store_engine.connect() as connection:
        save_review(store_engine, connection.scalar(select(Inspection.id).where(Inspection.frame_id == "old-flag")), "confirmed", None, "ann")
    for key in ("l/old-flag.image.jpg", "l/old-flag.heatmap.jpg", "parts/orphan-full-image.png"):
        put(artifacts, key, 100, BASE_TIME)
    for n in range(3):
        put(artifacts, f"l/new-{n}.image.jpg", 100, now - timedelta(hours=n))
    record_source_event(store_engine, "line-1", "cam-0", "test", "started", "old")
    record_source_event(store_engine, "line-1", "cam-0", "test", "started", "new")
    record_sent_frames(store_engine, [SentFrame(f"s-{n}", "line-1", "cam-0", "video:test", n) for n in range(3)])
    settle_stream_frames(store_engine, [f"s-{n}" for n in range(3)], lost=False)
    present = tmp_path / "still-here.png"
    present.write_bytes(b"png")
    claim_ingested_file(store_engine, "folder:x", str(present), 3, 1.0, "c-here")
    claim_ingested_file(store_engine, "folder:x", str(tmp_path / "gone.png"), 3, 1.0, "c-gone")
    settle_claims(store_engine, "folder:x", ["c-here", "c-gone"], "recorded")
    with store_engine.begin() as connection:
        connection.execute(update(SourceEvent).where(SourceEvent.message == "old").values(at=BASE_TIME))
        connection.execute(update(StreamFrame).values(published_at=BASE_TIME))
        connection.execute(update(IngestedFile).values(ingested_at=BASE_TIME))
    policy = RetentionPolicy(max_age=timedelta(days=30), max_artifact_bytes=150)

    dry = apply_retention(store_engine, artifacts, policy, now=now, dry_run=True)
    assert (count(store_engine, Inspection), count(store_engine, Review), len(list(artifacts.entries()))) == (5, 1, 6)

    done = apply_retention(store_engine, artifacts, policy, now=now)

    # The review of the old flag refers to it twice: as the review and in its history.
    expected = dict(inspections=2, referring_rows=2, source_events=1, stream_frames=2, file_claims=1, artifacts=5, artifact_bytes=500)
    assert {name: getattr(dry, name) for name in expected} == expected == {name: getattr(done, name) for name in expected}
    assert done.summary().startswith("removed 2 inspections, 2 referring rows") and dry.summary().startswith("would remove")
    assert (count(store_engine, Inspection), count(store_engine, Review), count(store_engine, SourceEvent)) == (3, 0, 1)
    with store_engine.connect() as connection:
        assert connection.scalars(select(StreamFrame.sequence)).all() == [2]  # the camera's sequence goes on
        assert connection.scalars(select(IngestedFile.frame_id)).all() == ["c-here"]  # keeps the file from coming again
        keys = dict(connection.execute(select(Inspection.frame_id, Inspection.image_key)).all())
    # 150 bytes of artifacts kept: the newest picture; the older ones' rows stay, without a picture.
    assert [entry.key for entry in artifacts.entries()] == ["l/new-0.image.jpg"]
    assert keys == {"new-0": "l/new-0.image.jpg", "new-1": None, "new-2": None}


def test_retention_removes_old_outbox_messages_no_configured_sink_waits_for(store_engine: Engine, tmp_path: Path) -> None:  # noqa: F811
    now = datetime.now(UTC)
    with store_engine.begin() as connection:
        for key, created_at in (("old-sent", BASE_TIME), ("old-waiting", BASE_TIME), ("new-sent", now)):
            add_messages(connection, [OutboxEntry(key, "line-1", "cam-0", "lineguard/line-1/cam-0/verdict", "{}")], now=created_at)
    with store_engine.connect() as connection:
        ids = dict(connection.execute(select(OutboxMessage.key, OutboxMessage.id)).all())
    mark_sent(store_engine, "mqtt", [ids["old-sent"], ids["new-sent"]])
    artifacts = FileArtifactStore(tmp_path / "artifacts")

    def keys() -> list[str]:
        with store_engine.connect() as connection:
            return sorted(connection.scalars(select(OutboxMessage.key)))

    # The broker is configured: a message still waiting for it stays, however old (an outage loses nothing).
    with_broker = RetentionPolicy(max_age=timedelta(days=30), outbox_sinks=("mqtt",))
    assert apply_retention(store_engine, artifacts, with_broker, now=now, dry_run=True).outbox_messages == 1
    assert apply_retention(store_engine, artifacts, with_broker, now=now).outbox_messages == 1
    assert keys() == ["new-sent", "old-waiting"]
    # A webhook configured beside it has taken nothing: every old message waits for it.
    mark_sent(store_engine, "mqtt", [ids["old-waiting"]])
    both = RetentionPolicy(max_age=timedelta(days=30), outbox_sinks=("mqtt", "webhook"))
    assert apply_retention(store_engine, artifacts, both, now=now).outbox_messages == 0
    # No sink configured any more: nothing will send the old messages.
    assert apply_retention(store_engine, artifacts, RetentionPolicy(max_age=timedelta(days=30)), now=now).outbox_messages == 1
    assert keys() == ["new-sent"]
