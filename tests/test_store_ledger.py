"""The folder watcher's ledger of ingested files and the log of source events."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from store_fixtures import db_url, postgres_run_database, store_engine  # noqa: F401  (fixtures)

from store import claim_ingested_file, recent_source_events, record_source_event
from store.records import record_source_events, skipped_file_counts

CLAIMERS = 8


def test_a_file_is_claimed_once_per_source(store_engine: Engine) -> None:  # noqa: F811
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/a.png", 120, 1.5) is True
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/a.png", 120, 1.5) is False
    assert claim_ingested_file(store_engine, "folder:line-2", "/in/a.png", 120, 1.5) is True
    assert claim_ingested_file(store_engine, "folder:line-1", "/in/b.png", 99, 2.0) is True


def test_concurrent_claims_of_one_file_have_exactly_one_winner(store_engine: Engine) -> None:  # noqa: F811
    start = threading.Barrier(CLAIMERS)
    results: list[bool] = []
    failures: list[BaseException] = []

    def claim() -> None:
        start.wait()
        try:
            results.append(claim_ingested_file(store_engine, "folder:line-1", "/in/race.png", 10, 1.0))
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
