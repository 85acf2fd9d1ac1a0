"""SQL tables of the store: one declarative class per table.

The schema itself changes only through the Alembic migrations in ``store/migrations/versions``;
``tests/test_store_db.py`` checks that the migrated database matches these classes. The indexes
serve the dashboard's pages on a million inspection rows (see ``Inspection``; timed with
``bench/dashboard.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    column,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON, TypeDecorator

from store.errors import InvalidRecordError

#: Verdicts a worker gives a frame: scored below threshold, at or above it, or not scorable.
VERDICTS: tuple[str, ...] = ("good", "defect", "error")
#: The verdict of a flagged frame, the one the review queue holds.
FLAGGED_VERDICT = "defect"
#: The verdict of a frame that could not be scored; its row carries the reason in ``error``.
ERROR_VERDICT = "error"
#: Verdicts a reviewer gives a flagged frame.
REVIEW_VERDICTS: tuple[str, ...] = ("confirmed", "false_alarm")
#: The review verdict that counts a flag as right when computing precision.
CONFIRMED_REVIEW = "confirmed"

# Deterministic constraint names, so migrations can refer to them on both dialects.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC.

    PostgreSQL keeps it as ``timestamptz``; SQLite has no timezone, so the UTC wall time is stored
    naive (SQLAlchemy's fixed-width text format, which sorts in time order) and made aware again on
    read. Naive datetimes are refused: their meaning depends on the writer's clock settings.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRecordError(f"datetime {value.isoformat()} has no timezone; give an aware UTC time")
        in_utc = value.astimezone(UTC)
        return in_utc.replace(tzinfo=None) if dialect.name == "sqlite" else in_utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: JSON documents (recipes, metrics, calibration); binary JSONB on PostgreSQL.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite needs exactly INTEGER for an auto-incrementing rowid key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base holding the store's metadata."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONDocument}


class Inspection(Base):
    """One scored (or unscorable) frame; written idempotently by ``frame_id``."""

    __tablename__ = "inspections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[str] = mapped_column(String(64), unique=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(1024))
    captured_at: Mapped[datetime]
    enqueued_at: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    # Not a foreign key: a worker may score with a checkpoint that was never registered.
    model_version: Mapped[str | None] = mapped_column(String(128))
    score: Mapped[float | None] = mapped_column(Float)  # normalised, 0.5 at the threshold
    raw_score: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)  # on the raw score's scale
    verdict: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    image_key: Mapped[str | None] = mapped_column(String(512))
    heatmap_key: Mapped[str | None] = mapped_column(String(512))
    worker: Mapped[str | None] = mapped_column(String(128))
    random_teacher: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Where a person finds the part: the file's path inside its folder, a stream's frame position.
    origin: Mapped[str | None] = mapped_column(String(1024))

    __table_args__ = (
        CheckConstraint(column("verdict").in_(VERDICTS), name="verdict"),
        # Windows over all lines (counts, trends, exports): covering, so SQLite never reads the table.
        Index(
            "ix_inspections_finished_line_camera_verdict_captured",
            "finished_at",
            "line",
            "camera",
            "verdict",
            "captured_at",
        ),
        # The same for one line or camera, and all-time counts per line (scanned in line order).
        Index(
            "ix_inspections_line_camera_finished_verdict_captured",
            "line",
            "camera",
            "finished_at",
            "verdict",
            "captured_at",
        ),
        # The review queue and defects over time without filters, newest first.
        Index("ix_inspections_verdict_finished", "verdict", "finished_at"),
        # The review queue filtered by line (and camera), newest first; flag precision per line.
        Index("ix_inspections_verdict_line_camera_finished", "verdict", "line", "camera", "finished_at"),
    )


class Model(Base):
    """A trained model known to the store, with what is needed to judge and reproduce it."""

    __tablename__ = "models"

    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    checkpoint_path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime]
    recipe: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any] | None]
    calibration: Mapped[dict[str, Any]]
    teacher_source: Mapped[str] = mapped_column(String(256))
    random_teacher: Mapped[bool] = mapped_column(Boolean)
    training_data: Mapped[dict[str, Any]]


class LineModel(Base):
    """The model a line scores with now; workers follow changes without a restart."""

    __tablename__ = "line_models"

    line: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), ForeignKey("models.version", ondelete="RESTRICT"))
    activated_at: Mapped[datetime]


class ModelActivation(Base):
    """One change of a line's model, kept for good: which version, from which, by whom, when and why."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(128))
    # The version the line scored with before; None for a line's first model.
    previous_version: Mapped[str | None] = mapped_column(String(128))
    activated_by: Mapped[str] = mapped_column(String(128))
    activated_at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_model_activations_line_activated_at", "line", "activated_at"),)


