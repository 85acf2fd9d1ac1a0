"""Worker processes: two share the load; a SIGKILLed one loses nothing; they stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from ci_requirements import bound_by_file_modes
from line_fixtures import (
    QUEUE,
    REPO_ROOT,
    line_redis,  # noqa: F401 - fixture
    line_settings,  # noqa: F401 - fixture
    make_frame,
    make_part,
    png,
    publish,
    register_checkpoint,
    row_count,
    sqlite_line_settings,  # noqa: F401 - fixture
    start_lineguard,
    stop,
    stop_all,
    wait_until,
)
from rq import SimpleWorker
from rq.job import Job
from rq.job_lifecycle import record_job_failure
from rq.registry import StartedJobRegistry
from sqlalchemy import Engine
from store_fixtures import db_url, postgres_run_database  # noqa: F401 - fixtures

from ingest.frames import Frame
from wire.protocol import DEAD_LETTERS_META, FRAME_KEY_PREFIX, SERIALIZER, make_queue
from lineguard.cli import main
from store.db import make_engine
from store.records import inspections_frame
from worker.leased import LeasedWorker, LoopState
from worker.process import WorkerOptions, run_worker

LEASE_S = 3
#: Longest wait for a worker process to register: a bound for a worker that never starts, not a speed
#: (two workers at nice 15 on a 2-core machine at load 7 took over 60 s to import torch and start).
WORKER_START_S = 300


def good_parts_queued(redis, seed: int, count: int, batch_size: int) -> list[Frame]:  # noqa: ANN001 - the test Redis
    """`count` good parts published on the test queue in jobs of `batch_size` frames."""
    rng = np.random.default_rng(seed)
    frames = [make_frame(png(make_part(rng, defective=False)), f"part-{i}") for i in range(count)]
    publish(redis, frames, batch_size=batch_size)
    return frames


@pytest.fixture
def scoring_store(sqlite_line_settings, small_checkpoint) -> Iterator[Engine]:  # noqa: F811
    """The SQLite store of sqlite_line_settings, upgraded, with the small model active on the test line."""
    engine = make_engine(sqlite_line_settings.database_url)
    assert main(["db", "upgrade"]) == 0
    register_checkpoint(engine, small_checkpoint)
    yield engine
    engine.dispose()


def test_two_workers_share_the_load_and_stop_cleanly(line_redis, line_settings, small_checkpoint, tmp_path):  # noqa: F811
    engine = make_engine(line_settings.database_url)
    workers = []
    try:
        redis = line_redis
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        workers = [
            start_lineguard("worker", "--device", "cpu", "--threads", "1", "--batch-size", "4", "--name", name, log_path=tmp_path / f"{name}.log")
            for name in ("worker-a", "worker-b")
        ]
        queue = make_queue(redis, QUEUE)
        wait_until(lambda: SimpleWorker.count(queue=queue) == 2, WORKER_START_S, "both workers to register")
        rng = np.random.default_rng(20)
        frames = [make_frame(png(make_part(rng, defective=i % 4 == 0)), f"part-{i}") for i in range(24)]
        publish(redis, frames, batch_size=2)

        wait_until(lambda: row_count(engine) == len(frames), 90, "a row for every frame")

        assert stop_all(workers) == [0, 0]
        table = inspections_frame(engine)
        assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
        assert set(table["worker"]) == {"worker-a", "worker-b"}
        assert (table["verdict"] != "error").all()
        assert queue.failed_job_registry.count == 0 and queue.count == 0
        assert not redis.keys(FRAME_KEY_PREFIX + "*")
    finally:
        for worker in workers:  # a worker left running would take the next tests' jobs
            stop(worker, signal.SIGKILL)
        engine.dispose()


def test_a_sigkilled_worker_loses_nothing_and_its_batch_is_retried_once(line_redis, line_settings, small_checkpoint, tmp_path):  # noqa: F811
    engine = make_engine(line_settings.database_url)
    victim = None
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        victim = start_lineguard(
            "worker", "--device", "cpu", "--batch-size", "64", "--lease", str(LEASE_S), "--name", "victim",
            log_path=tmp_path / "victim.log",
        )
        queue = make_queue(line_redis, QUEUE)
        wait_until(lambda: SimpleWorker.count(queue=queue) == 1, WORKER_START_S, "the worker to register")
        rng = np.random.default_rng(21)
        frames = [make_frame(png(make_part(rng, defective=i % 5 == 0)), f"part-{i}") for i in range(48)]
        publish(line_redis, frames, batch_size=len(frames))
        started = StartedJobRegistry(queue=queue)
        # Kill it as soon as it has taken the job: it is loading the model or scoring, not done.
        wait_until(lambda: started.get_job_ids(cleanup=False) != [], 30, "the worker to take the job", poll_s=0.01)
        stop(victim, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        assert row_count(engine) == 0
        assert queue.count == 0  # the job is neither waiting nor done: it is with the dead worker

        # Any worker that cleans the registries after the lease has run out takes the job back.
        wait_until(lambda: started.get_expired_job_ids() != [], LEASE_S + 5, "the dead worker's lease to run out")
        rescued = run_worker(
            line_settings.redis_url, line_settings.database_url, line_settings.artifacts_url, QUEUE,
            WorkerOptions(device="cpu", burst=True, lease_s=LEASE_S, name="rescuer"),
        )

        assert rescued
        table = inspections_frame(engine)
        # The job came back through the expired lease, not through rq's far longer abandoned-job timeout:
        # the rescuer started it soon after the kill. (Its start, not its end: scoring 48 frames takes
        # as long as this CPU needs, which is no part of the promise.)
        rescue_started = table["started_at"].min().to_pydatetime()
        assert (rescue_started.replace(tzinfo=rescue_started.tzinfo or UTC) - killed_at).total_seconds() < 3 * LEASE_S + 30
        assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
        assert set(table["worker"]) == {"rescuer"} and (table["verdict"] != "error").all()
        assert queue.failed_job_registry.count == 0 and started.get_job_ids(cleanup=False) == []
        assert not line_redis.keys(FRAME_KEY_PREFIX + "*")
    finally:
        if victim is not None:
            stop(victim, signal.SIGKILL)
        engine.dispose()


def test_a_worker_behind_scores_waiting_jobs_together_up_to_its_batch_size(line_redis, sqlite_line_settings, small_checkpoint):  # noqa: F811
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        rng = np.random.default_rng(22)
        frames = [make_frame(png(make_part(rng, defective=i == 3)), f"part-{i}") for i in range(12)]
        publish(line_redis, frames, batch_size=2)  # six waiting jobs of two frames

        run_worker(
            sqlite_line_settings.redis_url, sqlite_line_settings.database_url, sqlite_line_settings.artifacts_url, QUEUE,
            WorkerOptions(device="cpu", burst=True, batch_size=8, name="behind"),
        )

        table = inspections_frame(engine)
        # Rows scored in one batch share its start time: the first job and three more, then the last two.
        assert sorted(table.groupby("started_at").size()) == [4, 8]
        assert len(table) == 12 and (table["verdict"] != "error").all()
        queue = make_queue(line_redis, QUEUE)
        assert queue.count == 0 and queue.failed_job_registry.count == 0
        assert StartedJobRegistry(queue=queue).get_job_ids(cleanup=False) == []
    finally:
        engine.dispose()


def test_a_job_that_fails_is_retried_then_kept_as_failed(line_redis, sqlite_line_settings):  # noqa: F811
    """A job the worker cannot do (here: a malformed payload) is retried, then failed; the worker goes on."""
    assert main(["db", "upgrade"]) == 0
    queue = make_queue(line_redis, QUEUE)
    queue.enqueue("worker.jobs.score_frames", {"not frames": []}, result_ttl=0)
    run_worker(
        sqlite_line_settings.redis_url, sqlite_line_settings.database_url, sqlite_line_settings.artifacts_url, QUEUE,
        WorkerOptions(device="cpu", burst=True, max_retries=2, name="retrier"),
    )
    failed = queue.failed_job_registry.get_job_ids()
    assert len(failed) == 1
    job = queue.fetch_job(failed[0])
    assert job.retries_left == 0 and "frames" in job.latest_result().exc_string


def test_a_bad_device_flag_is_one_clear_line(sqlite_line_settings, capsys):  # noqa: F811
    code = main(["worker", "--device", "cuda:99", "--burst"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cuda:99" in err and "Traceback" not in err


def test_jobs_taken_by_a_worker_that_died_before_starting_them_are_retried(line_redis, sqlite_line_settings, small_checkpoint):  # noqa: F811
    """The take-to-start gap: a worker killed after taking a job off the queue (into rq's
    intermediate queue) and before starting it. The job comes back to the queue, not charged a retry
    (it never ran); rq's cleanup used to fail it."""
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        frames = good_parts_queued(line_redis, seed=23, count=4, batch_size=2)
        queue = make_queue(line_redis, QUEUE)
        # What a worker's dequeue does, then it dies: both jobs sit in the intermediate queue, unstarted.
        taken = [line_redis.lmove(queue.key, queue.intermediate_queue_key).decode() for _ in range(2)]
        assert queue.count == 0
        # rq takes a job for stuck once it saw it there over a minute ago; these were seen two minutes
        # ago. They are on their last attempt: never started, they must come back without spending it.
        for job_id in taken:
            line_redis.set(queue.intermediate_queue.get_first_seen_key(job_id), time.time() - 120)
            line_redis.hset(f"rq:job:{job_id}", "retries_left", 0)

        run_worker(
            sqlite_line_settings.redis_url, sqlite_line_settings.database_url, sqlite_line_settings.artifacts_url, QUEUE,
            WorkerOptions(device="cpu", burst=True, name="cleaner"),
        )

        table = inspections_frame(engine)
        assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
        assert (table["verdict"] == "good").all()
        assert queue.failed_job_registry.count == 0 and line_redis.llen(queue.intermediate_queue_key) == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("moment", ["dequeue", "taking"])
