"""What every job of a worker process shares, and how the job function finds it.

rq runs a job by importing its function by dotted path (``worker.jobs.score_frames``) and calling
it with the job's JSON arguments only; nothing else can travel with a job. The Redis connection,
the database engine, the loaded models and the artifact store belong to the process, are made once
when it starts, and must outlive every job. So the worker process builds one `WorkerContext` and
installs it for the duration of its work loop (`installed`); the job function reads it with
`current_context`. A `ContextVar` rather than a plain module attribute: it is set and reset in one
place, a test can install its own context, and nothing is left behind once the loop ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from sqlalchemy import Engine

from store.artifacts import ArtifactStore
from store.db import is_database_outage
from wire.connections import OutageWaiter, is_redis_outage
from worker.device_decoding import DeviceDecoding
from worker.defaults import DEFAULT_BATCH_SIZE, DEFAULT_DECODE_BUDGET_MB, DEFAULT_GOOD_SAMPLE_EVERY, DEFAULT_MAX_REFERENCE_BYTES
from worker.drift import DriftMonitor
from worker.errors import NoWorkerContextError
from worker.model_cache import ModelCache, is_checkpoint_read_error
from worker.evidence import GoodSample
from worker.shadow import ShadowScorer


@dataclass(frozen=True)
class WorkerContext:
    """The process-wide resources and settings a job uses.

    Attributes:
        redis: connection holding the frame bytes (bytes responses).
        engine: the store's database engine.
        artifacts: where images and heatmap overlays are written.
        models: the process's model cache.
        name: this worker's name, recorded in every row it writes.
        batch_size: most frames scored in one forward pass; a job's frames are split to fit.
        good_sample_every: keep pictures of one good frame in this many of each camera's (0: none).
        decode_budget_bytes: most bytes of decoded frames and their anomaly maps held at once.
        frame_root: the resolved folder inside which frames sent by reference are read
            (worker.references.frame_root); None: such frames get error rows.
        max_reference_bytes: largest file read for a frame sent by reference.
        device_decoding: decodes and fits frames on the scoring device (worker.device_decoding);
            None: on the host.
        drift: the recent deviations of the cameras this worker scores (drift alarms).
        shadows: runs the lines' shadow candidates after each batch (None: no shadow scoring).
        verdict_topic_prefix: topic prefix of the verdicts queued in the outbox with the rows;
            None when no sink is configured (then no verdict is queued).
        redis_waiter, database_waiter, checkpoint_waiter: wait out outages of Redis, the
            database and the model files (a checkpoint read failing with an I/O error); the worker
            process passes its own, which stop waiting when the worker is asked to stop.
    """

    redis: Redis
    engine: Engine
    artifacts: ArtifactStore
    models: ModelCache
    name: str
    batch_size: int = DEFAULT_BATCH_SIZE
    good_sample_every: int = DEFAULT_GOOD_SAMPLE_EVERY
    decode_budget_bytes: int = DEFAULT_DECODE_BUDGET_MB * 2**20
    frame_root: Path | None = None
    max_reference_bytes: int = DEFAULT_MAX_REFERENCE_BYTES
    device_decoding: DeviceDecoding | None = None
    verdict_topic_prefix: str | None = None
    shadows: ShadowScorer | None = None
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    #: Which good frames keep their pictures (one in good_sample_every per camera); made from it.
    good_samples: GoodSample = field(init=False, repr=False, compare=False)
    redis_waiter: OutageWaiter = field(default_factory=lambda: OutageWaiter("Redis", is_redis_outage))
    database_waiter: OutageWaiter = field(default_factory=lambda: OutageWaiter("the database", is_database_outage))
    checkpoint_waiter: OutageWaiter = field(default_factory=lambda: OutageWaiter("the model's checkpoint", is_checkpoint_read_error))

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.decode_budget_bytes < 1:
            raise ValueError(f"decode_budget_bytes must be at least 1, got {self.decode_budget_bytes}")
        if self.good_sample_every < 0:
            raise ValueError(f"good_sample_every must be >= 0 (0 keeps no good frames), got {self.good_sample_every}")
        object.__setattr__(self, "good_samples", GoodSample(self.good_sample_every))


_CURRENT: ContextVar[WorkerContext] = ContextVar("lineguard_worker_context")


@contextmanager
def installed(context: WorkerContext) -> Iterator[WorkerContext]:
    """Make `context` the one `current_context` returns until the block ends."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)


def current_context() -> WorkerContext:
    """The context installed by the running worker process; NoWorkerContextError outside one."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise NoWorkerContextError(
            "worker.jobs.score_frames runs inside a lineguard worker process (`lineguard worker`), "
            "which sets up Redis, the store and the models first; a plain `rq worker` cannot run it"
        ) from None
