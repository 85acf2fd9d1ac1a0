"""The queue's wire format, in one place: job function, payload fields, Redis keys, counters.

The publisher (``ingest``) encodes, the worker decodes and validates, ``lineguard status`` and the
dashboard read; all of them import this module and nothing else spells a key or a field.

- Frame bytes: one Redis string per frame under ``lineguard:frame:<frame_id>``, with a TTL. A frame
  sent by reference (its file is on storage the workers share) has its path in the entry's
  ``reference`` and that path, not the bytes, under the key: the key's presence and TTL mean what
  they mean for bytes (not yet recorded, expired, lost with Redis), and the worker reads the file
  inside its frame root (``worker.references``).
- A job is an rq job (JSON serializer, never pickle) calling `SCORE_FRAMES_FUNCTION` with one
  argument, ``{"frames": [FrameEntry.to_json(), ...]}``, and nothing else: no instance, keyword
  arguments, callbacks, webhooks or dependencies (`foreign_job_reason` checks all of it). It carries
  its `JOB_RETRIES` retries from the moment it is enqueued (`enqueue_scoring_job`), so that a job a
  worker took and never started (killed in between) is retried by rq's cleanup, not failed.
- Counters: hashes of frames published and dropped per ``"<line>/<camera>"``, and of refused jobs
  per function name.

Reading the queue here never writes: rq's own registry counts run its cleanup (which requeues or
fails jobs) and its ``Worker.all()`` deletes stale registrations, so neither is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq import Queue, Retry
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcparse
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

DEFAULT_QUEUE_NAME = "lineguard"
"""Name of the rq queue that ingesters fill and workers empty."""

SCORE_FRAMES_FUNCTION = "worker.jobs.score_frames"
"""Dotted path of the one job function a worker runs; rq resolves it in the worker, never here."""

FRAME_KEY_PREFIX = "lineguard:frame:"
"""Prefix of the Redis key that holds one frame's encoded bytes."""

PUBLISHED_KEY = "lineguard:published"
"""Redis hash: frames enqueued, per "<line>/<camera>" field."""

DROPS_KEY = "lineguard:drops"
"""Redis hash: frames dropped at a full queue, per "<line>/<camera>" field."""

REFUSED_JOBS_KEY = "lineguard:refused_jobs"
"""Redis hash: jobs a worker refused to run, per function name (as the job named it, shortened)."""

JOB_RETRIES = 3
"""Times a scoring job goes back to the queue (its worker died, or scoring it failed) before it is
failed and its frames get dead-letter rows: each frame gets at most JOB_RETRIES + 1 attempts."""

DEAD_LETTERS_META = "lineguard_dead_letters"
"""Key of a failed job's rq meta: how many dead-letter rows its frames got (absent: none written yet)."""

SERIALIZER = JSONSerializer
"""rq serializer of every job and worker of the line: JSON, so nothing read from Redis is unpickled."""

WORKER_ALIVE_WITHIN_S = 60
"""A worker counts as alive when its last heartbeat is this recent (workers beat at least once a lease)."""

FUNCTION_NAME_SHOWN = 200
"""Characters of a refused job's function name kept in counters and logs."""

MAX_REFERENCE_CHARS = 4096
"""Longest path a frame sent by reference may name (Linux's PATH_MAX)."""


class InvalidPayloadError(TypeError, ValueError):
    """A job payload or frame entry does not follow this protocol (of the wrong shape or value)."""


def frame_key(frame_id: str) -> str:
    """Return the Redis key that holds the encoded bytes of frame `frame_id`."""
    return f"{FRAME_KEY_PREFIX}{frame_id}"


def stream_field(line: str, camera: str) -> str:
    """The counter hashes' field of one line and camera (neither may contain '/')."""
    return f"{line}/{camera}"