def test_a_stop_while_jobs_are_taken_and_not_yet_started_waits_for_them(line_redis, sqlite_line_settings, scoring_store, monkeypatch, moment):  # noqa: F811
    """SIGTERM in the take-to-start gap: as the dequeue reads the job it has just moved into rq's
    intermediate queue, or while the worker takes waiting jobs to score with it (LoopState.TAKING).
    The worker scores the jobs it took, then stops. It used to stop at once in both places (not BUSY
    yet; the stop raised inside the dequeue) and leave the jobs unstarted in the intermediate queue."""
    frames = good_parts_queued(line_redis, seed=28, count=6, batch_size=2)
    queue = make_queue(line_redis, QUEUE)
    first_job = queue.job_ids[0]
    signalled = []

    def terminate_once() -> None:
        if not signalled:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    if moment == "dequeue":
        fetch = Job.fetch.__func__

        def fetched_with_a_stop(cls, *args, **kwargs):  # noqa: ANN001, ANN202 - the job is in the intermediate queue by now
            terminate_once()
            return fetch(cls, *args, **kwargs)

        monkeypatch.setattr(Job, "fetch", classmethod(fetched_with_a_stop))
    else:
        take_waiting_jobs = LeasedWorker._take_waiting_jobs

        def taken_with_a_stop(worker, job, job_queue):  # noqa: ANN001, ANN202
            assert worker.loop_state == LoopState.TAKING
            terminate_once()
            return take_waiting_jobs(worker, job, job_queue)

        monkeypatch.setattr(LeasedWorker, "_take_waiting_jobs", taken_with_a_stop)
    run_worker(
        sqlite_line_settings.redis_url, sqlite_line_settings.database_url, sqlite_line_settings.artifacts_url, QUEUE,
        WorkerOptions(device="cpu", burst=True, batch_size=2, name="taker"),
    )

    assert signalled
    table = inspections_frame(scoring_store)
    assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames[:2])  # then it stopped, in burst mode
    assert (table["verdict"] == "good").all()
    assert first_job not in queue.job_ids and queue.count == 2
    assert line_redis.llen(queue.intermediate_queue_key) == 0 and queue.failed_job_registry.count == 0


