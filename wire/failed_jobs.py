"""The queue's failed scoring jobs, for an operator: list them, run them again, drop them.

A scoring job is failed once its retries are spent (see `wire.protocol.JOB_RETRIES`); its frames then
carry dead-letter rows, and rq keeps the job in its failed registry for `failure_ttl` (a day). Run
again, a job gets its retries back and its frames' rows are overwritten by their new results; dropped,
the job and its frame bytes are deleted (the dead-letter rows stay: they are the frames' record).
Only scoring jobs of this protocol are touched; reading the registry never cleans it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from wire.protocol import (
    DEAD_LETTERS_META,
    JOB_RETRIES,
    SERIALIZER,
    foreign_job_reason,
    frame_key,
    job_failure,
    job_frame_entries,
    make_queue,
)


@dataclass(frozen=True)
class FailedJob:
    """A failed scoring job as `lineguard jobs failed` shows it."""

    job_id: str
    failed_at: datetime | None
    lines: tuple[str, ...]
    """Lines of its frames, sorted."""
    frames: int
    error: str
    """The last line of the error that failed it."""
    dead_letters: int | None
    """Dead-letter rows its frames got; None while no worker has written them yet."""

    def to_json(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "failed_at": None if self.failed_at is None else self.failed_at.isoformat(),
            "lines": list(self.lines),
            "frames": self.frames,
            "error": self.error,
            "dead_letters": self.dead_letters,
        }


def failed_jobs(redis: Redis, queue_name: str, line: str | None = None) -> list[FailedJob]:
    """The failed scoring jobs of `queue_name` (of `line` only, when given), oldest first."""
    failed = []
    for job in _fetch(redis, queue_name, _failed_ids(redis, queue_name)):
        entries = job_frame_entries(job) or []
        lines = tuple(sorted({entry["line"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("line"), str)}))
        if line is not None and line not in lines:
            continue
        failed.append(
            FailedJob(
                job_id=job.id,
                failed_at=job.ended_at,
                lines=lines,
                frames=len(entries),
                error=job_failure(job),
                dead_letters=job.meta.get(DEAD_LETTERS_META),
            )
        )
    return failed


def retry_failed_jobs(redis: Redis, queue_name: str, job_ids: Sequence[str]) -> list[str]:
    """Put the failed scoring jobs `job_ids` back on the queue with their retries; returns those requeued."""
    registry = FailedJobRegistry(queue=make_queue(redis, queue_name))
    requeued = []
    for job in _fetch(redis, queue_name, _known(redis, queue_name, job_ids)):
        job.retries_left = JOB_RETRIES
        job.meta.pop(DEAD_LETTERS_META, None)
        job.save()
        registry.requeue(job.id)
        requeued.append(job.id)
    return requeued


def drop_failed_jobs(redis: Redis, queue_name: str, job_ids: Sequence[str]) -> list[str]:
    """Delete the failed scoring jobs `job_ids` and their frame bytes; returns those dropped."""
    registry = FailedJobRegistry(queue=make_queue(redis, queue_name))
    dropped = []
    for job in _fetch(redis, queue_name, _known(redis, queue_name, job_ids)):
        keys = [frame_key(entry["frame_id"]) for entry in job_frame_entries(job) or [] if isinstance(entry, dict) and isinstance(entry.get("frame_id"), str)]
        with redis.pipeline() as pipe:
            registry.remove(job, pipeline=pipe, delete_job=True)
            if keys:
                pipe.delete(*keys)
            pipe.execute()
        dropped.append(job.id)
    return dropped


class UnknownFailedJobError(ValueError):
    """A job id named to retry or drop is not a failed job of the queue."""


def _failed_ids(redis: Redis, queue_name: str) -> list[str]:
    return FailedJobRegistry(queue=make_queue(redis, queue_name)).get_job_ids(cleanup=False)


def _known(redis: Redis, queue_name: str, job_ids: Sequence[str]) -> list[str]:
    """`job_ids`, checked to be failed jobs of the queue (UnknownFailedJobError naming the others)."""
    failed = set(_failed_ids(redis, queue_name))
    unknown = [job_id for job_id in job_ids if job_id not in failed]
    if unknown:
        raise UnknownFailedJobError(f"not failed jobs of queue {queue_name!r}: {', '.join(unknown)} (see `lineguard jobs failed`)")
    return list(job_ids)


def _fetch(redis: Redis, queue_name: str, job_ids: Sequence[str]) -> list[Job]:
    """The scoring jobs among `job_ids` that still exist (foreign jobs left out)."""
    jobs = Job.fetch_many(list(job_ids), connection=redis, serializer=SERIALIZER)
    return [job for job in jobs if job is not None and foreign_job_reason(job) is None]
