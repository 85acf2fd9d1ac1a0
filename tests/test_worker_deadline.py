"""The batch deadline: from a batch's size and the worker's measured speed, or fixed; the watchdog
that calls it overdue, except while an outage is waited out. (The worker giving a batch back and
restarting: test_worker_process.)"""

from __future__ import annotations

import threading
import time

import pytest

from worker.deadline import DEADLINE_FACTOR, DEADLINE_FLOOR_S, SPEED_WEIGHT, BatchDeadline, watched


def test_the_deadline_grows_with_the_batch_and_the_measured_seconds_per_frame() -> None:
    deadline = BatchDeadline()
    assert deadline.seconds_for(32) == DEADLINE_FLOOR_S  # nothing measured yet
    deadline.measured(32, 32 * 4.0)  # 4 s a frame
    assert deadline.seconds_for(32) == DEADLINE_FACTOR * 32 * 4.0
    assert deadline.seconds_for(1) == DEADLINE_FLOOR_S  # never under the floor
    deadline.measured(10, 10 * 9.0)  # a slower batch moves the average by its weight
    assert deadline.seconds_per_frame == pytest.approx((1 - SPEED_WEIGHT) * 4.0 + SPEED_WEIGHT * 9.0)
    deadline.measured(0, 5.0)  # a batch without frames says nothing about speed
    assert deadline.seconds_per_frame == pytest.approx(5.0)


def test_a_fixed_deadline_holds_for_every_batch_and_must_be_positive() -> None:
    deadline = BatchDeadline(fixed_s=2.5)
    deadline.measured(8, 800.0)
    assert deadline.seconds_for(1) == deadline.seconds_for(1000) == 2.5
    with pytest.raises(ValueError, match="must be > 0"):
        BatchDeadline(fixed_s=0)


def test_the_watchdog_calls_a_batch_overdue_only_past_its_deadline_and_not_during_an_outage() -> None:
    overdue = threading.Event()
    with watched(0.05, overdue.set, excused=lambda: False):
        assert overdue.wait(5)

    overdue.clear()
    with watched(5, overdue.set, excused=lambda: False):
        pass  # done in time
    assert not overdue.wait(0.2)

    in_outage = threading.Event()
    in_outage.set()
    with watched(0.05, overdue.set, excused=in_outage.is_set):
        time.sleep(0.3)  # several deadlines pass while the outage lasts
        assert not overdue.is_set()
        in_outage.clear()
        assert overdue.wait(5)