def test_a_job_failed_for_good_elsewhere_gets_its_dead_letters_from_the_next_workers_sweep(line_redis, sqlite_line_settings, scoring_store):  # noqa: F811
    """A job rq's cleanup failed for good (its worker died on every attempt: no worker of ours saw it
    fail) gets a dead-letter row for each frame from any worker's maintenance pass, once, so its
    source's ledger settles the frames instead of publishing them again."""
    frames = good_parts_queued(line_redis, seed=29, count=2, batch_size=2)
    queue = make_queue(line_redis, QUEUE)
    job = queue.fetch_job(queue.job_ids[0])
    with line_redis.pipeline() as pipe:  # what rq's cleanup of an abandoned job on its last attempt does
        queue.remove(job, pipeline=pipe)
        record_job_failure(job, "Moved to FailedJobRegistry, due to AbandonedJobError, at 2026-12-04", pipe)
        pipe.execute()
    options = WorkerOptions(device="cpu", burst=True, name="sweeper")
    settings = sqlite_line_settings

    run_worker(settings.redis_url, settings.database_url, settings.artifacts_url, QUEUE, options)
    run_worker(settings.redis_url, settings.database_url, settings.artifacts_url, QUEUE, replace(options, name="sweeper-2"))

    table = inspections_frame(scoring_store)
    assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
    assert (table["verdict"] == "error").all()
    assert all(
        error == "dead letter: scoring failed on every attempt; the last: Moved to FailedJobRegistry, due to AbandonedJobError, at 2026-12-04"
        for error in table["error"]
    ), table["error"].tolist()
    assert queue.fetch_job(job.id).meta[DEAD_LETTERS_META] == 2  # marked: the second sweep wrote none
    assert queue.failed_job_registry.get_job_ids() == [job.id]  # kept for `lineguard jobs`


