"""The worker process: one `LeasedWorker` (worker.leased) with its context, until stopped.

Non-forking (`rq.SimpleWorker`): rq's default worker forks a child per job, which would load the
model again for every job and cannot use CUDA after a fork. Here the process loads its models once
(worker.model_cache) and runs every job itself. It brings the store's schema up to date at start,
and shares its outage waiters between the work loop and the jobs, so an outage is told once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from model.devices import resolve_device
from store.artifacts import open_artifact_store
from store.db import database_url, is_database_outage, make_engine, upgrade
from wire.connections import OutageWaiter, connect_redis
from wire.protocol import SERIALIZER, make_queue
from worker.context import WorkerContext, installed
from worker.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODE_BUDGET_MB,
    DEFAULT_DECODE_ON_DEVICE,
    DEFAULT_GOOD_SAMPLE_EVERY,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_REFERENCE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL_REFRESH_S,
    WORKER_TTL_MARGIN_S,
)
from worker.deadline import BatchDeadline
from worker.device_decoding import DECODE_ON_DEVICE_CHOICES, DeviceDecoding, decodes_on_device
from worker.leased import LeasedWorker
from worker.model_cache import ModelCache, is_checkpoint_read_error
from worker.references import frame_root
from worker.shadow import ShadowScorer

logger = logging.getLogger(__name__)

#: Seconds a worker's Redis commands may take beyond its longest blocking dequeue (one lease).
SOCKET_TIMEOUT_MARGIN_S = 10


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker process runs (see `lineguard worker --help`)."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    burst: bool = False
    lease_s: int = DEFAULT_LEASE_S
    max_retries: int = DEFAULT_MAX_RETRIES
    model_refresh_s: float = DEFAULT_MODEL_REFRESH_S
    good_sample_every: int = DEFAULT_GOOD_SAMPLE_EVERY
    batch_deadline_s: float | None = None
    decode_budget_mb: int = DEFAULT_DECODE_BUDGET_MB
    threads: int | None = None
    name: str | None = None
    verdict_topic_prefix: str | None = None  # None: no sink configured, no verdict queued
    frame_root: str | None = None  # None: frames sent by reference get error rows
    max_reference_bytes: int = DEFAULT_MAX_REFERENCE_BYTES
    decode_on_device: str = DEFAULT_DECODE_ON_DEVICE  # auto: where the device is CUDA

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lease_s < 2:
            raise ValueError(f"--lease must be at least 2 seconds, got {self.lease_s}")
        if self.max_retries < 0:
            raise ValueError(f"--max-retries must be >= 0, got {self.max_retries}")
        if self.model_refresh_s < 0:
            raise ValueError(f"--model-refresh must be >= 0 seconds, got {self.model_refresh_s}")
        if self.good_sample_every < 0:
            raise ValueError(f"--good-sample-every must be >= 0 (0 keeps no good frames), got {self.good_sample_every}")
        if self.batch_deadline_s is not None and self.batch_deadline_s <= 0:
            raise ValueError(f"--batch-deadline must be > 0 seconds, got {self.batch_deadline_s}")
        if self.decode_budget_mb < 1:
            raise ValueError(f"--decode-budget-mb must be at least 1, got {self.decode_budget_mb}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")
        if self.decode_on_device not in DECODE_ON_DEVICE_CHOICES:
            raise ValueError(f"--decode-on-device must be one of {', '.join(DECODE_ON_DEVICE_CHOICES)}, got {self.decode_on_device!r}")
        if self.max_reference_bytes < 1:
            raise ValueError(f"the size limit of referenced frames must be at least 1 byte, got {self.max_reference_bytes}")


def default_worker_name() -> str:
    """host.pid: unique among running workers and says where to look."""
    return f"{socket.gethostname()}.{os.getpid()}"


def run_worker(redis_url: str, database: str, artifacts_url: str, queue_name: str, options: WorkerOptions) -> bool:
    """Run a worker process on `queue_name` until stopped (SIGINT/SIGTERM) or, with burst, the queue is empty.

    Brings the store's schema up to date first. Returns whether any job was processed.
    """
    device = resolve_device(options.device)  # fails here, before any work, on a bad flag
    root = frame_root(options.frame_root) if options.frame_root is not None else None  # likewise
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    engine = make_engine(database_url(database))
    upgrade(engine)
    # Longer than the blocking dequeue (a lease), so an idle wait is not taken for a dead Redis.
    redis = connect_redis(redis_url, socket_timeout_s=options.lease_s + WORKER_TTL_MARGIN_S + SOCKET_TIMEOUT_MARGIN_S)
    name = options.name or default_worker_name()
    worker = LeasedWorker(
        [make_queue(redis, queue_name)],
        name=name,
        connection=redis,
        serializer=SERIALIZER,
        lease_s=options.lease_s,
        max_retries=options.max_retries,
        batch_size=options.batch_size,
        deadline=BatchDeadline(options.batch_deadline_s),
    )
    context = WorkerContext(
        redis=redis,
        engine=engine,
        artifacts=open_artifact_store(artifacts_url),
        models=ModelCache(engine, device=str(device), precision=options.precision, refresh_s=options.model_refresh_s),
        name=name,
        batch_size=options.batch_size,
        good_sample_every=options.good_sample_every,
        decode_budget_bytes=options.decode_budget_mb * 2**20,
        frame_root=root,
        max_reference_bytes=options.max_reference_bytes,
        device_decoding=DeviceDecoding(device) if decodes_on_device(options.decode_on_device, device) else None,
        verdict_topic_prefix=options.verdict_topic_prefix,
        shadows=ShadowScorer(engine, device=str(device), precision=options.precision, refresh_s=options.model_refresh_s),
        redis_waiter=worker.redis_waiter,
        database_waiter=OutageWaiter("the database", is_database_outage, should_stop=lambda: worker.stop_requested),
        checkpoint_waiter=OutageWaiter("the model's checkpoint", is_checkpoint_read_error, should_stop=lambda: worker.stop_requested),
    )
    logger.info(
        "worker %s on queue %r: device %s (decoding on %s), batch size %d, lease %d s, %s",
        name, queue_name, device, "the host" if context.device_decoding is None else device, options.batch_size, options.lease_s,
        "burst" if options.burst else "until stopped",
    )
    with installed(context), _signal_handlers_restored():
        try:
            # logging_level=None keeps the levels the CLI configured.
            return worker.work(burst=options.burst, logging_level=None)
        finally:
            engine.dispose()
            redis.close()


@contextmanager
def _signal_handlers_restored() -> Iterator[None]:
    """rq installs its own SIGINT/SIGTERM handlers for the work loop; put the previous ones back after it."""
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
