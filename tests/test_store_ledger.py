"""The folder watcher's ledger of ingested files and the log of source events."""

from __future__ import annotations

import secrets
import threading

from sqlalchemy import Engine
from store_fixtures import db_url, postgres_run_database, store_engine  # noqa: F401  (fixtures)

from store import (
    SentFrame,
    claim_ingested_file,
    lost_frame_counts,
    next_stream_sequence,
    recent_source_events,
    record_sent_frames,
    record_source_event,
    settle_claims,
    settle_stream_frames,
    unsettled_claims,
    unsettled_stream_frames,
    write_inspections,
)
from store.records import record_source_events, skipped_file_counts
from store_fixtures import make_record

CLAIMERS = 8


def test_a_file_is_claimed_once_per_source(store_engine: Engine) -> None:  # noqa: F811
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/a.png", 120, 1.5, "f-a1") is True
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/a.png", 120, 1.5, "f-a2") is False
    assert claim_ingested_file(store_engine, "folder:line-2", "/in/a.png", 120, 1.5, "f-a3") is True
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/b.png", 99, 2.0, "f-b") is True


def test_concurrent_claims_of_one_file_have_exactly_one_winner(store_engine: Engine) -> None:  # noqa: F811
    start = threading.Barrier(CLAIMERS)
    results: list[bool] = []
    failures: list[BaseException] = []

    def claim() -> None:
        start.wait()
        try:
            results.append(claim_ingested_file(store_engine, "folder:line-1", "/in/race.png", 10, 1.0, secrets.token_hex(8)))
        except BaseException as error:  # collected and asserted on below
            failures.append(error)

    threads = [threading.Thread(target=claim) for _ in range(CLAIMERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert sorted(results) == [False] * (CLAIMERS - 1) + [True]


def test_source_events_read_back_newest_first(store_engine: Engine) -> None:  # noqa: F811
    record_source_event(store_engine, "line-1", "cam-0", "rtsp://cam0", "started", None)
    record_source_event(store_engine, "line-2", "cam-0", "/in", "started", "watching /in")
    record_source_event(store_engine, "line-1", "cam-0", "rtsp://cam0", "disconnected", "timeout after 5 s")
    events = recent_source_events(store_engine)
    expected = [("line-1", "disconnected"), ("line-2", "started"), ("line-1", "started")]
    assert [(e.line, e.kind) for e in events] == expected
    assert events[0].message == "timeout after 5 s"
    assert [e.kind for e in recent_source_events(store_engine, limit=1, line="line-1")] == ["disconnected"]


def test_skipped_files_are_counted_per_line_camera_and_reason(store_engine: Engine) -> None:  # noqa: F811
    record_source_events(
        store_engine, "line-1", "cam-1", "folder:/in",
        [("skipped:kind", "/in/x.png: a FIFO"), ("skipped:kind", "/in/y.png: a socket"), ("skipped:size", "/in/big.png: 9 bytes")],
    )
    record_source_events(store_engine, "line-1", "cam-2", "folder:/in2", [("skipped:extension", "/in2/a.gif"), ("started", None)])
    record_source_event(store_engine, "line-2", "cam-1", "folder:/in3", "stopped", "skipped_counts look-alike")
    record_source_events(store_engine, "line-2", "cam-1", "folder:/in3", [])  # nothing to record: no transaction
    assert skipped_file_counts(store_engine) == {
        ("line-1", "cam-1"): {"kind": 2, "size": 1},
        ("line-1", "cam-2"): {"extension": 1},
    }
    assert [event.kind for event in recent_source_events(store_engine, line="line-1")][-1] == "skipped:kind"


def test_a_claim_keeps_its_frame_id_until_it_is_settled(store_engine: Engine) -> None:  # noqa: F811
    for name in ("a", "b", "c"):
        claim_ingested_file(store_engine, "folder:line-1", f"/in/{name}.png", 1, 2.0, f"frame-{name}")
    claim_ingested_file(store_engine, "folder:line-2", "/in/a.png", 1, 2.0, "frame-other")

    assert [(c.path, c.frame_id) for c in unsettled_claims(store_engine, "folder:line-1")] == [
        ("/in/a.png", "frame-a"), ("/in/b.png", "frame-b"), ("/in/c.png", "frame-c"),
    ]
    settle_claims(store_engine, "folder:line-1", ["frame-a", "frame-other"], "recorded")
    first, *rest = unsettled_claims(store_engine, "folder:line-1", limit=1)
    assert (first.frame_id, rest) == ("frame-b", [])
    assert [c.frame_id for c in unsettled_claims(store_engine, "folder:line-1", after_id=first.id)] == ["frame-c"]
    assert [c.frame_id for c in unsettled_claims(store_engine, "folder:line-2")] == ["frame-other"]


def test_lost_stream_frames_are_counted_per_camera_until_their_row_turns_up(store_engine: Engine) -> None:  # noqa: F811
    assert next_stream_sequence(store_engine, "line-1", "cam-0") == 0
    sent = [SentFrame(f"s{n}", "line-1", "cam-0", "video:x", n) for n in range(4)]
    sent.append(SentFrame("t0", "line-1", "cam-1", "video:y", 7))
    record_sent_frames(store_engine, sent)
    record_sent_frames(store_engine, sent[:1])  # written again (a retried batch): still one entry
    assert next_stream_sequence(store_engine, "line-1", "cam-0") == 4
    assert next_stream_sequence(store_engine, "line-1", "cam-1") == 8
    assert [frame_id for _, frame_id in unsettled_stream_frames(store_engine, "line-1", "cam-0")] == ["s0", "s1", "s2", "s3"]

    settle_stream_frames(store_engine, ["s0"], lost=False)
    settle_stream_frames(store_engine, ["s1", "s2", "t0"], lost=True)
    assert [frame_id for _, frame_id in unsettled_stream_frames(store_engine, "line-1", "cam-0")] == ["s3"]
    assert [(c.line, c.camera, c.lost) for c in lost_frame_counts(store_engine)] == [("line-1", "cam-0", 2), ("line-1", "cam-1", 1)]

    write_inspections(store_engine, [make_record("s2", camera="cam-0")])  # late, not lost after all
    assert [(c.camera, c.lost) for c in lost_frame_counts(store_engine)] == [("cam-0", 1), ("cam-1", 1)]
