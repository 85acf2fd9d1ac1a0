"""Where a line's shared services are (Redis, the database, the artifact storage, the queue name),
and the limit every folder ingester of the line applies to files.

Every process of a line (ingesters, workers, the dashboard, the CLI) reads the same environment
variables, so pointing them at the same Redis and database is all it takes to scale out across
machines. The variables are read when a command runs (`Settings.from_environment`), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wire.protocol import DEFAULT_QUEUE_NAME
from store.artifacts import DEFAULT_ARTIFACT_URL
from store.db import DEFAULT_DATABASE_URL

#: Redis used when REDIS_URL is not set: the local server's database 0.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: URL schemes redis-py connects with.
REDIS_SCHEMES = ("redis", "rediss", "unix")

#: Setting name -> environment variable it is read from.
ENVIRONMENT_VARIABLES: dict[str, str] = {
    "redis_url": "REDIS_URL",
    "database_url": "DATABASE_URL",
    "artifacts_url": "LINEGUARD_ARTIFACTS",
    "queue_name": "LINEGUARD_QUEUE",
    "max_file_mb": "LINEGUARD_MAX_FILE_MB",
}


class Settings(BaseModel):
    """The shared services of one line installation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = Field(DEFAULT_REDIS_URL, description="Redis holding the queue and the frame bytes (REDIS_URL)")
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy URL of the store: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (DATABASE_URL)",
    )
    artifacts_url: str = Field(
        DEFAULT_ARTIFACT_URL,
        description="where images and heatmaps of flagged frames go: a folder or file:///abs/path (LINEGUARD_ARTIFACTS)",
    )
    queue_name: str = Field(
        DEFAULT_QUEUE_NAME, min_length=1, max_length=128, description="rq queue ingesters fill and workers empty (LINEGUARD_QUEUE)"
    )
    max_file_mb: float | None = Field(
        None,
        gt=0,
        le=2**20,
        description=(
            "folder ingesters skip files larger than this many MiB without reading them; "
            "unset: ingest.file_checks.DEFAULT_MAX_FILE_BYTES, 64 MiB (LINEGUARD_MAX_FILE_MB)"
        ),
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_redis_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"REDIS_URL {url!r} must start with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
            )
        return url

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `environ` (default: the process environment); unset or empty variables keep defaults."""
        source = os.environ if environ is None else environ
        given = {name: source[variable] for name, variable in ENVIRONMENT_VARIABLES.items() if source.get(variable)}
        return cls(**given)

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables a child process (worker, dashboard) reads."""
        values = {variable: getattr(self, name) for name, variable in ENVIRONMENT_VARIABLES.items()}
        return {variable: str(value) for variable, value in values.items() if value is not None}

    @property
    def max_file_bytes(self) -> int:
        """The folder ingesters' size limit in bytes: `max_file_mb`, else ingest's default."""
        if self.max_file_mb is None:
            from ingest.file_checks import DEFAULT_MAX_FILE_BYTES  # ingest loads OpenCV: only when asked

            return DEFAULT_MAX_FILE_BYTES
        return int(self.max_file_mb * 2**20)
