"""Ledgers that outlive Redis, and the frame's origin in its row.

- ``inspections.origin``: where a person finds the part.
- ``ingested_files``: the frame id each file was claimed under, and when and how the claim settled.
  Claims made before this revision carry no frame id and cannot be reconciled; they are settled as
  "unknown".
- ``stream_frames``: every frame a video or camera source sent, with the camera's sequence number.

Revision ID: 0002_ledgers_and_origin
Revises: 0001
Created: 2025-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_ledgers_and_origin"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the id type in store/schema.py as of this revision.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("inspections") as inspections:
        inspections.add_column(sa.Column("origin", sa.String(1024), nullable=True))

    with op.batch_alter_table("ingested_files") as files:
        files.add_column(sa.Column("frame_id", sa.String(64), nullable=True))
        files.add_column(sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
        files.add_column(sa.Column("outcome", sa.String(16), nullable=True))
        files.create_check_constraint(
            "ck_ingested_files_outcome", "outcome IN ('recorded', 'dropped', 'vanished', 'unknown')"
        )
        files.create_index("ix_ingested_files_source_key_settled_at", ["source_key", "settled_at"])
    op.execute("UPDATE ingested_files SET settled_at = ingested_at, outcome = 'unknown'")

    op.create_table(
        "stream_frames",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("frame_id", sa.String(64), nullable=False),
        sa.Column("line", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("source", sa.String(1024), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_stream_frames"),
        sa.UniqueConstraint("frame_id", name="uq_stream_frames_frame_id"),
    )
    op.create_index("ix_stream_frames_line_camera_settled_at", "stream_frames", ["line", "camera", "settled_at"])
    op.create_index("ix_stream_frames_line_camera_sequence", "stream_frames", ["line", "camera", "sequence"])
    op.create_index("ix_stream_frames_lost_at", "stream_frames", ["lost_at"])


def downgrade() -> None:
    for index in (
        "ix_stream_frames_lost_at",
        "ix_stream_frames_line_camera_sequence",
        "ix_stream_frames_line_camera_settled_at",
    ):
        op.drop_index(index, table_name="stream_frames")
    op.drop_table("stream_frames")
    with op.batch_alter_table("ingested_files") as files:
        files.drop_index("ix_ingested_files_source_key_settled_at")
        files.drop_constraint("ck_ingested_files_outcome", type_="check")
        files.drop_column("outcome")
        files.drop_column("settled_at")
        files.drop_column("frame_id")
    with op.batch_alter_table("inspections") as inspections:
        inspections.drop_column("origin")
