"""`LeasedWorker`: rq's non-forking worker with leases, retries for dead workers' jobs, batching
across jobs, a refusal of every job that is not ours, and a work loop that waits out outages.

rq's own loop quits on the first Redis error it does not expect, and its job handling spends a
job's retries on any exception, so this class runs its own loop around rq's pieces (which is why
the `rq` requirement is pinned to the minor version whose internals it uses: `_shutdown`,
`_stop_requested`, `_finalize_success`, `_finalize_failure` and `_pubsub_exception_handler`):

- **Only our job runs.** `execute_job` checks the job against `wire.protocol` before rq resolves
  anything a job names; any other job is deleted, logged and counted, and the worker goes on.
- **Leases.** Each taken job is leased for `lease_s` and renewed from a heartbeat thread while it
  runs, so a dead worker's jobs go back to the queue within about three leases (expiry, the next
  registry cleanup, a worker waking). Jobs carry their retries from enqueue (`wire.protocol`), so
  rq's cleanup requeues rather than fails the job of a dead worker; a job that worker had taken and
  not yet started (rq's intermediate-queue cleanup) goes back without spending a retry, as it never
  ran. A job enqueued without retries gets `max_retries` at its first start.
- **Dead letters.** A job that failed for good (its retries spent, whoever failed it: this worker's
  scoring or rq's cleanup of a worker that died on every attempt) gets a final error row for each of
  its frames without one (`worker.jobs.record_dead_letters`), so its source's ledger settles them
  instead of publishing them again; the job stays in the failed registry (`lineguard jobs`).
- **Deadline.** A batch that outlives its deadline (`worker.deadline`) is given back to rq by a
  watchdog thread, its jobs failed with the reason (a retry spent), and the process restarted.
- **Named states.** The loop is always in one `LoopState`. A stop signal only sets a flag, which the
  loop reads where it holds no job: between two waits for a job (`STOP_POLL_S` each), and after the
  jobs it holds are scored or handed back. A signal never ends the loop from inside a dequeue, where
  a job may already sit taken (in rq's intermediate queue) and unstarted.
- **Batching.** A worker that falls behind takes the waiting jobs that fit in `batch_size` frames
  and scores their frames in one forward pass; each job is leased and started first, so a worker
  dying meanwhile leaves every one of them to be retried.
- **Outages.** A Redis outage anywhere in the loop, and Redis or database outages inside a job,
  are waited out (`wire.connections.OutageWaiter`) with the batch kept, so no retry is spent on them.
  Each heartbeat re-adds the worker to rq's registrations (a restarted Redis forgot them). After an
  outage the worker skips rq's registry cleanup for one lease, so that workers still holding jobs
  renew their leases before anyone takes those jobs for abandoned.
"""

from __future__ import annotations

import enum
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.client import Pipeline
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import DequeueTimeout, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.utils import now
from rq.worker import WorkerStatus

from wire.connections import OutageInterrupted, OutageWaiter, is_redis_outage
from wire.protocol import (
    DEAD_LETTERS_META,
    SERIALIZER,
    count_refused_job,
    foreign_job_reason,
    job_failure,
    job_frame_entries,
    shown_function_name,
)
from worker.context import current_context
from worker.defaults import (
    COMMAND_LISTENER_POLL_S,
    DEFAULT_BATCH_SIZE,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_RETRIES,
    HEARTBEATS_PER_LEASE,
    STOP_POLL_S,
    WORKER_TTL_MARGIN_S,
)
from worker.deadline import BatchDeadline, restart_process, watched
from worker.jobs import record_dead_letters, score_batch

logger = logging.getLogger(__name__)

#: What rq's intermediate-queue cleanup (rq.intermediate_queue, rq 3.0) says of a job that a worker
#: took off the queue and never started.
STUCK_IN_INTERMEDIATE_QUEUE = "Job was stuck in intermediate queue."