class Review(Base):
    """A person's judgement of a flagged inspection; one per inspection, a re-review replaces it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inspections.id", ondelete="CASCADE"), unique=True
    )
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[datetime]

    __table_args__ = (CheckConstraint(column("verdict").in_(REVIEW_VERDICTS), name="verdict"),)


class ReviewHistory(Base):
    """Every review ever saved, oldest first: ``reviews`` holds the latest per inspection, this the
    trail (who changed their mind, when), so that a re-review replaces a verdict without losing it."""

    __tablename__ = "review_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    inspection_id: Mapped[int] = mapped_column(BigId, ForeignKey("inspections.id", ondelete="CASCADE"))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(128))
    reviewed_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint(column("verdict").in_(REVIEW_VERDICTS), name="verdict"),
        Index("ix_review_history_inspection_id_reviewed_at", "inspection_id", "reviewed_at"),
    )


class SourceEvent(Base):
    """Something that happened to a source (connected, lost, stopped...), for the health page."""

    __tablename__ = "source_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str | None] = mapped_column(Text)


#: What settled a folder ledger entry: its row exists, it was dropped at a full queue, its file
#: vanished before it could be published again, or it was claimed before the ledger kept frame ids.
LEDGER_OUTCOMES: tuple[str, ...] = ("recorded", "dropped", "vanished", "unknown")


class IngestedFile(Base):
    """The folder watcher's ledger: each version of a file (its path, size and mtime) is claimed once,
    under one frame id; a file rewritten at its path is a new version, claimed again.

    A claim stays unsettled (``settled_at`` NULL) until its inspection row exists; an unsettled claim
    whose frame is neither in Redis nor in the store was lost and is published again.
    """

    __tablename__ = "ingested_files"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_key: Mapped[str] = mapped_column(String(256))
    path: Mapped[str] = mapped_column(String(2048))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime: Mapped[float] = mapped_column(Float)
    ingested_at: Mapped[datetime]
    frame_id: Mapped[str | None] = mapped_column(String(64))
    settled_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("source_key", "path", "size", "mtime"),
        CheckConstraint(column("outcome").in_(LEDGER_OUTCOMES), name="outcome"),
        # The unsettled claims of one folder and camera, read by every reconciliation pass.
        Index("ix_ingested_files_source_key_settled_at", "source_key", "settled_at"),
    )


class StreamFrame(Base):
    """The stream ledger: every frame a video or camera source sent, by the camera's sequence number.

    Written just before the frame's batch goes to Redis; settled once its inspection row exists, or
    marked lost (``lost_at``) when neither Redis nor the store has it any more.
    """

    __tablename__ = "stream_frames"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    frame_id: Mapped[str] = mapped_column(String(64), unique=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(1024))
    sequence: Mapped[int] = mapped_column(BigInteger)
    published_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    lost_at: Mapped[datetime | None]

    __table_args__ = (
        # Unsettled frames of one camera (every pass) and its last sequence number (every start).
        Index("ix_stream_frames_line_camera_settled_at", "line", "camera", "settled_at"),
        Index("ix_stream_frames_line_camera_sequence", "line", "camera", "sequence"),
        # Lost frames, counted by status and the dashboard.
        Index("ix_stream_frames_lost_at", "lost_at"),
    )


#: Where the relay sends outbox messages; each has its own "sent" column in ``outbox``.
OUTBOX_SINKS: tuple[str, ...] = ("mqtt", "webhook")


class OutboxMessage(Base):
    """A verdict or alarm on its way to the line: written in the transaction that records it, sent by
    the relay (``lineguard relay``) in id order, marked sent per sink once the sink acknowledged it.

    Sent messages are kept for a while (see store.outbox) so that a job run again after its worker
    died cannot queue the same verdict twice: ``key`` is unique.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(512), unique=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    mqtt_sent_at: Mapped[datetime | None]
    webhook_sent_at: Mapped[datetime | None]

    __table_args__ = (
        # Each sink reads its unsent messages in id order.
        Index("ix_outbox_mqtt_sent_at_id", "mqtt_sent_at", "id"),
        Index("ix_outbox_webhook_sent_at_id", "webhook_sent_at", "id"),
        Index("ix_outbox_created_at", "created_at"),
    )


class Alarm(Base):
    """A drift alarm of one line and camera: raised ``since`` for ``reason``, open until ``cleared_at``.

    ``open_key`` ("<line>/<camera>/<kind>") is set while the alarm is open and unique, so that several
    workers noticing the same shift raise one alarm; it is emptied when the alarm clears.
    """

    __tablename__ = "alarms"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    line: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    since: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    cleared_at: Mapped[datetime | None]
    open_key: Mapped[str | None] = mapped_column(String(320), unique=True)