def test_a_poison_frame_gets_one_dead_letter_row_after_its_attempts_and_the_rest_are_scored(line_redis, sqlite_line_settings, small_checkpoint, tmp_path):  # noqa: F811
    """Writing a flagged frame's pictures fails every time (the artifact folder cannot be made, as on a
    full disk): its job is retried, then its frames are scored one by one; the good ones get their
    rows, the flagged one a final error row saying why, and the job stays failed for `lineguard jobs`."""
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        blocker = tmp_path / "not-a-folder"
        blocker.write_bytes(b"")
        rng = np.random.default_rng(24)
        frames = [make_frame(png(make_part(rng, defective=i == 1)), f"part-{i}") for i in range(3)]
        publish(line_redis, frames, batch_size=3)

        run_worker(
            sqlite_line_settings.redis_url, sqlite_line_settings.database_url, str(blocker / "artifacts"), QUEUE,
            WorkerOptions(device="cpu", burst=True, good_sample_every=0, name="poisoned"),
        )

        table = inspections_frame(engine).set_index("frame_id")
        assert sorted(table.index) == sorted(frame.frame_id for frame in frames)
        poison = table.loc[frames[1].frame_id]
        assert poison["verdict"] == "error" and poison["error"].startswith("dead letter: scoring failed on every attempt")
        assert "NotADirectoryError" in poison["error"] or "not-a-folder" in poison["error"], poison["error"]
        assert list(table.loc[[frames[0].frame_id, frames[2].frame_id], "verdict"]) == ["good", "good"]
        queue = make_queue(line_redis, QUEUE)
        assert queue.count == 0 and queue.failed_job_registry.count == 1
    finally:
        engine.dispose()