class LoopState(enum.Enum):
    """Where the work loop is, and so when a stop signal (which only sets a flag) ends it."""

    STARTING = "registering the worker"
    WAITING = "waiting for a job"
    """Holding no job: a stop ends the loop after the wait in progress (at most STOP_POLL_S)."""
    TAKING = "taking jobs"
    """Jobs taken off the queue, not yet started: a stop waits until they are scored."""
    SCORING = "scoring jobs"
    """Jobs started and leased: a stop waits until they are scored (or handed back in an outage)."""
    STOPPING = "stopping"


class LeasedWorker(SimpleWorker):
    """A SimpleWorker that runs only scoring jobs, leases them, scores waiting jobs together and
    waits out outages; see the module docstring."""

    def __init__(
        self,
        *args: object,
        lease_s: int = DEFAULT_LEASE_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        batch_size: int = DEFAULT_BATCH_SIZE,
        deadline: BatchDeadline | None = None,
        restart: Callable[[], None] = restart_process,
        **kwargs: object,
    ) -> None:
        """Arguments as for rq's SimpleWorker, plus the lease, the retries granted to each job
        enqueued without any, the most frames scored together, the batch deadline and how the
        process restarts once it has given a batch up."""
        kwargs.setdefault("worker_ttl", lease_s + WORKER_TTL_MARGIN_S)
        kwargs.setdefault("maintenance_interval", lease_s)
        kwargs.setdefault("job_monitoring_interval", lease_s)
        super().__init__(*args, **kwargs)
        self.lease_s = lease_s
        self.max_retries = max_retries
        self.batch_size = batch_size
        self.deadline = deadline if deadline is not None else BatchDeadline()
        self.restart = restart
        self._given_up = False
        self.redis_waiter = OutageWaiter(
            "Redis", is_redis_outage, should_stop=lambda: self._stop_requested, on_recovered=self._pause_cleanup
        )
        """Waits out Redis outages for the loop and for the jobs (the worker context shares it)."""
        self.refused_jobs = 0
        """Jobs this worker refused to run."""
        self.loop_state = LoopState.STARTING
        self._cleanup_paused_until = 0.0

    def subscribe(self) -> None:
        """rq's listener for commands sent to this worker, looking every COMMAND_LISTENER_POLL_S instead
        of rq's 60 s. At a stop rq unsubscribes, then redis-py's thread stop joins the listener (without
        a timeout since redis-py 8.2); a listener that took the unsubscribe's answer before it saw the
        stop waited out the whole 60 s for a new subscription, so a SIGTERMed idle worker took up to a
        minute to exit (one stop in two in tests/test_relay_mqtt.py)."""
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=COMMAND_LISTENER_POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )

    # --- the work loop ---

    def work(self, burst: bool = False, logging_level: str | None = None) -> bool:  # type: ignore[override]
        """Take and run jobs until stopped (SIGINT/SIGTERM) or, with `burst`, until the queue is
        empty; Redis outages are waited out. Returns whether any job was run."""
        self.redis_waiter.call(lambda: self.bootstrap(logging_level), LoopState.STARTING.value)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self.request_stop)  # rq's: a second signal stops at once (cold)
        worked = False
        try:
            while not self._stop_requested:
                try:
                    taken = self._next_job(burst)
                    if taken is None:
                        break
                    self.execute_job(*taken)
                    worked = True
                except OutageInterrupted:
                    break
                except Exception as error:
                    if not is_redis_outage(error):
                        raise
                    self.redis_waiter.failed(error, "waiting for jobs")
                    self.redis_waiter.call(self.heartbeat, "rejoining the queue")
        except StopRequested:  # rq's suspension check, suspended in burst mode
            pass
        finally:
            self.loop_state = LoopState.STOPPING
            self._teardown()
        return worked

    def _next_job(self, burst: bool) -> tuple[Job, Queue] | None:
        """The next job and its queue; None once a stop was asked for, or in burst mode once the queue
        is empty. Waits STOP_POLL_S at a time, so that a stop is seen between two waits, never inside
        one that took a job; heartbeats, suspension and maintenance keep rq's cadence (one wait of
        dequeue_timeout)."""
        self.set_state(WorkerStatus.IDLE)
        self.loop_state = LoopState.WAITING
        beat_due = 0.0
        while not self._stop_requested:
            if time.monotonic() >= beat_due:
                self.heartbeat()
                self.check_for_suspension(burst)
                if self.should_run_maintenance_tasks and time.monotonic() >= self._cleanup_paused_until:
                    self.run_maintenance_tasks()
                beat_due = time.monotonic() + self.dequeue_timeout
            try:
                taken = self.queue_class.dequeue_any(
                    self.queues, None if burst else STOP_POLL_S, connection=self.connection,
                    job_class=self.job_class, serializer=self.serializer, death_penalty_class=self.death_penalty_class,
                )
            except DequeueTimeout:
                continue
            if taken is not None:
                self.loop_state = LoopState.TAKING
            return taken
        return None

    @property
    def stop_requested(self) -> bool:
        """Whether the worker was asked to stop (it finishes or hands back its batch first)."""
        return self._stop_requested

    def _pause_cleanup(self) -> None:
        # After an outage, give workers still holding jobs one lease to renew them.
        self._cleanup_paused_until = time.monotonic() + self.lease_s

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """rq's heartbeat, and the worker's registration again: a Redis that restarted empty forgot it."""
        super().heartbeat(timeout, pipeline)
        if self.birth_date is None:
            return  # not registered yet
        connection = pipeline if pipeline is not None else self.connection
        connection.hset(self.key, mapping={**self.serialize(), "state": self.get_state()})
        worker_registration.register(self, connection)

    def _shutdown(self) -> None:
        """rq's warm shutdown without its Redis write (this runs in a signal handler, and Redis may be
        away) and without raising: the loop stops where it holds no job (see LoopState)."""
        self._stop_requested = True

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: object = None, exc_string: str = "", execution: Execution | None = None
    ) -> None:
        """rq's failure handling, but for a job a worker took and never started (what rq's
        intermediate-queue cleanup reports): it never ran, so it goes back to the front of the queue
        without spending a retry."""
        if exc_string == STUCK_IN_INTERMEDIATE_QUEUE and execution is None:
            logger.warning("job %s was taken by a worker that stopped before starting it: back to the queue, no retry spent", job.id)
            queue.enqueue_job(job, at_front=True)
            return
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def run_maintenance_tasks(self) -> None:
        """rq's registry cleanups, then dead letters for the jobs they (or anyone) failed for good."""
        super().run_maintenance_tasks()
        for queue in self.queues:
            self._write_dead_letters(queue, FailedJobRegistry(queue=queue).get_job_ids(cleanup=False))

    def _write_dead_letters(self, queue: Queue, job_ids: list[str]) -> None:
        """Write the dead-letter rows of the failed jobs `job_ids` that have none yet; mark each job done."""
        for job in Job.fetch_many(job_ids, connection=self.connection, serializer=SERIALIZER):
            if job is None or DEAD_LETTERS_META in job.meta or foreign_job_reason(job) is not None:
                continue
            reason = f"scoring failed on every attempt; the last: {job_failure(job)}"
            written = record_dead_letters(current_context(), job.args[0], reason)
            if written:
                logger.error("job %s failed for good: %d frames get dead-letter rows (%s)", job.id, written, reason)
            job.meta[DEAD_LETTERS_META] = written
            job.save_meta()

    def _teardown(self) -> None:
        try:
            self.teardown()
        except Exception as error:
            if not is_redis_outage(error):
                raise
            logger.warning("could not unregister worker %s from Redis (%s); its registration expires by itself", self.name, error)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The lease: how long a started job stays this worker's without a heartbeat."""
        return self.lease_s

    # --- running jobs ---

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run scoring job `job`, and the waiting jobs that fit beside it, here (no fork), their
        leases renewed until they end; refuse a job that is not ours."""
        reason = foreign_job_reason(job)
        if reason is not None:
            self._refuse(job, queue, reason)
            return
        joined, left_over = self._take_waiting_jobs(job, queue)
        self.loop_state = LoopState.SCORING
        running: dict[str, tuple[Job, Execution]] = {}
        for each in (job, *joined, *left_over):
            running[each.id] = (each, self.redis_waiter.call(lambda each=each: self._start(each, queue), "starting a job"))
        frames = sum(len(job_frame_entries(each) or []) for each in (job, *joined, *left_over))
        deadline_s = self.deadline.seconds_for(frames)
        started = time.monotonic()
        # The watchdog runs in a thread of its own, which does not see this thread's context.
        waiters = (self.redis_waiter, current_context().database_waiter, current_context().checkpoint_waiter)

        def in_outage() -> bool:  # time spent waiting out an outage is not the batch's
            return any(waiter.in_outage for waiter in waiters)

        with self._leases_renewed(running), watched(deadline_s, lambda: self._give_up(running, queue, deadline_s), in_outage):
            try:
                for group in ([job, *joined], *([each] for each in left_over)):
                    self._score(group, queue, running)
            except OutageInterrupted:
                self._hand_back([each for each, _ in running.values()], queue, running)
                raise
        self.deadline.measured(frames, time.monotonic() - started)
        self.set_state(WorkerStatus.IDLE)

    def _give_up(self, running: dict[str, tuple[Job, Execution]], queue: Queue, deadline_s: float) -> None:
        """From the watchdog thread: fail the jobs still running with the reason, then restart the process."""
        self._given_up = True
        reason = f"batch deadline of {deadline_s:g} s passed with {len(running)} jobs unfinished; worker restarted"
        logger.error("%s: giving back %s", reason, ", ".join(running) or "nothing")
        for job, execution in list(running.values()):
            try:
                self.handle_job_failure(job, queue, exc_string=reason, execution=execution)
            except Exception as error:  # noqa: BLE001 - the job's lease runs out and rq's cleanup retries it
                logger.error("could not give back job %s (%s); its lease will run out", job.id, error)
        self._teardown()
        self.restart()

    def _start(self, job: Job, queue: Queue) -> Execution:
        """Lease and start `job`; one enqueued without retries is granted `max_retries` at its first start."""
        if job.retries_left is None:
            # Publishers enqueue without retries; granted once, then counted down by rq.
            job.retries_left = self.max_retries
            self.connection.hset(job.key, "retries_left", self.max_retries)
        self._forget_dead_executions(job)
        execution = self.prepare_execution(job)
        self.prepare_job_execution(job, remove_from_intermediate_queue=len(self.queues) == 1)
        job.started_at = now()
        return execution

    def _score(self, jobs: list[Job], queue: Queue, running: dict[str, tuple[Job, Execution]]) -> None:
        """Score the frames of `jobs` in one batch and finish each job; when that fails for any reason
        but an outage, each job is scored on its own, and a job that fails alone is failed (rq then
        retries it or keeps it in the failed registry)."""
        payload = jobs[0].args[0] if len(jobs) == 1 else {"frames": [e for job in jobs for e in job_frame_entries(job) or []]}
        try:
            outcome = vars(score_batch(current_context(), payload))
        except OutageInterrupted:
            raise
        except Exception as error:  # noqa: BLE001 - a bug or a malformed payload: each job answers for itself
            if len(jobs) > 1:
                logger.warning("scoring %d jobs together failed (%s); scoring them one by one", len(jobs), error)
                for job in jobs:
                    self._score([job], queue, running)
                return
            exc_info = sys.exc_info()
            job, execution = running.pop(jobs[0].id)
            failed_for_good = not job.should_retry  # asked before rq's retry counts the job down
            if failed_for_good:
                self._score_frames_alone(job)
            self.redis_waiter.call(
                lambda: self._finish(job, execution, lambda: self._finalize_failure(job, queue, execution, exc_info)), "failing a job"
            )
            if failed_for_good:
                self.redis_waiter.call(lambda: self._write_dead_letters(queue, [job.id]), "writing dead letters")
            return
        for job in jobs:
            job, execution = running.pop(job.id)
            self.redis_waiter.call(
                lambda job=job, execution=execution: self._finish(
                    job, execution, lambda: self._finalize_success(job, queue, execution, outcome)
                ),
                "finishing a job",
            )

    def _score_frames_alone(self, job: Job) -> None:
        """On a job's last attempt, score each of its frames on its own, so that only the frames that
        fail alone get dead-letter rows (a row, once written, is kept by `record_dead_letters`)."""
        entries = job_frame_entries(job) or []
        if len(entries) < 2:
            return
        for entry in entries:
            try:
                score_batch(current_context(), {"frames": [entry]})
            except OutageInterrupted:
                raise
            except Exception as error:  # noqa: BLE001 - this frame's dead letter says why
                logger.warning("job %s: a frame fails on its own too (%s)", job.id, error)

    def _finish(self, job: Job, execution: Execution, finalize: Callable[[], None]) -> None:
        """Record the end of `job` in rq (`finalize`), unless Redis forgot the job meanwhile (a restart
        without persistence): its rows are written, and nothing is left to finish. Nothing is
        finished once the watchdog gave the batch up: it failed the jobs, and the process restarts."""
        if self._given_up:
            return
        if not self.connection.exists(job.key):
            self.executions.pop(execution.id, None)
            logger.info("job %s was forgotten by Redis while it ran; its frames are recorded", job.id)
            return
        # A dead worker's execution may have outlived its lease by up to a second when this job
        # started (rq rounds registry scores down to whole seconds); it is gone by now.
        self._forget_dead_executions(job)
        finalize()

    def _take_waiting_jobs(self, job: Job, queue: Queue) -> tuple[list[Job], list[Job]]:
        """Jobs taken from the queue to run with `job`: (those whose frames fit in batch_size beside
        its frames, the one that did not fit and ended the search, if any; it runs on its own here).
        Foreign jobs met on the way are refused."""
        head = job_frame_entries(job)
        frames = None if head is None else len(head)
        joined: list[Job] = []
        while frames is not None and frames < self.batch_size:
            result = self.queue_class.dequeue_any(
                [queue], None, connection=self.connection, job_class=self.job_class,
                serializer=self.serializer, death_penalty_class=self.death_penalty_class,
            )
            if result is None:
                break
            taken = result[0]
            reason = foreign_job_reason(taken)
            if reason is not None:
                self._refuse(taken, queue, reason)
                continue
            entries = job_frame_entries(taken)
            if entries is None or frames + len(entries) > self.batch_size:
                return joined, [taken]
            joined.append(taken)
            frames += len(entries)
        return joined, []

    def _refuse(self, job: Job, queue: Queue, reason: str) -> None:
        """Delete a job that is not ours, without running or resolving anything it names; count it."""
        try:
            function = job.func_name
        except Exception:  # noqa: BLE001 - undecodable data: named as such
            function = "<undecodable>"
        logger.error("refused job %s from queue %r: %s; deleted without running it", job.id, queue.name, reason)
        with self.connection.pipeline() as pipe:
            pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            job.delete(pipeline=pipe)
            count_refused_job(pipe, shown_function_name(function))
            pipe.execute()
        self.refused_jobs += 1

    def _hand_back(self, jobs: list[Job], queue: Queue, running: dict[str, tuple[Job, Execution]]) -> None:
        """Put unfinished jobs back at the front of the queue, no retry spent: the worker was asked
        to stop while it waited out an outage. Left to their leases when Redis itself is away."""
        if not jobs:
            return
        try:
            with self.connection.pipeline() as pipe:
                for job in jobs:
                    self.cleanup_execution(job, pipeline=pipe, execution=running[job.id][1])
                    queue.enqueue_job(job, pipeline=pipe, at_front=True)
                pipe.execute()
            logger.warning("stopping during an outage: handed %d jobs back to the queue", len(jobs))
        except Exception as error:
            if not is_redis_outage(error):
                raise
            logger.warning("stopping during a Redis outage: %d jobs go back to the queue when their leases run out", len(jobs))

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
                    except Exception as error:  # noqa: BLE001 - the next renewal may succeed
                        if is_redis_outage(error):
                            self.redis_waiter.failed(error, "renewing leases")
                        else:
                            logger.warning("could not renew the lease of job %s: %s", job.id, error)
                        break
                else:
                    self.redis_waiter.succeeded()

        renewer = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
