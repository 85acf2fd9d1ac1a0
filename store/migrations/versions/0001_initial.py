"""Initial schema: inspections, models, line_models, reviews, source_events, ingested_files.

Revision ID: 0001
Revises:
Created: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the types in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _moment(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("frame_id", sa.String(64), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        _moment("captured_at"),
        _moment("enqueued_at"),
        _moment("started_at"),
        _moment("finished_at"),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("raw_score", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("image_key", sa.String(512), nullable=True),
        sa.Column("heatmap_key", sa.String(512), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("random_teacher", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inspections"),
        sa.UniqueConstraint("frame_id", name="uq_inspections_frame_id"),
        sa.CheckConstraint("verdict IN ('good', 'defect', 'error')", name="ck_inspections_verdict"),
    )
    op.create_index(
        "ix_inspections_finished_line_camera_verdict_captured",
        "inspections",
        ["finished_at", "line", "camera", "verdict", "captured_at"],
    )
    op.create_index(
        "ix_inspections_line_camera_finished_verdict_captured",
        "inspections",
        ["line", "camera", "finished_at", "verdict", "captured_at"],
    )
    op.create_index("ix_inspections_verdict_finished", "inspections", ["verdict", "finished_at"])
    op.create_index(
        "ix_inspections_verdict_line_camera_finished", "inspections", ["verdict", "line", "camera", "finished_at"]
    )

    op.create_table(
        "models",
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("checkpoint_path", sa.String(1024), nullable=False),
        _moment("created_at"),
        sa.Column("recipe", JSON_DOCUMENT, nullable=False),
        sa.Column("metrics", JSON_DOCUMENT, nullable=True),
        sa.Column("calibration", JSON_DOCUMENT, nullable=False),
        sa.Column("teacher_source", sa.String(256), nullable=False),
        sa.Column("random_teacher", sa.Boolean(), nullable=False),
        sa.Column("training_data", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_models"),
    )

    op.create_table(
        "line_models",
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        _moment("activated_at"),
        sa.PrimaryKeyConstraint("line", name="pk_line_models"),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["models.version"],
            name="fk_line_models_model_version_models",
            ondelete="RESTRICT",
        ),
    )

    op.create_table(
        "reviews",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("inspection_id", BIG_ID, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        _moment("reviewed_at"),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
        sa.UniqueConstraint("inspection_id", name="uq_reviews_inspection_id"),
        sa.ForeignKeyConstraint(
            ["inspection_id"],
            ["inspections.id"],
            name="fk_reviews_inspection_id_inspections",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("verdict IN ('confirmed', 'false_alarm')", name="ck_reviews_verdict"),
    )

    op.create_table(
        "source_events",
        sa.Column("id", BIG_ID, nullable=False),
        _moment("at"),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_source_events"),
    )
    op.create_index("ix_source_events_at", "source_events", ["at"])

    op.create_table(
        "ingested_files",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source_key", sa.String(256), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", sa.Float(), nullable=False),
        _moment("ingested_at"),
        sa.PrimaryKeyConstraint("id", name="pk_ingested_files"),
        sa.UniqueConstraint("source_key", "path", name="uq_ingested_files_source_key_path"),
    )


def downgrade() -> None:
    op.drop_table("ingested_files")
    op.drop_index("ix_source_events_at", table_name="source_events")
    op.drop_table("source_events")
    op.drop_table("reviews")
    op.drop_table("line_models")
    op.drop_table("models")
    for index in (
        "ix_inspections_verdict_line_camera_finished",
        "ix_inspections_verdict_finished",
        "ix_inspections_line_camera_finished_verdict_captured",
        "ix_inspections_finished_line_camera_verdict_captured",
    ):
        op.drop_index(index, table_name="inspections")
    op.drop_table("inspections")