def test_a_checkpoint_that_fails_to_read_is_waited_out_not_recorded_as_errors(line_redis, sqlite_line_settings, small_checkpoint, tmp_path):  # noqa: F811
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        checkpoint = tmp_path / "model.pt"
        checkpoint.write_bytes(small_checkpoint.read_bytes())
        register_checkpoint(engine, checkpoint)
        checkpoint.chmod(0)  # its read fails (PermissionError, an OSError) until the mode comes back
        frames = good_parts_queued(line_redis, seed=25, count=2, batch_size=2)
        log = tmp_path / "worker.log"
        with log.open("wb") as output:
            worker = subprocess.Popen(
                bound_by_file_modes([sys.executable, "-m", "lineguard.cli", "worker", "--device", "cpu", "--burst", "--name", "patient"]),
                stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )
        try:
            wait_until(lambda: "the model's checkpoint is unreachable" in log.read_text(), WORKER_START_S, "the worker to wait for the checkpoint")
            assert row_count(engine) == 0
            checkpoint.chmod(0o644)
            assert worker.wait(timeout=60) == 0
        finally:
            stop(worker, signal.SIGKILL)
        table = inspections_frame(engine)
        assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
        assert (table["verdict"] == "good").all(), table["error"].tolist()
        assert "the model's checkpoint is back" in log.read_text()
    finally:
        engine.dispose()


def test_a_batch_past_its_deadline_is_given_back_and_the_worker_restarts(line_redis, sqlite_line_settings, small_checkpoint, tmp_path):  # noqa: F811
    """A deadline no batch can meet: the watchdog fails the job with the reason and the process
    starts afresh; on the job's last attempt its frames end with one row each (scored, or a dead letter)."""
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        frames = good_parts_queued(line_redis, seed=26, count=2, batch_size=2)
        queue = make_queue(line_redis, QUEUE)
        line_redis.hset(f"rq:job:{queue.job_ids[0]}", "retries_left", 0)  # its last attempt

        log = tmp_path / "worker.log"
        worker = start_lineguard("worker", "--device", "cpu", "--burst", "--batch-deadline", "0.01", "--name", "hasty", log_path=log)
        try:
            assert worker.wait(timeout=120) == 0
        finally:
            stop(worker, signal.SIGKILL)

        text = log.read_text()
        assert "batch deadline of 0.01 s passed with 1 jobs unfinished; worker restarted" in text, text[-2000:]
        assert text.count("worker hasty on queue") == 2, text[-2000:]  # the same command, started again
        table = inspections_frame(engine)
        assert sorted(table["frame_id"]) == sorted(frame.frame_id for frame in frames)
        failed = queue.failed_job_registry.get_job_ids()
        assert len(failed) == 1 and "batch deadline" in queue.fetch_job(failed[0]).latest_result().exc_string
    finally:
        engine.dispose()


def test_a_stopping_worker_does_not_wait_out_its_command_listener(line_redis):  # noqa: F811
    """At a stop rq unsubscribes the worker's command listener, then joins its thread. A listener that
    took the unsubscribe's answer first waits for a new subscription for its whole poll: with rq's 60 s,
    a SIGTERMed idle worker took up to a minute to exit."""
    worker = LeasedWorker([make_queue(line_redis, QUEUE)], name="listener-test", connection=line_redis, serializer=SERIALIZER)
    worker.subscribe()
    worker.pubsub.unsubscribe()
    wait_until(lambda: not worker.pubsub.subscribed, 10, "the listener to take the unsubscribe's answer")
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(20)
    assert not stopping.is_alive(), "the worker's stop waited on its command listener"
