"""Review history: every saved review, the latest of which stays in ``reviews`` (see store.reviews).

Revision ID: 0004_review_history
Revises: 0003_outbox
Created: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_review_history"
down_revision: str | None = "0003_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "review_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("inspection_id", BIG_ID, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("verdict IN ('confirmed', 'false_alarm')", name="ck_review_history_verdict"),
        sa.ForeignKeyConstraint(
            ["inspection_id"], ["inspections.id"], name="fk_review_history_inspection_id_inspections", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_review_history"),
    )
    op.create_index("ix_review_history_inspection_id_reviewed_at", "review_history", ["inspection_id", "reviewed_at"])
    # The reviews saved before this revision start the history.
    op.execute(
        "INSERT INTO review_history (inspection_id, verdict, note, reviewer, reviewed_at) "
        "SELECT inspection_id, verdict, note, reviewer, reviewed_at FROM reviews ORDER BY reviewed_at, id"
    )


def downgrade() -> None:
    op.drop_index("ix_review_history_inspection_id_reviewed_at", table_name="review_history")
    op.drop_table("review_history")
