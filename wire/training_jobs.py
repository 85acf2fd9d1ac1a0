"""Training jobs in Redis, in one place: what the dashboard and `models retrain --queue` queue, and
what `lineguard worker --train` takes, runs and reports.

- ``lineguard:training:queue``: a list of job ids waiting, taken oldest first.
- ``lineguard:training:jobs``: a sorted set of every job id by the time it was queued.
- ``lineguard:training:job:<id>``: a hash of the job's request (line, data, extra, steps, by) and its
  state: ``queued``, ``running`` (with ``phase`` and ``heartbeat_at``, renewed while it trains),
  ``done`` (with ``candidate``) or ``failed`` (with ``error``). A running job whose heartbeat is
  older than `STALE_AFTER_S` is read as ``abandoned``: its training worker died.

Every field is a string; JSON only (lists), never pickle; a hash that does not decode is reported
as such, never trusted.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

from redis import Redis

QUEUE_KEY = "lineguard:training:queue"
JOBS_KEY = "lineguard:training:jobs"
JOB_KEY_PREFIX = "lineguard:training:job:"
#: Seconds between a training worker's heartbeats, and after which a silent running job is abandoned.
HEARTBEAT_S = 5.0
STALE_AFTER_S = 6 * HEARTBEAT_S
#: Job states as written; `ABANDONED` is only ever read (a running job without heartbeat).
QUEUED, RUNNING, DONE, FAILED, ABANDONED = "queued", "running", "done", "failed", "abandoned"


class InvalidTrainingJobError(ValueError):
    """A training job's hash in Redis is not one this module wrote."""


@dataclass(frozen=True)
class TrainingRequest:
    """What to retrain: a line, with optional data folder, extra folders and step budget."""

    line: str
    requested_by: str
    data: str | None = None
    extra: list[str] = field(default_factory=list)
    steps: int | None = None


@dataclass(frozen=True)
class TrainingJob:
    """A training job as last reported."""

    id: str
    request: TrainingRequest
    state: str
    queued_at: float
    phase: str = ""
    worker: str = ""
    heartbeat_at: float | None = None
    candidate: str = ""
    error: str = ""


def queue_training(redis: Redis, request: TrainingRequest) -> str:
    """Queue `request`; returns the job's id."""
    if not request.line or not request.requested_by.strip():
        raise ValueError("a training job needs a line and who asked for it")
    job_id = uuid.uuid4().hex[:16]
    now = time.time()
    fields = {
        "line": request.line, "requested_by": request.requested_by, "data": request.data or "",
        "extra": json.dumps(request.extra), "steps": "" if request.steps is None else str(request.steps),
        "state": QUEUED, "queued_at": repr(now),
    }
    pipe = redis.pipeline()
    pipe.hset(JOB_KEY_PREFIX + job_id, mapping=fields)
    pipe.zadd(JOBS_KEY, {job_id: now})
    pipe.rpush(QUEUE_KEY, job_id)
    pipe.execute()
    return job_id


def take_training(redis: Redis, worker: str, timeout_s: float) -> TrainingJob | None:
    """The oldest waiting job, marked running by `worker`; None when none came within `timeout_s`."""
    taken = redis.blpop([QUEUE_KEY], timeout=timeout_s)
    if taken is None:
        return None
    job_id = taken[1].decode()
    report_training(redis, job_id, state=RUNNING, worker=worker, phase="starting")
    return read_training(redis, job_id)


def report_training(redis: Redis, job_id: str, **fields: str) -> None:
    """Update a job's state, phase, candidate or error; every report renews its heartbeat."""
    redis.hset(JOB_KEY_PREFIX + job_id, mapping={**fields, "heartbeat_at": repr(time.time())})


def renew_heartbeat(redis: Redis, job_id: str) -> None:
    """Say that the job's training worker is alive, without changing what it reports."""
    redis.hset(JOB_KEY_PREFIX + job_id, "heartbeat_at", repr(time.time()))


def read_training(redis: Redis, job_id: str) -> TrainingJob:
    """The job `job_id` as last reported (a silent running job reads as abandoned)."""
    raw = {key.decode(): value.decode() for key, value in redis.hgetall(JOB_KEY_PREFIX + job_id).items()}
    try:
        request = TrainingRequest(
            line=raw["line"], requested_by=raw["requested_by"], data=raw["data"] or None,
            extra=[str(item) for item in json.loads(raw["extra"])], steps=int(raw["steps"]) if raw["steps"] else None,
        )
        heartbeat = float(raw["heartbeat_at"]) if raw.get("heartbeat_at") else None
        state = raw["state"]
        if state == RUNNING and (heartbeat is None or time.time() - heartbeat > STALE_AFTER_S):
            state = ABANDONED
        return TrainingJob(
            id=job_id, request=request, state=state, queued_at=float(raw["queued_at"]), phase=raw.get("phase", ""),
            worker=raw.get("worker", ""), heartbeat_at=heartbeat, candidate=raw.get("candidate", ""), error=raw.get("error", ""),
        )
    except (KeyError, ValueError, TypeError) as error:
        raise InvalidTrainingJobError(f"training job {job_id} in Redis is not readable: {error!r}") from error


def training_jobs(redis: Redis, line: str | None = None, limit: int = 20) -> list[TrainingJob]:
    """The latest jobs (of `line`, when given), newest first; unreadable ones are left out."""
    jobs = []
    for job_id in redis.zrevrange(JOBS_KEY, 0, -1):
        try:
            job = read_training(redis, job_id.decode())
        except InvalidTrainingJobError:
            continue
        if line is None or job.request.line == line:
            jobs.append(job)
        if len(jobs) >= limit:
            break
    return jobs

