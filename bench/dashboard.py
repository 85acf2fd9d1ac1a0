"""Time of each dashboard page's queries on a database of a million inspection rows.

Fills a fresh database (SQLite by default, PostgreSQL with --postgresql) with generated inspections,
models and reviews, then runs the queries each page makes and prints their times: the first (cold)
run and the median of the next runs. The issue's target is under 300 ms per query.

    .venv/bin/python bench/dashboard.py                      # SQLite file in a temporary folder
    .venv/bin/python bench/dashboard.py --postgresql         # a new database on the local PostgreSQL
    .venv/bin/python bench/dashboard.py --database-url sqlite:///runs/bench.db            # fill and keep
    .venv/bin/python bench/dashboard.py --database-url sqlite:///runs/bench.db --reuse    # time again

Rows: 4 lines x 3 cameras, evenly spread over --days ending now; about 2% flagged (4% on line-3, so
that it crosses the default alarm level), 0.2% errors; 60% of the flagged frames older than an hour
are reviewed, 6 in 7 of them confirmed. Bulk inserts: executemany on SQLite, COPY on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from sqlalchemy import Engine, case, func, insert, literal, select
from sqlalchemy.engine import make_url

# This script shares its name with the dashboard package: drop its own folder from the import path,
# or `import dashboard` would find this file instead of the package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from dashboard import figures, queries  # noqa: E402
from dashboard.windows import WINDOWS, Window  # noqa: E402
from store import (  # noqa: E402
    InspectionFilter,
    RateBucket,
    activate_model,
    count_review_queue,
    defect_rate_series,
    inspection_detail,
    list_models,
    make_engine,
    register_model,
    review_precision,
    review_queue,
    schema_revision,
    upgrade,
)
from store.schema import FLAGGED_VERDICT, Inspection, Review  # noqa: E402

LINES = ("line-1", "line-2", "line-3", "line-4")
CAMERAS = ("cam-0", "cam-1", "cam-2")
#: Share of flagged frames per line; the others use DEFAULT_DEFECT_RATE.
DEFECT_RATES = {"line-3": 0.04}
DEFAULT_DEFECT_RATE = 0.02
ERROR_RATE = 0.002
REVIEWED_SHARE = 0.6
#: Model per line; the last was trained with a random teacher.
LINE_MODELS = {"line-1": "ts-bench-a", "line-2": "ts-bench-a", "line-3": "ts-bench-b", "line-4": "ts-bench-random"}
RANDOM_TEACHER_MODELS = {"ts-bench-random"}
RAW_THRESHOLD = 3.0
INSERT_CHUNK = 50_000
TARGET_MS = 300.0
GALLERY_PAGE = 12
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INSERTED_COLUMNS = (
    "frame_id", "line", "camera", "source", "captured_at", "enqueued_at", "started_at", "finished_at",
    "model_version", "score", "raw_score", "threshold", "verdict", "error", "image_key", "heatmap_key",
    "worker", "random_teacher",
)


def generated_rows(first: int, count: int, total: int, now: datetime, days: float, rng: np.random.Generator,
                   dialect: str) -> list[tuple[Any, ...]]:
    """Rows ``first .. first+count-1`` of ``total``, in INSERTED_COLUMNS order, oldest first.

    Times are UTC text in the form each dialect parses: SQLite's stored form (naive, space-separated,
    microseconds, as ``store.schema.UTCDateTime`` writes it) or ISO 8601 with ``+00`` for PostgreSQL.
    """
    index = np.arange(first, first + count)
    span_us = days * 86400e6
    # Row i finishes at an even step through the span, jittered within its step so ids follow time.
    age_us = (span_us * (1.0 - (index + rng.uniform(0.0, 1.0, count)) / total)).astype(np.int64)
    finished = np.datetime64(now.replace(tzinfo=None), "us") - age_us.astype("timedelta64[us]")
    latency_us = (50_000 + rng.gamma(2.0, 100_000.0, count)).astype(np.int64)
    captured = finished - latency_us.astype("timedelta64[us]")
    enqueued = captured + np.timedelta64(10_000, "us")
    started = finished - np.timedelta64(30_000, "us")
    stream = index % (len(LINES) * len(CAMERAS))
    lines = np.array(LINES)[stream // len(CAMERAS)]
    cameras = np.array(CAMERAS)[stream % len(CAMERAS)]
    defect_rate = np.array([DEFECT_RATES.get(line, DEFAULT_DEFECT_RATE) for line in LINES])[stream // len(CAMERAS)]
    draw = rng.uniform(0.0, 1.0, count)
    verdicts = np.where(draw < ERROR_RATE, "error", np.where(draw < ERROR_RATE + defect_rate, "defect", "good"))
    scores = np.where(verdicts == "defect", 0.5 + 0.5 * rng.beta(2.0, 3.0, count), 0.5 * rng.beta(2.0, 8.0, count))
    raw_scores = RAW_THRESHOLD + 0.5 * np.log(scores / (1.0 - scores))

    def as_text(moments: np.ndarray) -> list[str]:
        iso = np.datetime_as_string(moments, unit="us")
        return list(np.char.replace(iso, "T", " ")) if dialect == "sqlite" else [f"{value}+00" for value in iso]

    captured_text, enqueued_text, started_text, finished_text = map(as_text, (captured, enqueued, started, finished))
    rows = []
    for i in range(count):
        frame_id = f"bench-{first + i:012d}"
        line, camera, verdict = str(lines[i]), str(cameras[i]), str(verdicts[i])
        flagged = verdict == "defect"
        scored = verdict != "error"
        model = LINE_MODELS[line]
        rows.append((
            frame_id, line, camera, f"/plant/{line}/{camera}",
            captured_text[i], enqueued_text[i], started_text[i], finished_text[i],
            model,
            float(scores[i]) if scored else None,
            float(raw_scores[i]) if scored else None,
            RAW_THRESHOLD if scored else None,
            verdict,
            None if scored else "undecodable image",
            f"{line}/{camera}/{frame_id}.png" if flagged else None,
            f"{line}/{camera}/{frame_id}.heatmap.png" if flagged else None,
            f"worker-{i % 4}",
            model in RANDOM_TEACHER_MODELS,
        ))
    return rows


def fill(engine: Engine, total: int, days: float, now: datetime, seed: int) -> None:
    """Models, ``total`` inspections and reviews into the freshly upgraded database of ``engine``."""
    for version in sorted(set(LINE_MODELS.values())):
        random_teacher = version in RANDOM_TEACHER_MODELS
        register_model(
            engine,
            version=version,
            checkpoint_path=f"/models/{version}.pt",
            recipe={"backbone": "vgg16", "image_size": 256, "student_width": 0.5},
            calibration={"threshold": RAW_THRESHOLD, "false_reject_rate": 0.01, "n_images": 40},
            metrics={"image_auroc": 0.61 if random_teacher else 0.95, "pixel_auroc": 0.97},
            teacher_source="random (tests only)" if random_teacher else "file:vgg16_imagenet_features.pth",
            random_teacher=random_teacher,
            training_data={"images": 200},
        )
    for line, version in LINE_MODELS.items():
        activate_model(engine, line, version)
    rng = np.random.default_rng(seed)
    dialect = engine.dialect.name
    for first in range(0, total, INSERT_CHUNK):
        rows = generated_rows(first, min(INSERT_CHUNK, total - first), total, now, days, rng, dialect)
        if dialect == "sqlite":
            _insert_sqlite(engine, rows)
        else:
            _copy_postgresql(engine, rows)
    _insert_reviews(engine, now - timedelta(hours=1))
    if dialect == "postgresql":
        # What autovacuum would do shortly after a bulk load; SQLite gets no statistics (the store runs no ANALYZE).
        with engine.connect() as connection:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()


def _insert_sqlite(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    statement = (
        f"INSERT INTO inspections ({', '.join(INSERTED_COLUMNS)}) VALUES ({', '.join('?' * len(INSERTED_COLUMNS))})"
    )
    with engine.begin() as connection:
        connection.exec_driver_sql(statement, rows)


def _copy_postgresql(engine: Engine, rows: list[tuple[Any, ...]]) -> None:
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:
            columns = sql.SQL(", ").join(map(sql.Identifier, INSERTED_COLUMNS))
            with cursor.copy(sql.SQL("COPY inspections ({}) FROM STDIN").format(columns)) as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _insert_reviews(engine: Engine, before: datetime) -> None:
    """Reviews of REVIEWED_SHARE of the flagged frames finished ``before``; 6 in 7 confirmed."""
    reviewed = (
        select(
            Inspection.id,
            case(((Inspection.id % 7) == 0, literal("false_alarm")), else_=literal("confirmed")),
            literal("bench"),
            Inspection.finished_at,
        )
        .where(Inspection.verdict == FLAGGED_VERDICT, Inspection.finished_at < before)
        .where((Inspection.id % 10) < int(REVIEWED_SHARE * 10))
    )
    with engine.begin() as connection:
        connection.execute(
            insert(Review).from_select(["inspection_id", "verdict", "reviewer", "reviewed_at"], reviewed)
        )


def settled_chunks(engine: Engine, window: Window, now: datetime) -> list[tuple[float, list[RateBucket]]]:
    """Each settled chunk of ``window`` read once: (milliseconds, buckets), as a server's first load does."""
    chunks, _ = window.plan(now)
    read = []
    for since, until in chunks:
        started = time.perf_counter()
        buckets = defect_rate_series(engine, since, window.bucket_seconds, until=until)
        read.append(((time.perf_counter() - started) * 1000.0, buckets))
    return read