def make_queue(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> Queue:
    """Return the rq queue `queue_name` on `redis`, with the JSON serializer used everywhere."""
    return Queue(queue_name, connection=redis, serializer=SERIALIZER)


@dataclass(frozen=True)
class FrameEntry:
    """One frame as a job carries it: who, where, when, and the key of its bytes (never the bytes).

    Attributes:
        frame_id: the store's key for the inspection.
        line, camera: where it was taken.
        source: the source label, e.g. "folder:/abs/dir" or "video:rtsp://host/stream".
        origin: where in the source a person finds the part (a file's path inside the folder, a
            video's frame position), or None.
        sequence: the camera's frame number (stream sources; None for folders).
        captured_at, enqueued_at: timezone-aware times.
        expires_at: when the bytes' TTL runs out; bytes missing before then were lost with Redis.
        key: Redis key of the bytes (of the reference, for a frame sent by reference).
        size: length of the bytes (of the file, for a frame sent by reference).
        reference: the absolute path of the frame's file on storage the workers share, when the
            frame is sent by reference instead of by its bytes; None for bytes in Redis.
    """

    frame_id: str
    line: str
    camera: str
    source: str
    origin: str | None
    sequence: int | None
    captured_at: datetime
    enqueued_at: datetime
    expires_at: datetime | None
    key: str
    size: int
    reference: str | None = None

    @property
    def label(self) -> str:
        """How messages name this frame."""
        where = f"{self.origin} of {self.source}" if self.origin else self.source
        return f"frame {self.frame_id} ({where})"

    @property
    def findable_origin(self) -> str | None:
        """The origin as a row records it: where in the source, and the camera's sequence number."""
        if self.sequence is None:
            return self.origin
        return f"{self.origin}, sequence {self.sequence}" if self.origin else f"sequence {self.sequence}"

    def to_json(self) -> dict[str, Any]:
        """The JSON-safe entry that travels in the job."""
        return {
            "frame_id": self.frame_id,
            "line": self.line,
            "camera": self.camera,
            "source": self.source,
            "origin": self.origin,
            "sequence": self.sequence,
            "captured_at": _iso(self.captured_at),
            "enqueued_at": _iso(self.enqueued_at),
            "expires_at": None if self.expires_at is None else _iso(self.expires_at),
            "key": self.key,
            "size": self.size,
            **({"reference": self.reference} if self.reference is not None else {}),
        }

    @classmethod
    def from_json(cls, entry: Any) -> FrameEntry:
        """An entry of a job's frame list, checked; InvalidPayloadError saying what is wrong.

        ``expires_at``, ``sequence``, ``origin``, ``size`` and ``reference`` are optional (jobs
        published before they existed); a missing ``expires_at`` counts as already expired. A
        reference is only checked for its form here (an absolute path of at most
        MAX_REFERENCE_CHARS characters, without NUL); where it may point is the worker's check.
        """
        if not isinstance(entry, dict):
            raise InvalidPayloadError(f"frame entry must be an object, got {type(entry).__name__}")
        texts = {}
        for name in ("frame_id", "line", "camera", "source", "key"):
            value = entry.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidPayloadError(f"frame entry needs a non-empty string {name!r}, got {value!r}")
            texts[name] = value
        origin = entry.get("origin")
        sequence = entry.get("sequence")
        if sequence is not None and (isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0):
            raise InvalidPayloadError(f"frame entry 'sequence' must be a whole number >= 0 or null, got {sequence!r}")
        size = entry.get("size", 0)
        reference = entry.get("reference")
        if reference is not None and (
            not isinstance(reference, str) or not reference.startswith("/") or "\0" in reference or len(reference) > MAX_REFERENCE_CHARS
        ):
            raise InvalidPayloadError(
                f"frame entry 'reference' must be an absolute path of at most {MAX_REFERENCE_CHARS} characters, got {str(reference)[:200]!r}"
            )
        return cls(
            **texts,
            origin=origin if isinstance(origin, str) else None,
            sequence=sequence,
            captured_at=_aware_time(entry, "captured_at"),
            enqueued_at=_aware_time(entry, "enqueued_at"),
            expires_at=_aware_time(entry, "expires_at") if entry.get("expires_at") is not None else None,
            size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
            reference=reference,
        )

    def expired(self, now: datetime) -> bool:
        """Whether the bytes' TTL has run out by `now` (always, for entries without an expiry)."""
        return self.expires_at is None or now >= self.expires_at


def encode_payload(entries: Sequence[FrameEntry]) -> dict[str, Any]:
    """The one argument of a scoring job."""
    return {"frames": [entry.to_json() for entry in entries]}


def enqueue_scoring_job(
    queue: Queue,
    entries: Sequence[FrameEntry],
    *,
    pipeline: Pipeline,
    job_timeout_s: int,
    result_ttl_s: int,
    failure_ttl_s: int,
    description: str,
) -> Job:
    """Add the scoring job of `entries` to `queue` inside the open transaction `pipeline`, with its retries."""
    return queue.enqueue(
        SCORE_FRAMES_FUNCTION,
        encode_payload(entries),
        job_timeout=job_timeout_s,
        result_ttl=result_ttl_s,
        failure_ttl=failure_ttl_s,
        retry=Retry(max=JOB_RETRIES),
        description=description,
        pipeline=pipeline,
    )


def payload_entries(payload: Any) -> list[Any]:
    """The raw frame entries of a payload (each still to be checked by `FrameEntry.from_json`)."""
    frames = payload.get("frames") if isinstance(payload, dict) else None
    if not isinstance(frames, list):
        raise InvalidPayloadError(f"job payload must be {{'frames': [frame entry, ...]}}, got {str(payload)[:200]}")
    return frames


def foreign_job_reason(job: Job) -> str | None:
    """Why `job` is not a scoring job of this protocol, or None when it is one.

    Looks only at what the job stores (decoding its JSON); never resolves or imports the function.
    """
    try:
        function, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return "its data is not this protocol's JSON"
    if function != SCORE_FRAMES_FUNCTION:
        return f"it names function {shown_function_name(function)!r}, not {SCORE_FRAMES_FUNCTION!r}"
    if instance is not None or kwargs or not isinstance(args, list | tuple) or len(args) != 1:
        return "its call is not score_frames(payload)"
    # rq would import and call these names, or post to these addresses, when the job ends.
    callbacks = (job._success_callback_name, job._failure_callback_name, job._stopped_callback_name)  # noqa: SLF001
    if any(name is not None for name in callbacks) or job.webhooks or job._dependency_ids:  # noqa: SLF001
        return "it carries callbacks, webhooks or dependencies"
    return None


def job_frame_entries(job: Job) -> list[Any] | None:
    """The raw frame entries of a scoring job; None for a foreign job or a malformed payload."""
    if foreign_job_reason(job) is not None:
        return None
    try:
        return payload_entries(job.args[0])
    except InvalidPayloadError:
        return None


def job_failure(job: Job) -> str:
    """The last line of the error that failed `job` as rq recorded it (the exception, not its traceback)."""
    result = job.latest_result()
    text = result.exc_string if result is not None else None
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no error recorded"


def shown_function_name(function: object) -> str:
    """A job's function name fit for a log line and a counter field."""
    return str(function)[:FUNCTION_NAME_SHOWN]


def count_refused_job(redis: Redis, function: object) -> None:
    """Count one refused job under its function name."""
    redis.hincrby(REFUSED_JOBS_KEY, shown_function_name(function), 1)


def _read_counter_hash(redis: Redis, key: str) -> dict[str, int]:
    return {
        (name.decode() if isinstance(name, bytes) else name): int(value) for name, value in redis.hgetall(key).items()
    }


def queue_counters(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> dict[str, Any]:
    """Read the queue's health without writing anything.

    Returns a JSON-safe dict:
        {"queue": name, "queued_jobs": int, "started_jobs": int, "failed_jobs": int,
         "published": int, "dropped": int, "refused_jobs": {function: count},
         "streams": [{"line", "camera", "published", "dropped"}, ...] sorted by line, camera}
    """
    queue = make_queue(redis, queue_name)
    published = _read_counter_hash(redis, PUBLISHED_KEY)
    dropped = _read_counter_hash(redis, DROPS_KEY)
    streams = []
    for stream in sorted(published.keys() | dropped.keys()):
        line, _, camera = stream.partition("/")
        streams.append(
            {"line": line, "camera": camera, "published": published.get(stream, 0), "dropped": dropped.get(stream, 0)}
        )
    return {
        "queue": queue_name,
        "queued_jobs": queue.count,
        "started_jobs": StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
        "failed_jobs": FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
        "published": sum(published.values()),
        "dropped": sum(dropped.values()),
        "refused_jobs": _read_counter_hash(redis, REFUSED_JOBS_KEY),
        "streams": streams,
    }


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """A worker registered on the queue: its name, state ("idle", "busy"...) and last heartbeat (UTC)."""

    name: str
    state: str
    last_heartbeat: datetime | None

    def alive(self, now: datetime) -> bool:
        """Whether the worker beat within WORKER_ALIVE_WITHIN_S of `now`."""
        return self.last_heartbeat is not None and (now - self.last_heartbeat).total_seconds() <= WORKER_ALIVE_WITHIN_S


def worker_beats(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> list[WorkerBeat]:
    """The workers registered on `queue_name` whose keys still exist, sorted by name (reads only)."""
    keys = sorted(member.decode() for member in redis.smembers(WORKERS_BY_QUEUE_KEY % queue_name))
    with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "last_heartbeat", "state")
        fields = pipe.execute()
    beats = []
    for key, (heartbeat, state) in zip(keys, fields):
        if heartbeat is None and state is None:
            continue  # expired: a worker that stopped beating
        beats.append(
            WorkerBeat(
                name=key.removeprefix("rq:worker:"),
                state=state.decode() if state else "?",
                last_heartbeat=utcparse(heartbeat.decode()) if heartbeat else None,
            )
        )
    return beats


def pending_frames_by_line(redis: Redis, queue_name: str = DEFAULT_QUEUE_NAME) -> Counter[str]:
    """Frames per line in the queue's waiting and running scoring jobs (reads only)."""
    queue = make_queue(redis, queue_name)
    job_ids = queue.get_job_ids() + StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    pending: Counter[str] = Counter()
    for job in Job.fetch_many(job_ids, connection=redis, serializer=SERIALIZER):
        entries = job_frame_entries(job) if job is not None else None  # None: finished meanwhile
        for entry in entries or []:
            if isinstance(entry, dict) and isinstance(entry.get("line"), str):
                pending[entry["line"]] += 1
    return pending


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _aware_time(entry: dict[str, Any], name: str) -> datetime:
    value = entry.get(name)
    try:
        moment = datetime.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidPayloadError(f"frame entry {name!r} must be an ISO 8601 time, got {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidPayloadError(f"frame entry {name!r} has no timezone: {value!r}")
    return moment
