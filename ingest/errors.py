"""Errors raised by the ingest package (sources and publisher)."""

from pathlib import Path


class IngestError(Exception):
    """Base class of every error raised by `ingest`."""


class SourceUnavailableError(IngestError):
    """A source could not be opened, or could not be reopened within its reconnect budget."""


class QueueFullError(IngestError):
    """The queue stayed full for longer than the publisher's block timeout."""


class PublishInterrupted(IngestError):
    """A stop was asked for while the publisher waited for room in a full queue; the unsent frames
    stay in its buffer for their source to account for (`Publisher.take_unsent`)."""


class FileSkippedError(IngestError):
    """A file of a watched folder that is not taken: ``reason`` says why in one word (see
    ingest.file_checks), the message names the file and says why in full."""

    def __init__(self, reason: str, path: Path, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.reason = reason
        self.path = path