def live_refresh(engine: Engine, window: Window, now: datetime, settled: list[RateBucket]) -> None:
    """What the live page does per refresh: read the recent rest, then compute figures and trend."""
    _, recent_since = window.plan(now)
    buckets = figures.bucket_frame([*settled, *defect_rate_series(engine, recent_since, window.bucket_seconds)])
    figures.current_figures(buckets, (now - window.start(now)).total_seconds(), per_camera=True)
    figures.trend(buckets, window.bucket_seconds, per_camera=False)


def page_queries(
    engine: Engine, now: datetime, settled: dict[str, list[RateBucket]]
) -> dict[str, dict[str, Callable[[], object]]]:
    """The queries each page makes on load or refresh, by page and a short description.

    ``settled`` holds each window's settled buckets by window key, as the server's cache does.
    """
    day_ago = now - timedelta(days=1)
    every_page: dict[str, Callable[[], object]] = {
        "schema check": lambda: schema_revision(engine),
        "active models": lambda: queries.active_line_models(engine),
    }
    live: dict[str, Callable[[], object]] = {
        f"refresh, {window.label}": lambda window=window: live_refresh(engine, window, now, settled[window.key])
        for window in WINDOWS
    }
    newest_flagged = review_queue(engine, limit=1)
    detail_id = newest_flagged[0].id if newest_flagged else 1
    by_line = InspectionFilter(line="line-3", camera="cam-1")
    narrow = InspectionFilter(since=day_ago, min_score=0.8, max_score=1.0)
    review = {
        "lines and cameras": lambda: queries.streams(engine),
        "queue count": lambda: count_review_queue(engine),
        "queue page 1": lambda: review_queue(engine, limit=GALLERY_PAGE),
        "queue page 100": lambda: review_queue(engine, limit=GALLERY_PAGE, offset=99 * GALLERY_PAGE),
        "queue count, line+camera": lambda: count_review_queue(engine, by_line),
        "queue page 1, line+camera": lambda: review_queue(engine, by_line, limit=GALLERY_PAGE),
        "queue count, day+score": lambda: count_review_queue(engine, narrow),
        "queue page 1, day+score": lambda: review_queue(engine, narrow, limit=GALLERY_PAGE),
        "part detail": lambda: inspection_detail(engine, detail_id),
        "precision per line": lambda: review_precision(engine),
    }
    models = {"models": lambda: list_models(engine)}
    return {"every page": every_page, "live": live, "review": review, "models": models}


