"""Errors raised by the ingest package (sources and publisher)."""


class IngestError(Exception):
    """Base class of every error raised by `ingest`."""


class SourceUnavailableError(IngestError):
    """A source could not be opened, or could not be reopened within its reconnect budget."""


class QueueFullError(IngestError):
    """The queue stayed full for longer than the publisher's block timeout."""
