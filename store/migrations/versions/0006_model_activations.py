"""Model activations: every change of a line's model, who made it and why (see store.registry).

Revision ID: 0006_model_activations
Revises: 0005_alarms
Created: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_model_activations"
down_revision: str | None = "0005_alarms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "model_activations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("activated_by", sa.String(128), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_model_activations"),
    )
    op.create_index("ix_model_activations_line_activated_at", "model_activations", ["line", "activated_at"])
    # Each line's model as of this revision starts its history (who chose it is not known).
    op.execute(
        "INSERT INTO model_activations (line, model_version, previous_version, activated_by, activated_at, reason) "
        "SELECT line, model_version, NULL, 'unknown', activated_at, 'active before activations were recorded' FROM line_models"
    )


def downgrade() -> None:
    op.drop_index("ix_model_activations_line_activated_at", table_name="model_activations")
    op.drop_table("model_activations")