def export_queries(engine: Engine, now: datetime) -> dict[str, Callable[[], object]]:
    """CSV exports: made on a click, not on page load, so reported apart from the target."""
    last_hour = InspectionFilter(since=now - timedelta(hours=1), until=now)
    return {
        "export, hour, all lines": lambda: queries.inspections_export(engine, last_hour),
        "export, review queue": lambda: queries.inspections_export(
            engine, InspectionFilter(verdict=FLAGGED_VERDICT), unreviewed_only=True
        ),
    }


def timed(run: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Milliseconds of the first run and the median of ``repeat`` further runs."""
    times = []
    for _ in range(repeat + 1):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000.0)
    return times[0], statistics.median(times[1:])


def report(engine: Engine, now: datetime, repeat: int) -> bool:
    """Print every query's times; True when every page query is under TARGET_MS (median; slowest chunk)."""
    with engine.connect() as connection:
        rows = connection.execute(select(func.count()).select_from(Inspection)).scalar_one()
        reviews = connection.execute(select(func.count()).select_from(Review)).scalar_one()
    print(f"{engine.dialect.name}: {rows:,} inspections, {reviews:,} reviews; times in ms (first run, median of {repeat})")
    all_fast = True
    print("[live, first load of a window per server: its settled chunks, then cached]")
    settled: dict[str, list[RateBucket]] = {}
    for window in WINDOWS:
        chunks = settled_chunks(engine, window, now)
        settled[window.key] = [bucket for _, buckets in chunks for bucket in buckets]
        slowest = max((milliseconds for milliseconds, _ in chunks), default=0.0)
        all_fast &= slowest < TARGET_MS
        print(
            f"  {window.label:22} {len(chunks):3d} chunks, slowest {slowest:7.1f}, in all "
            f"{sum(milliseconds for milliseconds, _ in chunks):8.1f}{'  SLOW' if slowest >= TARGET_MS else ''}"
        )
    for page, page_runs in page_queries(engine, now, settled).items():
        print(f"[{page}]")
        for name, run in page_runs.items():
            first, median = timed(run, repeat)
            slow = median >= TARGET_MS
            all_fast &= not slow
            print(f"  {name:38} {first:8.1f} {median:8.1f}{'  SLOW' if slow else ''}")
    print("[exports, on click]")
    for name, run in export_queries(engine, now).items():
        first, median = timed(run, repeat)
        print(f"  {name:38} {first:8.1f} {median:8.1f}")
    return all_fast


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """URL of a new database on the server of ``admin_url``, dropped on exit."""
    name = f"lineguard_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(url: str, args: argparse.Namespace) -> bool:
    engine = make_engine(url)
    try:
        now = datetime.now(UTC)
        if not args.reuse:
            upgrade(engine)
            with engine.connect() as connection:
                if connection.execute(select(Inspection.id).limit(1)).first() is not None:
                    raise SystemExit(f"{url} already holds inspections; pass --reuse to time it as it is")
            started = time.perf_counter()
            fill(engine, args.rows, args.days, now, args.seed)
            print(f"filled {args.rows:,} rows over {args.days:g} days in {time.perf_counter() - started:.1f} s")
        return report(engine, now, args.repeat)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="database to fill (must hold no inspections) or, with --reuse, to time")
    parser.add_argument("--postgresql", action="store_true", help="fill a new database on the local PostgreSQL")
    parser.add_argument("--postgres-admin-url", default=DEFAULT_POSTGRES_ADMIN_URL,
                        help="server and database from which --postgresql creates its database")
    parser.add_argument("--reuse", action="store_true", help="time the database as it is, without filling it")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=7.0, help="the rows finish evenly over this many days")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the first")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.rows < 1 or args.days <= 0 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1, --days positive")
    if args.postgresql:
        with postgres_database(args.postgres_admin_url) as url:
            fast = run(url, args)
    elif args.database_url:
        fast = run(args.database_url, args)
    else:
        with tempfile.TemporaryDirectory(prefix="lineguard-bench-") as folder:
            fast = run(f"sqlite:///{Path(folder) / 'bench.db'}", args)
    print(f"every page query under {TARGET_MS:.0f} ms: {'yes' if fast else 'NO'}")


if __name__ == "__main__":
    main()
