"""The one record that workers write and the dashboard reads: SQL rows and image artifacts.

SQLite by default, PostgreSQL by URL; the schema is managed by the Alembic migrations in
``store/migrations`` and applied by :func:`upgrade`. The row API is gathered in ``store.records``.
"""

from store import records
from store.artifacts import ArtifactStore, FileArtifactStore, check_artifact_key, open_artifact_store
from store.db import (
    alembic_config,
    database_url,
    head_revision,
    make_engine,
    schema_revision,
    session_factory,
    upgrade,
    write_transaction,
)
from store.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    InvalidArgumentError,
    InvalidRecordError,
    StoreError,
    UnknownInspectionError,
    UnknownModelError,
)
from store.records import *  # noqa: F403  (the row API; its names are in records.__all__)
from store.schema import REVIEW_VERDICTS, VERDICTS

__all__ = [
    *records.__all__,
    "REVIEW_VERDICTS",
    "VERDICTS",
    "ArtifactError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "FileArtifactStore",
    "InvalidArgumentError",
    "InvalidRecordError",
    "StoreError",
    "UnknownInspectionError",
    "UnknownModelError",
    "alembic_config",
    "check_artifact_key",
    "database_url",
    "head_revision",
    "make_engine",
    "open_artifact_store",
    "schema_revision",
    "session_factory",
    "upgrade",
    "write_transaction",
]
