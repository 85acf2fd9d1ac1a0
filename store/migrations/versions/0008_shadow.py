"""Shadow mode: the candidate each line also runs, and its verdicts kept apart (see store.shadow).

Revision ID: 0008_shadow
Revises: 0007_file_versions
Created: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_shadow"
down_revision: str | None = "0007_file_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "shadow_models",
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("line", name="pk_shadow_models"),
        sa.ForeignKeyConstraint(
            ["model_version"], ["models.version"], name="fk_shadow_models_model_version_models", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "shadow_results",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("frame_id", sa.String(64), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("raw_score", sa.Float(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("active_flagged", sa.Boolean(), nullable=False),
        sa.Column("image_key", sa.String(512), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_results"),
        sa.UniqueConstraint("frame_id", "model_version", name="uq_shadow_results_frame_id_model_version"),
    )
    op.create_index(
        "ix_shadow_results_line_model_version_scored_at", "shadow_results", ["line", "model_version", "scored_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_shadow_results_line_model_version_scored_at", table_name="shadow_results")
    op.drop_table("shadow_results")
    op.drop_table("shadow_models")
