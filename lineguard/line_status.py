"""The state of a running line in one object: queue, workers and per-line counts.

Gathered from Redis (queue depth, frames waiting in jobs, drops, refused jobs, worker heartbeats,
all read through `wire.protocol`, which never writes) and the store (rows and lost frames per line
and camera). Asking for the status changes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import Engine

from store.alarms import open_alarms
from store.source_states import source_states
from store.records import line_counts, lost_frame_counts, outbox_depth, skipped_file_counts, status_summary
from wire.protocol import pending_frames_by_line, queue_counters, worker_beats

#: Frames per second are averaged over this many recent seconds.
RATE_WINDOW_S = 60


def line_status(
    redis: Redis, engine: Engine, queue_name: str, now: datetime | None = None, outbox_sinks: Sequence[str] = ()
) -> dict[str, Any]:
    """The line's state as a JSON-safe dict.

    ``{"queue": {"name", "queued_jobs", "started_jobs", "failed_jobs"}, "workers_alive": int,
    "published": int, "dropped": int, "lost": int, "refused_jobs": {function: count},
    "lines": {line: {"frames", "flagged", "errors", "pending", "dropped", "published", "lost",
    "lost_by_camera", "defect_rate", "frames_per_s", "active_model", "last_finished_at",
    "skipped_files"}}}``.
    ``pending`` counts frames in jobs waiting or running; ``lost`` counts stream frames lost with
    Redis (``lost_by_camera``: {camera: count}); ``defect_rate`` is flagged per scored frame (None
    before the first); ``frames_per_s`` covers the last RATE_WINDOW_S seconds; ``skipped_files``
    ({camera: {reason: count}}) counts the files folder sources did not take, each once per run
    (see ingest.file_checks). ``outbox``: verdicts and alarms waiting for the configured
    `outbox_sinks` (``{"sinks", "messages", "oldest_age_s"}``, see store.outbox). ``alarms``: the open
    drift alarms, oldest first (``[{"kind", "line", "camera", "since", "reason"}]``, see worker.drift).
    ``sources``: each camera or stream's state (``[{"line", "camera", "source", "state", "since",
    "reason", "frames_lost"}]``; state "streaming", "down", "failed", "starting" or "stopped", see
    store.source_states; frames_lost counts the camera's frames lost with Redis).
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
    lost: dict[str, dict[str, int]] = {}
    for counts in lost_frame_counts(engine):
        lost.setdefault(counts.line, {})[counts.camera] = counts.lost
    skipped: dict[str, dict[str, dict[str, int]]] = {}
    for (line, camera), reasons in skipped_file_counts(engine).items():
        skipped.setdefault(line, {})[camera] = reasons

    depth = outbox_depth(engine, outbox_sinks, now)
    outbox = {"sinks": list(outbox_sinks), "messages": depth.messages, "oldest_age_s": depth.oldest_age_s}
    lines = {}
    every_line = stored.keys() | published.keys() | dropped.keys() | pending.keys() | lost.keys() | skipped.keys()
    for line in sorted(every_line):
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
            "lost": sum(lost.get(line, {}).values()),
            "lost_by_camera": lost.get(line, {}),
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
        "lost": sum(sum(cameras.values()) for cameras in lost.values()),
        "refused_jobs": counters["refused_jobs"],
        "outbox": outbox,
        "alarms": [
            {"kind": alarm.kind, "line": alarm.line, "camera": alarm.camera, "since": alarm.since.isoformat(), "reason": alarm.reason}
            for alarm in open_alarms(engine)
        ],
        "sources": [
            {
                "line": state.line, "camera": state.camera, "source": state.source, "state": state.state,
                "since": state.since.isoformat(), "reason": state.reason,
                "frames_lost": lost.get(state.line, {}).get(state.camera, 0),
            }
            for state in source_states(engine)
        ],
        "lines": lines,
    }


def workers_alive(redis: Redis, queue_name: str, now: datetime | None = None) -> int:
    """Workers of the queue that beat recently (see `wire.protocol.WorkerBeat.alive`)."""
    now = now or datetime.now(UTC)
    return sum(1 for beat in worker_beats(redis, queue_name) if beat.alive(now))


def format_status(status: dict[str, Any]) -> str:
    """`line_status` as a few lines of text for a terminal."""
    queue = status["queue"]
    text = [
        (
            f"queue {queue['name']!r}: {queue['queued_jobs']} jobs waiting, {queue['started_jobs']} running, "
            f"{queue['failed_jobs']} failed; {status['workers_alive']} workers alive; "
            f"{status['published']} frames published, {status['dropped']} dropped, {status['lost']} lost with Redis"
        )
    ]
    outbox = status["outbox"]
    if outbox["sinks"]:
        age = "" if outbox["oldest_age_s"] is None else f", the oldest {outbox['oldest_age_s']:.1f} s old"
        text.append(f"  outbox to {' and '.join(outbox['sinks'])}: {outbox['messages']} messages waiting{age}")
    for source in status["sources"]:
        text.append(
            f"  {source['line']}/{source['camera']} {source['source']}: {source['state']} since {source['since']}"
            + (f" ({source['reason']})" if source["state"] != "streaming" and source["reason"] else "")
            + f", {source['frames_lost']} frames lost with Redis"
        )
    for alarm in status["alarms"]:
        text.append(f"  ALARM {alarm['line']}/{alarm['camera']} since {alarm['since']}: {alarm['reason']}")
    if status["refused_jobs"]:
        refused = ", ".join(f"{function}: {count}" for function, count in sorted(status["refused_jobs"].items()))
        text.append(f"  refused foreign jobs (never run): {refused}")
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
        f" {counts['pending']} pending, {counts['dropped']} dropped, {_lost_text(counts)},"
        f" {counts['frames_per_s']:.2f} frames/s,"
        f" model {counts['active_model'] or 'none'}"
    )


def _lost_text(counts: dict[str, Any]) -> str:
    cameras = ", ".join(f"{camera}: {lost}" for camera, lost in sorted(counts["lost_by_camera"].items()))
    return f"{counts['lost']} lost with Redis" + (f" ({cameras})" if cameras else "")
