"""The outbox: verdicts and alarms on their way to MQTT and the webhook (see store.outbox).

Revision ID: 0003_outbox
Revises: 0002_ledgers_and_origin
Created: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outbox"
down_revision: str | None = "0002_ledgers_and_origin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(1024), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mqtt_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_mqtt_sent_at_id", "outbox", ["mqtt_sent_at", "id"])
    op.create_index("ix_outbox_webhook_sent_at_id", "outbox", ["webhook_sent_at", "id"])
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])


def downgrade() -> None:
    for index in ("ix_outbox_created_at", "ix_outbox_webhook_sent_at_id", "ix_outbox_mqtt_sent_at_id"):
        op.drop_index(index, table_name="outbox")
    op.drop_table("outbox")
