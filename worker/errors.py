"""Errors raised by the worker package."""


class WorkerError(Exception):
    """Base class of every error the worker raises on purpose."""


class NoActiveModelError(WorkerError):
    """A frame's line has no active model in the store, so its frames cannot be scored."""


class ModelUnavailableError(WorkerError):
    """The active model of a line is registered but cannot be loaded on this worker."""


class NoWorkerContextError(WorkerError):
    """The job function ran outside a worker process that set up its context."""


class FrameReferenceError(WorkerError):
    """A frame sent by reference names no file this worker may read (or it is gone); the message says why."""
