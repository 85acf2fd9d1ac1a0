"""One run of a source, as the explicit cycle the folder and the video source share.

Every frame goes through the same four steps: **claim** (a folder claims the file in the store under
a new frame id; a camera gives the frame its next sequence number), **read** (the file's bytes; the
grabbed frame, encoded once), **publish** (into the publisher's batch; the source's ledger hears of
it just before the batch goes to Redis) and **settle** (a reconciliation pass finds the frame's row,
or finds the frame lost: a folder publishes it again, a camera counts it). The sources do the first
three; `SourceRun` holds what a run needs around them:

- the run's stop event and its outage waiters (Redis, the database), which a stop ends;
- the ledger, kept by the publisher while the run lasts;
- the reconciliation passes: at the start, every `reconcile_interval_s` (`reconcile_if_due`) and at
  the end of a run that was not stopped;
- the end: the last batch flushed, or, when a stop comes while the queue is full, the unsent frames
  handed to the source (`on_unsent`) to account for; then a "stopped" (or "error") source event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine

from ingest.errors import PublishInterrupted
from ingest.frames import Frame
from ingest.ledgers import Waiters
from ingest.publisher import BatchLedger, Publisher
from store.db import is_database_outage
from store.records import record_source_event
from wire.connections import OutageWaiter, is_redis_outage

logger = logging.getLogger(__name__)


class SourceRun:
    """What one run of one source shares around its claim-read-publish-settle cycle."""

    def __init__(
        self,
        engine: Engine,
        line: str,
        camera: str,
        source: str,
        *,
        stop_event: threading.Event | None,
        reconcile_interval_s: float,
    ) -> None:
        self.stop = stop_event if stop_event is not None else threading.Event()
        """Set to end the run (SIGINT/SIGTERM in the CLI); every wait of the run watches it."""
        self.waiters = Waiters(
            redis=OutageWaiter("Redis", is_redis_outage, should_stop=self.stop.is_set),
            database=OutageWaiter("the database", is_database_outage, should_stop=self.stop.is_set),
        )
        self._engine = engine
        self._line = line
        self._camera = camera
        self._source = source
        self._reconcile_interval_s = reconcile_interval_s
        self._reconcile: Callable[[], None] = lambda: None
        self._reconciled_at = time.monotonic()

    @property
    def stopped(self) -> bool:
        """Whether a stop was asked for."""
        return self.stop.is_set()

    def record(self, kind: str, message: str) -> None:
        """Record a source event in the store (waiting for the database if it is away)."""
        self.waiters.database.call(
            lambda: record_source_event(self._engine, self._line, self._camera, self._source, kind, message),
            f"recording a source event ({kind})",
        )

    @contextmanager
    def running(
        self,
        publisher: Publisher,
        ledger: BatchLedger,
        *,
        reconcile: Callable[[], None],
        started: str,
        summary: Callable[[], str],
        on_unsent: Callable[[Sequence[Frame]], None],
    ) -> Iterator[None]:
        """Run the block as the source's cycle: "started" recorded, a first reconciliation pass, the
        ledger kept; then the last batch flushed and a last pass (unless stopped), "stopped" recorded
        with `summary()`. A stop at a full queue (PublishInterrupted) ends the run normally, the
        unsent frames given to `on_unsent`; any other error is recorded as the run's end and raised."""
        self.record("started", started)
        self._reconcile = reconcile
        try:
            with publisher.keeping(ledger, self.stop):
                self.reconcile_now()
                try:
                    yield
                    publisher.close()
                    if not self.stopped:
                        self.reconcile_now()
                        publisher.close()
                except PublishInterrupted as interrupted:
                    if not self.stopped:
                        raise
                    logger.warning("%s: %s", self._source, interrupted)
                    on_unsent(publisher.take_unsent())
        except Exception as error:
            self.record("error", f"stopped by {type(error).__name__}: {error}")
            raise
        self.record("stopped", summary())
        logger.info("%s: %s", self._source, summary())

    def reconcile_now(self) -> None:
        """One reconciliation pass (the source's `reconcile`)."""
        self._reconcile()
        self._reconciled_at = time.monotonic()

    def reconcile_if_due(self) -> None:
        """A reconciliation pass if the last one is `reconcile_interval_s` old."""
        if time.monotonic() - self._reconciled_at >= self._reconcile_interval_s:
            self.reconcile_now()
