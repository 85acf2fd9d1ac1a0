"""The worker process: a non-forking rq worker that leases its jobs.

Non-forking (`rq.SimpleWorker`): rq's default worker forks a child per job, which would load the
model again for every job and cannot use CUDA after a fork. Here the process loads its models once
(worker.model_cache) and runs every job itself.

At least once, within a bounded time. rq records a running job in the queue's StartedJobRegistry
with an expiry; a job whose worker died stays there until the expiry passes, and the next registry
cleanup (run by every worker every `lease_s`, and by `lineguard status`) then hands it back to
the queue if it has retries left, or fails it. Out of the box a SimpleWorker sets that expiry to
the job's whole timeout plus a minute, cleans every ten minutes, and jobs carry no retries, so a
killed worker's frames would wait many minutes and then be failed, not retried. `LeasedWorker`
therefore
- takes a short lease on each job (`lease_s`) and renews it from a heartbeat thread while the job
  runs, so a dead worker's lease runs out within `lease_s`;
- gives every job `max_retries` retries when it starts, so the cleanup requeues an abandoned job;
- cleans the registries every `lease_s` and wakes from an idle wait at least as often.
A killed worker's frames are thus back in the queue within about three leases (expiry, next
cleanup, a worker waking); rows are upserted by frame id, so a retried batch adds no row.

Batching: a job is a micro-batch; a worker that falls behind also scores the waiting jobs that fit
in `--batch-size` frames together with the one it took (see `LeasedWorker`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from redis import Redis
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import WorkerStatus

from model.devices import resolve_device
from store.artifacts import open_artifact_store
from store.db import database_url, make_engine, upgrade
from worker.context import WorkerContext, current_context, installed
from worker.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_GOOD_SAMPLE_EVERY,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MODEL_REFRESH_S,
    HEARTBEATS_PER_LEASE,
    WORKER_TTL_MARGIN_S,
)
from worker.jobs import score_batch, score_frames
from worker.model_cache import ModelCache

logger = logging.getLogger(__name__)

#: Dotted path of the job function whose jobs can be scored together.
SCORE_FRAMES = f"{score_frames.__module__}.{score_frames.__qualname__}"


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
    threads: int | None = None
    name: str | None = None

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
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {self.threads}")


class LeasedWorker(SimpleWorker):
    """A SimpleWorker that leases its jobs, retries those of dead workers, and scores waiting jobs together.

    Coalescing: a job carries the frames its publisher gathered within its maximum wait, which at a
    low frame rate is a handful. When the worker falls behind, jobs wait in the queue; it then takes
    as many of them as fit in `batch_size` frames and scores all their frames in one forward pass
    (on a CPU a pass of 16 frames costs about a third per frame of a pass of 2). Each taken job is
    leased and started first, so a worker that dies meanwhile leaves every one of them to be retried;
    afterwards rq performs each job as usual, which finds its frames recorded and only finishes it.
    """

    def __init__(
        self,
        *args: object,
        lease_s: int = DEFAULT_LEASE_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **kwargs: object,
    ) -> None:
        """Arguments as for rq's SimpleWorker, plus the lease, the retries granted to each job and
        the most frames scored together."""
        kwargs.setdefault("worker_ttl", lease_s + WORKER_TTL_MARGIN_S)
        kwargs.setdefault("maintenance_interval", lease_s)
        kwargs.setdefault("job_monitoring_interval", lease_s)
        super().__init__(*args, **kwargs)
        self.lease_s = lease_s
        self.max_retries = max_retries
        self.batch_size = batch_size

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The lease: how long a started job stays this worker's without a heartbeat."""
        return self.lease_s

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run `job`, and the waiting jobs that fit beside it, here (no fork), their leases renewed until they end."""
        joined, left_over = self._take_waiting_jobs(job, queue)
        running: dict[str, tuple[Job, Execution]] = {}
        for each in (job, *joined, *left_over):
            self._grant_retries(each)
            self._forget_dead_executions(each)
            running[each.id] = (each, self.prepare_execution(each))
        with self._leases_renewed(running):
            if joined:
                self._score_together([job, *joined], queue)
            for each in (job, *joined, *left_over):
                self.perform_job(each, queue, running[each.id][1])
                del running[each.id]
        self.set_state(WorkerStatus.IDLE)

    def _take_waiting_jobs(self, job: Job, queue: Queue) -> tuple[list[Job], list[Job]]:
        """Jobs taken from the queue to run with `job`: (those whose frames fit in batch_size beside
        its frames, the one that did not fit and ended the search, if any; it runs on its own here)."""
        frames = _frame_count(job)
        joined: list[Job] = []
        while frames is not None and frames < self.batch_size:
            result = self.queue_class.dequeue_any(
                [queue], None, connection=self.connection, job_class=self.job_class,
                serializer=self.serializer, death_penalty_class=self.death_penalty_class,
            )
            if result is None:
                break
            more = _frame_count(result[0])
            if more is None or frames + more > self.batch_size:
                return joined, [result[0]]
            joined.append(result[0])
            frames += more
        return joined, []

    def _score_together(self, jobs: list[Job], queue: Queue) -> None:
        """Score the frames of scoring jobs `jobs` in one batch; if that fails, each job does its own work next."""
        for job in jobs:
            # Started before the work, so a worker dying now leaves each job to the registry's retry.
            self.prepare_job_execution(job, remove_from_intermediate_queue=len(self.queues) == 1)
        frames = [frame for job in jobs for frame in job.args[0]["frames"]]
        try:
            with self.death_penalty_class(jobs[0].timeout or queue.DEFAULT_TIMEOUT, JobTimeoutException, job_id=jobs[0].id):
                score_batch(current_context(), {"frames": frames})
        except Exception as error:  # noqa: BLE001 - each job then runs (and fails, and is retried) on its own
            logger.warning("scoring %d jobs together failed (%s); scoring them one by one", len(jobs), error)

    def _grant_retries(self, job: Job) -> None:
        # Publishers enqueue without retries; granted once, at the first start, then counted down by rq.
        if job.retries_left is None:
            job.retries_left = self.max_retries
            self.connection.hset(job.key, "retries_left", self.max_retries)

    def _forget_dead_executions(self, job: Job) -> None:
        # rq 3.0 keeps an execution in the job's execution registry a minute longer than the
        # execution itself; finishing a job retried within that minute then fails ("Execution ...
        # not found in Redis"). The executions of a job's dead workers are dropped before it runs.
        registry_key = job.execution_registry.key
        for execution_id in self.connection.zrange(registry_key, 0, -1):
            execution = Execution(id=execution_id.decode(), job_id=job.id, connection=self.connection)
            if not self.connection.exists(execution.key):
                self.connection.zrem(registry_key, execution_id)

    @contextmanager
    def _leases_renewed(self, running: dict[str, tuple[Job, Execution]]) -> Iterator[None]:
        """Renew the leases of the jobs in `running` (and this worker's heartbeat) from a thread while
        the block runs; the block removes a job from `running` once it has ended."""
        stop = threading.Event()
        interval = self.lease_s / HEARTBEATS_PER_LEASE

        def renew() -> None:
            while not stop.wait(interval):
                for job, execution in list(running.values()):
                    try:
                        self.maintain_heartbeats(job, execution)
                    except Exception as error:  # noqa: BLE001 - Redis away a moment: the next renewal may succeed
                        logger.warning("could not renew the lease of job %s: %s", job.id, error)

        renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()


def _frame_count(job: Job) -> int | None:
    """Frames of a scoring job; None for a job that is not one (another function, a malformed payload)."""
    if job.func_name != SCORE_FRAMES:
        return None
    payload = job.args[0] if len(job.args) == 1 else None
    frames = payload.get("frames") if isinstance(payload, dict) else None
    return len(frames) if isinstance(frames, list) else None


def default_worker_name() -> str:
    """host.pid: unique among running workers and says where to look."""
    return f"{socket.gethostname()}.{os.getpid()}"


def run_worker(redis_url: str, database: str, artifacts_url: str, queue_name: str, options: WorkerOptions) -> bool:
    """Run a worker process on `queue_name` until stopped (SIGINT/SIGTERM) or, with burst, the queue is empty.

    Brings the store's schema up to date first. Returns whether any job was processed.
    """
    device = resolve_device(options.device)  # fails here, before any work, on a bad flag
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    engine = make_engine(database_url(database))
    upgrade(engine)
    redis = Redis.from_url(redis_url)
    name = options.name or default_worker_name()
    context = WorkerContext(
        redis=redis,
        engine=engine,
        artifacts=open_artifact_store(artifacts_url),
        models=ModelCache(engine, device=str(device), precision=options.precision, refresh_s=options.model_refresh_s),
        name=name,
        batch_size=options.batch_size,
        good_sample_every=options.good_sample_every,
    )
    worker = LeasedWorker(
        [Queue(queue_name, connection=redis, serializer=JSONSerializer)],
        name=name,
        connection=redis,
        serializer=JSONSerializer,
        lease_s=options.lease_s,
        max_retries=options.max_retries,
        batch_size=options.batch_size,
    )
    logger.info(
        "worker %s on queue %r: device %s, batch size %d, lease %d s, %s",
        name, queue_name, device, options.batch_size, options.lease_s, "burst" if options.burst else "until stopped",
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
