"""Exceptions raised by the store.

Every error the store raises on purpose derives from :class:`StoreError`, so a caller can catch the
store's failures in one place while transient database errors (``sqlalchemy.exc.OperationalError``)
still propagate as themselves for the caller's retry logic.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error raised by the store on purpose."""


class InvalidArgumentError(StoreError, ValueError):
    """An argument is outside what the store accepts (unknown verdict, naive datetime, bad limit...)."""


class InvalidRecordError(InvalidArgumentError):
    """A row to be written breaks a rule of the schema (bad verdict, naive datetime, NULL column...)."""


class UnknownModelError(StoreError, LookupError):
    """A model version that is not registered in the ``models`` table."""


class UnknownInspectionError(StoreError, LookupError):
    """An inspection id that has no row in the ``inspections`` table."""


class ArtifactError(StoreError):
    """An artifact key or storage URL is invalid, or the artifact cannot be read or written."""


class ArtifactNotFoundError(ArtifactError, LookupError):
    """No artifact is stored under the requested key."""
