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

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wire.protocol import DEFAULT_QUEUE_NAME
from wire.verdicts import DEFAULT_TOPIC_PREFIX, check_topic_prefix
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
    "frame_root": "LINEGUARD_FRAME_ROOT",
    "mqtt_url": "LINEGUARD_MQTT_URL",
    "mqtt_topic_prefix": "LINEGUARD_MQTT_PREFIX",
    "webhook_url": "LINEGUARD_WEBHOOK_URL",
    "webhook_secret": "LINEGUARD_WEBHOOK_SECRET",
}
#: URL schemes of the MQTT broker: plain TCP and TLS.
MQTT_SCHEMES = ("mqtt", "mqtts")


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
    frame_root: str | None = Field(
        None,
        description=(
            "folder on storage the workers share inside which they read frames sent by reference "
            "(`ingest folder --by-reference`), at most max_file_mb each; unset: they read none (LINEGUARD_FRAME_ROOT)"
        ),
    )

    mqtt_url: str | None = Field(
        None, description="broker that verdicts and alarms go to: mqtt://[user:pass@]host:1883, mqtts:// for TLS (LINEGUARD_MQTT_URL)"
    )
    mqtt_topic_prefix: str = Field(
        DEFAULT_TOPIC_PREFIX, description="first level of the verdict and alarm topics (LINEGUARD_MQTT_PREFIX)"
    )
    webhook_url: str | None = Field(
        None, description="http(s) address that every verdict and alarm is POSTed to (LINEGUARD_WEBHOOK_URL)"
    )
    webhook_secret: str | None = Field(
        None, min_length=16, description="key of the webhook body's HMAC-SHA256 signature (LINEGUARD_WEBHOOK_SECRET)"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url_names_a_broker(cls, url: str | None) -> str | None:
        if url is not None and (urlsplit(url).scheme not in MQTT_SCHEMES or not urlsplit(url).hostname):
            raise ValueError(f"LINEGUARD_MQTT_URL {url!r} must look like mqtt://[user:pass@]host[:1883] or mqtts://...")
        return url

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _prefix_can_start_a_topic(cls, prefix: str) -> str:
        return check_topic_prefix(prefix)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_http(cls, url: str | None) -> str | None:
        if url is not None and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ValueError(f"LINEGUARD_WEBHOOK_URL {url!r} must be an http:// or https:// address")
        return url

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("LINEGUARD_WEBHOOK_URL needs LINEGUARD_WEBHOOK_SECRET (16 characters or more) to sign what it sends")
        return self

    @property
    def outbox_sinks(self) -> tuple[str, ...]:
        """The configured sinks of verdicts and alarms (store.schema.OUTBOX_SINKS); empty: none leave lineguard."""
        return tuple(sink for sink, url in (("mqtt", self.mqtt_url), ("webhook", self.webhook_url)) if url)

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
