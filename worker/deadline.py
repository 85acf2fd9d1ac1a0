"""The batch deadline: how long a worker may take over a batch before it gives the batch up.

A batch that hangs (a stuck decode, a hung GPU) would hold its frames for ever: the lease renewer
is a thread of its own and goes on renewing while the scoring thread hangs. So each batch gets a
deadline, from its number of frames and the worker's measured seconds per frame (`DEADLINE_FACTOR`
times the expected time, never under `DEADLINE_FLOOR_S`), or a fixed one (`--batch-deadline`).
Past it a watchdog thread gives the batch's jobs back to rq with the reason (a retry spent, as for
any failure, so that a frame that hangs every time ends as a dead letter) and restarts the worker
process: a hung thread cannot be stopped from Python, a process can start afresh (`restart_process`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: The shortest automatic deadline, in seconds: room for loading a model and a slow first batch (32
#: frames of 64 MP took over 120 s to decode on a busy 2-core CPU).
DEADLINE_FLOOR_S = 600.0
#: An automatic deadline is this many times the time a batch is expected to take.
DEADLINE_FACTOR = 10.0
#: Weight of the newest batch in the measured seconds per frame (an exponential moving average).
SPEED_WEIGHT = 0.2


class BatchDeadline:
    """The deadline of a worker's batches: fixed, or from the measured seconds per frame."""

    def __init__(self, fixed_s: float | None = None) -> None:
        """`fixed_s`: every batch's deadline in seconds; None derives it from the measured speed."""
        if fixed_s is not None and fixed_s <= 0:
            raise ValueError(f"a fixed deadline must be > 0 seconds, got {fixed_s}")
        self.fixed_s = fixed_s
        self.seconds_per_frame: float | None = None
        """Measured over the batches scored so far; None before the first."""

    def seconds_for(self, frames: int) -> float:
        """The deadline of a batch of `frames` frames."""
        if self.fixed_s is not None:
            return self.fixed_s
        if self.seconds_per_frame is None:
            return DEADLINE_FLOOR_S
        return max(DEADLINE_FLOOR_S, DEADLINE_FACTOR * frames * self.seconds_per_frame)

    def measured(self, frames: int, seconds: float) -> None:
        """Take in the time a batch of `frames` frames took."""
        if frames < 1:
            return
        speed = seconds / frames
        previous = self.seconds_per_frame
        self.seconds_per_frame = speed if previous is None else (1 - SPEED_WEIGHT) * previous + SPEED_WEIGHT * speed


@contextmanager
def watched(seconds: float, on_overdue: Callable[[], None], excused: Callable[[], bool]) -> Iterator[None]:
    """Call `on_overdue` from a watchdog thread if the block still runs after `seconds`; while
    `excused()` holds (an outage being waited out: not the batch's fault) the deadline moves on."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(seconds):
            if not excused():
                on_overdue()
                return

    watchdog = threading.Thread(target=watch, name="batch-deadline", daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()


def restart_process() -> None:
    """Replace this process with a fresh run of the same command line (same pid, new interpreter)."""
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
