"""Stopping long-running commands cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT (Ctrl-C) or SIGTERM sets while the block runs; the previous handlers come back after.

    A command polls the event and winds down itself (flushing what it buffered, stopping what it
    started) instead of being torn down by KeyboardInterrupt wherever it happens to be.
    Call from the main thread.
    """
    stop = threading.Event()

    def request_stop(_number: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, while the block runs.

    For steps that cannot watch an event (training a model, say): either signal unwinds the stack,
    so the cleanup of what was started so far runs. Call from the main thread.
    """
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
