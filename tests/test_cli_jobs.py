"""`lineguard jobs`: failed jobs listed, run again with their retries, dropped; -v shows tracebacks."""

from __future__ import annotations

import json

import numpy as np

from line_fixtures import QUEUE, line_redis, make_frame, make_part, png, publish, sqlite_line_settings  # noqa: F401 - fixtures
from rq.job_lifecycle import record_job_failure

from lineguard.cli import main
from wire.protocol import JOB_RETRIES, make_queue
from worker.process import WorkerOptions, run_worker


def fail_a_job(redis, settings) -> str:
    """A scoring job whose payload no worker can read, failed by a real worker."""
    queue = make_queue(redis, QUEUE)
    job = queue.enqueue("worker.jobs.score_frames", {"not frames": []}, result_ttl=0)
    run_worker(settings.redis_url, settings.database_url, settings.artifacts_url, QUEUE, WorkerOptions(device="cpu", burst=True, max_retries=0, name="failer"))
    assert queue.failed_job_registry.get_job_ids() == [job.id]
    return job.id


def test_failed_jobs_are_listed_retried_and_dropped(line_redis, sqlite_line_settings, capsys):  # noqa: F811
    job_id = fail_a_job(line_redis, sqlite_line_settings)
    assert main(["jobs", "failed", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["job_id"] == job_id and listed["frames"] == 0 and listed["dead_letters"] == 0
    assert listed["error"].startswith("wire.protocol.InvalidPayloadError: job payload must be")

    assert main(["jobs", "retry", job_id]) == 0
    queue = make_queue(line_redis, QUEUE)
    assert queue.job_ids == [job_id] and queue.failed_job_registry.count == 0
    assert queue.fetch_job(job_id).retries_left == JOB_RETRIES

    line_redis.delete(queue.key)
    job_id = fail_a_job(line_redis, sqlite_line_settings)
    assert main(["jobs", "drop", "--all"]) == 0
    assert "1 failed jobs dropped" in capsys.readouterr().out
    assert queue.failed_job_registry.count == 0 and queue.fetch_job(job_id) is None


def test_failed_jobs_of_one_line_are_listed_and_retried_apart(line_redis, sqlite_line_settings, capsys):  # noqa: F811
    """Jobs of two lines, failed for good (as rq's cleanup fails an abandoned job on its last attempt):
    --line lists and retries only the jobs with frames of that line."""
    rng = np.random.default_rng(30)
    for line in ("line-a", "line-b"):
        publish(line_redis, [make_frame(png(make_part(rng, defective=False)), f"{line}-{i}", line=line) for i in range(2)], batch_size=2)
    queue = make_queue(line_redis, QUEUE)
    jobs = [queue.fetch_job(job_id) for job_id in queue.job_ids]
    with line_redis.pipeline() as pipe:
        for job in jobs:
            queue.remove(job, pipeline=pipe)
            record_job_failure(job, "Moved to FailedJobRegistry, due to AbandonedJobError", pipe)
        pipe.execute()

    assert main(["jobs", "failed", "--line", "line-b", "--json"]) == 0
    (listed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["job_id"] == jobs[1].id and listed["lines"] == ["line-b"] and listed["frames"] == 2
    assert listed["error"] == "Moved to FailedJobRegistry, due to AbandonedJobError"

    assert main(["jobs", "retry", "--all", "--line", "line-b"]) == 0
    assert "1 failed jobs put back on the queue" in capsys.readouterr().out
    assert queue.job_ids == [jobs[1].id] and queue.failed_job_registry.get_job_ids() == [jobs[0].id]
    assert main(["jobs", "drop", "--line", "line-a", jobs[0].id]) == 2  # --line only chooses with --all
    assert "--line chooses jobs with --all" in capsys.readouterr().err


def test_an_unknown_job_is_one_line_and_its_traceback_only_with_v(line_redis, sqlite_line_settings, capsys):  # noqa: F811
    assert main(["jobs", "retry", "no-such-job"]) == 2
    err = capsys.readouterr().err
    assert "not failed jobs of queue" in err and "no-such-job" in err and "Traceback" not in err
    assert main(["-v", "jobs", "drop", "no-such-job"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "UnknownFailedJobError" in err
