"""The state of a running line in one object: queue, workers and per-line counts.

Gathered from Redis (queue depth, frames waiting in jobs, drops, worker heartbeats) and the store
(rows per line). Reading the queue's counters also runs rq's cleanup of the started-job registry,
so asking for the status hands jobs of dead workers back to the queue as a side effect.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from rq import SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import Engine

from ingest.publisher import make_queue, queue_counters
from store.records import line_counts, skipped_file_counts, status_summary

#: A worker counts as alive when its last heartbeat is this recent (workers beat at least once a lease).
WORKER_ALIVE_WITHIN_S = 60
#: Frames per second are averaged over this many recent seconds.
RATE_WINDOW_S = 60


def line_status(redis: Redis, engine: Engine, queue_name: str, now: datetime | None = None) -> dict[str, Any]:
    """The line's state as a JSON-safe dict.

    ``{"queue": {"name", "queued_jobs", "started_jobs", "failed_jobs"}, "workers_alive": int,
    "published": int, "dropped": int, "lines": {line: {"frames", "flagged", "errors", "pending",
    "dropped", "published", "defect_rate", "frames_per_s", "active_model", "last_finished_at",
    "skipped_files": {camera: {reason: count}}}}}``.
    ``pending`` counts frames in jobs waiting or running; ``defect_rate`` is flagged per scored
    frame (None before the first); ``frames_per_s`` covers the last RATE_WINDOW_S seconds;
    ``skipped_files`` counts the files folder sources did not take, each once per run (see ingest.file_checks).
    """
    now = now or datetime.now(UTC)
    counters = queue_counters(redis, queue_name)
    pending = pending_frames_by_line(redis, queue_name)
    recent = Counter()
    for counts in line_counts(engine, since=now - timedelta(seconds=RATE_WINDOW_S)):
        recent[counts.line] += counts.frames
    published, dropped = Counter(), Counter()
    for stream in counters["streams"]:
        published[stream["line"]] += stream["published"]
        dropped[stream["line"]] += stream["dropped"]
    stored = {status.line: status for status in status_summary(engine)}
    skipped: dict[str, dict[str, dict[str, int]]] = {}
    for (line, camera), reasons in skipped_file_counts(engine).items():
        skipped.setdefault(line, {})[camera] = reasons

    lines = {}
    for line in sorted(stored.keys() | published.keys() | dropped.keys() | pending.keys() | skipped.keys()):
        status = stored.get(line)
        frames, flagged, errors = (status.frames, status.flagged, status.errors) if status else (0, 0, 0)
        scored = frames - errors
        lines[line] = {
            "frames": frames,
            "flagged": flagged,
            "errors": errors,
            "pending": pending.get(line, 0),
            "dropped": dropped.get(line, 0),
            "published": published.get(line, 0),
            "defect_rate": flagged / scored if scored else None,
            "frames_per_s": recent.get(line, 0) / RATE_WINDOW_S,
            "active_model": status.active_model if status else None,
            "last_finished_at": status.last_finished_at.isoformat() if status and status.last_finished_at else None,
            "skipped_files": skipped.get(line, {}),
        }
    return {
        "queue": {
            "name": queue_name,
            "queued_jobs": counters["queued_jobs"],
            "started_jobs": counters["started_jobs"],
            "failed_jobs": counters["failed_jobs"],
        },
        "workers_alive": workers_alive(redis, queue_name, now),
        "published": counters["published"],
        "dropped": counters["dropped"],
        "lines": lines,
    }


def pending_frames_by_line(redis: Redis, queue_name: str) -> Counter[str]:
    """Frames per line in the queue's waiting and running jobs (read from the jobs' JSON payloads)."""
    queue = make_queue(redis, queue_name)
    started = StartedJobRegistry(queue=queue)
    job_ids = queue.get_job_ids() + started.get_job_ids(cleanup=False)
    pending: Counter[str] = Counter()
    for job in Job.fetch_many(job_ids, connection=redis, serializer=JSONSerializer):
        if job is None:
            continue  # finished between listing and fetching
        payload = job.args[0] if job.args else None
        frames = payload.get("frames") if isinstance(payload, dict) else None
        for frame in frames if isinstance(frames, list) else []:
            if isinstance(frame, dict) and isinstance(frame.get("line"), str):
                pending[frame["line"]] += 1
    return pending


def workers_alive(redis: Redis, queue_name: str, now: datetime | None = None) -> int:
    """Workers of the queue whose last heartbeat is at most WORKER_ALIVE_WITHIN_S old."""
    now = now or datetime.now(UTC)
    workers = SimpleWorker.all(queue=make_queue(redis, queue_name), serializer=JSONSerializer)
    oldest = now - timedelta(seconds=WORKER_ALIVE_WITHIN_S)
    return sum(1 for worker in workers if worker.last_heartbeat is not None and worker.last_heartbeat >= oldest)


def format_status(status: dict[str, Any]) -> str:
    """`line_status` as a few lines of text for a terminal."""
    queue = status["queue"]
    text = [
        (
            f"queue {queue['name']!r}: {queue['queued_jobs']} jobs waiting, {queue['started_jobs']} running, "
            f"{queue['failed_jobs']} failed; {status['workers_alive']} workers alive; "
            f"{status['published']} frames published, {status['dropped']} dropped"
        )
    ]
    for line, counts in status["lines"].items():
        text.append(f"  {format_line(line, counts)}")
        for camera, reasons in counts["skipped_files"].items():
            text.append(f"    {line}/{camera}: files skipped: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items()))
    if not status["lines"]:
        text.append("  no frames yet")
    return "\n".join(text)


def format_line(line: str, counts: dict[str, Any]) -> str:
    """One line of `line_status`'s "lines" as text."""
    rate = counts["defect_rate"]
    return (
        f"{line}: {counts['frames']} frames, {counts['flagged']} flagged"
        f" ({'-' if rate is None else f'{100 * rate:.1f}%'} defect rate), {counts['errors']} errors,"
        f" {counts['pending']} pending, {counts['dropped']} dropped, {counts['frames_per_s']:.2f} frames/s,"
        f" model {counts['active_model'] or 'none'}"
    )
