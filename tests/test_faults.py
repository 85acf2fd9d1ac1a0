"""The line under faults, with real servers and real processes: Redis SIGKILLed and restarted empty
mid-run, the database refusing connections, an ingester SIGKILLed between claim and publish, foreign
jobs on the queue, a Redis password. In every case: N files in, N rows out, nothing failed, the
workers live on (bench/faults.py runs the same faults on real frames and prints figures)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from fault_servers import PrivateRedis, RefusingProxy, private_redis  # noqa: F401 - fixture
from line_fixtures import (
    CAMERA,
    LINE,
    QUEUE,
    make_part,
    png,
    register_checkpoint,
    row_count,
    start_lineguard,
    stop,
    stop_all,
    wait_until,
)
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from store_fixtures import db_url, postgres_run_database  # noqa: F401 - fixtures

from lineguard.cli import main
from lineguard.settings import Settings
from store.db import make_engine
from store.schema import IngestedFile, Inspection
from wire.protocol import make_queue, worker_beats

#: Worker lease in these tests: short, so recovery needs no long waits.
LEASE_S = 3


def line_on(monkeypatch: pytest.MonkeyPatch, redis_url: str, database_url: str, tmp_path: Path) -> Settings:
    """Settings of a line on the given servers, also set in the environment (for the CLI and subprocesses)."""
    settings = Settings(redis_url=redis_url, database_url=database_url, artifacts_url=str(tmp_path / "artifacts"), queue_name=QUEUE)
    for variable, value in settings.environment().items():
        monkeypatch.setenv(variable, value)
    assert main(["db", "upgrade"]) == 0
    return settings


def write_parts(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        (folder / f"part-{index:03d}.png").write_bytes(png(make_part(rng, defective=index % 5 == 0)))
    return folder


def start_worker(name: str, tmp_path: Path):
    return start_lineguard(
        "worker", "--device", "cpu", "--threads", "1", "--batch-size", "4", "--lease", str(LEASE_S), "--name", name,
        log_path=tmp_path / f"{name}.log",
    )


def workers_alive(redis_url: str) -> int:
    from lineguard.line_status import workers_alive as alive

    connection = Redis.from_url(redis_url, socket_timeout=2)
    try:
        return alive(connection, QUEUE)
    except Exception:  # noqa: BLE001 - Redis still away counts as none alive
        return 0
    finally:
        connection.close()


def assert_one_row_per_file(engine: Engine, files: int) -> None:
    with engine.connect() as connection:
        rows, origins = connection.execute(select(func.count(), func.count(Inspection.origin.distinct()))).one()
        errors = connection.scalar(select(func.count()).where(Inspection.verdict == "error"))
    assert (rows, origins, errors) == (files, files, 0)


def failed_jobs(redis_url: str) -> int:
    connection = Redis.from_url(redis_url)
    try:
        return make_queue(connection, QUEUE).failed_job_registry.get_job_count(cleanup=False)
    finally:
        connection.close()


def test_redis_sigkilled_and_restarted_empty_mid_run_loses_no_file(private_redis, small_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    files = 40
    settings = line_on(monkeypatch, private_redis.url, f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
    engine = make_engine(settings.database_url)
    try:
        register_checkpoint(engine, small_checkpoint)
        folder = write_parts(tmp_path / "incoming", files, seed=40)
        worker = start_worker("survivor", tmp_path)
        wait_until(lambda: workers_alive(private_redis.url) == 1, 120, "the worker to register")
        ingester = start_lineguard(
            "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--watch", "--no-progress",
            "--batch-size", "2", "--reconcile-interval", "1", log_path=tmp_path / "ingest.log",
        )
        wait_until(lambda: row_count(engine) >= 4, 120, "the first rows")
        assert row_count(engine) < files  # mid-run: frames are still queued

        private_redis.kill()
        # Away until the worker and the ingester have each found it away once redis-py's own quick
        # retries gave up (their outage warnings), then back: the same port, empty.
        for log in ("survivor.log", "ingest.log"):
            wait_until(lambda log=log: "Redis is unreachable" in (tmp_path / log).read_text(), 60, f"Redis to be found away ({log})")
        private_redis.start()

        wait_until(lambda: row_count(engine) == files, 240, "a row for every file")
        wait_until(lambda: workers_alive(private_redis.url) == 1, 60, "the worker to count as alive again")
        assert worker.poll() is None and ingester.poll() is None
        assert stop_all([ingester, worker]) == [0, 0]
        assert_one_row_per_file(engine, files)
        assert failed_jobs(private_redis.url) == 0
        assert "Redis is unreachable" in (tmp_path / "survivor.log").read_text()
    finally:
        engine.dispose()


def test_an_ingester_sigkilled_between_claim_and_publish_loses_nothing(private_redis, small_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    files = 10
    settings = line_on(monkeypatch, private_redis.url, f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
    engine = make_engine(settings.database_url)
    try:
        register_checkpoint(engine, small_checkpoint)
        folder = write_parts(tmp_path / "incoming", files, seed=41)
        # A batch that never fills nor falls due: every file is claimed, none is sent.
        ingester = start_lineguard(
            "ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--watch", "--no-progress",
            "--batch-size", "100", "--max-wait", "600", log_path=tmp_path / "ingest.log",
        )

        def claims() -> int:
            with engine.connect() as connection:
                return connection.scalar(select(func.count()).select_from(IngestedFile))

        wait_until(lambda: claims() == files, 120, "every file to be claimed")
        stop(ingester, signal.SIGKILL)
        redis = Redis.from_url(private_redis.url)
        assert make_queue(redis, QUEUE).count == 0  # nothing was sent
        redis.close()

        assert main(["ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress"]) == 0
        assert main(["worker", "--burst", "--device", "cpu", "--batch-size", "4"]) == 0

        assert_one_row_per_file(engine, files)
        assert failed_jobs(private_redis.url) == 0
    finally:
        engine.dispose()


def test_a_database_refusing_connections_is_waited_out(postgres_run_database, small_checkpoint, tmp_path, monkeypatch):  # noqa: F811
    """PostgreSQL behind a proxy that refuses every connection for a while, mid-run: the worker keeps
    its batch, spends no retry, and every file gets its row."""
    files = 24
    real = make_url(postgres_run_database)
    proxy = RefusingProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.accept()
    redis_server = PrivateRedis(tmp_path / "redis")
    redis_server.start()
    try:
        line_on(monkeypatch, redis_server.url, real.set(port=proxy.port).render_as_string(hide_password=False), tmp_path)
        engine = make_engine(postgres_run_database)
        try:
            with engine.begin() as connection:  # a fresh run database per test session: start clean
                connection.execute(Inspection.__table__.delete())
            register_checkpoint(engine, small_checkpoint)
            folder = write_parts(tmp_path / "incoming", files, seed=42)
            assert main(["ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress", "--batch-size", "2"]) == 0
            worker = start_worker("patient", tmp_path)
            wait_until(lambda: row_count(engine) >= 2, 120, "the first rows")

            proxy.refuse()
            refused_rows = row_count(engine)
            wait_until(lambda: "the database is unreachable" in (tmp_path / "patient.log").read_text(), 60, "the worker to notice")
            time.sleep(2 * LEASE_S + 2)  # longer than a lease: the worker must keep its jobs leased
            assert row_count(engine) == refused_rows
            proxy.accept()

            wait_until(lambda: row_count(engine) == files, 240, "a row for every file")
            assert worker.poll() is None
            assert stop(worker) == 0
            assert_one_row_per_file(engine, files)
            assert failed_jobs(redis_server.url) == 0
            assert "the database is back after" in (tmp_path / "patient.log").read_text()
        finally:
            engine.dispose()
    finally:
        proxy.refuse()
        redis_server.stop()


def test_foreign_jobs_never_run_and_the_worker_lives_on(private_redis, small_checkpoint, tmp_path, monkeypatch, capsys):  # noqa: F811
    settings = line_on(monkeypatch, private_redis.url, f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
    engine = make_engine(settings.database_url)
    try:
        register_checkpoint(engine, small_checkpoint)
        touched = [tmp_path / "os-system-ran", tmp_path / "subprocess-call-ran", tmp_path / "callback-ran"]
        redis = Redis.from_url(private_redis.url)
        queue = make_queue(redis, QUEUE)  # rq's JSON serializer, as an attacker with queue access would use
        queue.enqueue("os.system", f"touch {touched[0]}")
        queue.enqueue("subprocess.call", ["touch", str(touched[1])])
        # Our function, but with a failure callback rq would import and call.
        queue.enqueue("worker.jobs.score_frames", {"not frames": []}, on_failure="os.system")
        folder = write_parts(tmp_path / "incoming", 4, seed=43)
        assert main(["ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress"]) == 0

        assert main(["worker", "--burst", "--device", "cpu", "--batch-size", "4"]) == 0

        assert not any(path.exists() for path in touched)
        assert_one_row_per_file(engine, 4)
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["refused_jobs"] == {"os.system": 1, "subprocess.call": 1, "worker.jobs.score_frames": 1}
        assert status["queue"]["queued_jobs"] == 0 and status["queue"]["failed_jobs"] == 0
        assert main(["status"]) == 0
        assert "refused foreign jobs (never run): os.system: 1" in capsys.readouterr().out
        redis.close()
    finally:
        engine.dispose()


def test_a_redis_password_works_end_to_end_and_is_never_shown(small_checkpoint, tmp_path, monkeypatch, capsys):
    password = "s3cret-pw-for-test"
    server = PrivateRedis(tmp_path / "redis", password=password)
    server.start()
    try:
        settings = line_on(monkeypatch, server.url, f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
        engine = make_engine(settings.database_url)
        try:
            register_checkpoint(engine, small_checkpoint)
            folder = write_parts(tmp_path / "incoming", 3, seed=44)
            assert main(["ingest", "folder", str(folder), "--line", LINE, "--camera", CAMERA, "--no-progress"]) == 0
            assert main(["worker", "--burst", "--device", "cpu"]) == 0
            assert_one_row_per_file(engine, 3)
        finally:
            engine.dispose()
        capsys.readouterr()
        assert main(["status"]) == 0 and "3 frames published" in capsys.readouterr().out

        monkeypatch.setenv("REDIS_URL", f"redis://:wrong-{password}@127.0.0.1:{server.port}/0")
        code = main(["status"])
        err = capsys.readouterr().err
        assert code == 2 and "cannot reach Redis" in err and "Traceback" not in err
        assert password not in err and "***" in err
    finally:
        server.stop()


def test_stream_frames_lost_with_redis_are_counted_per_camera(private_redis, tmp_path, monkeypatch, capsys):  # noqa: F811
    import cv2

    line_on(monkeypatch, private_redis.url, f"sqlite:///{tmp_path / 'line.db'}", tmp_path)
    video = tmp_path / "belt.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for index in range(12):
        writer.write(np.full((64, 64, 3), index * 10, dtype=np.uint8))
    writer.release()
    ingest = ["ingest", "video", str(video), "--line", LINE, "--no-progress"]
    assert main([*ingest, "--camera", "cam-a"]) == 0
    assert main([*ingest, "--camera", "cam-b"]) == 0
    private_redis.kill()
    private_redis.start()  # forgot all 24 queued frames

    assert main([*ingest, "--camera", "cam-a"]) == 0  # its first pass finds cam-a's 12 lost
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["lines"][LINE]["lost_by_camera"] == {"cam-a": 12}
    assert status["lost"] == 12 and status["lines"][LINE]["pending"] == 12  # the second run's frames
    assert main(["status"]) == 0
    assert "12 lost with Redis (cam-a: 12)" in capsys.readouterr().out
