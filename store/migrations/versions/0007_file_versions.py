"""A file rewritten at a path already ingested is ingested again.

``ingested_files`` was unique by (source_key, path): a file rewritten at a claimed path (new size or
mtime) counted as "already ingested" forever. Each version of a file, (path, size, mtime), is now
claimed once.

Revision ID: 0007_file_versions
Revises: 0006_model_activations
Created: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007_file_versions"
down_revision: str | None = "0006_model_activations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ingested_files") as files:
        files.drop_constraint("uq_ingested_files_source_key_path", type_="unique")
        files.create_unique_constraint("uq_ingested_files_source_key_path_size_mtime", ["source_key", "path", "size", "mtime"])


def downgrade() -> None:
    # Keeps the newest claim of each path, as the older layout holds one claim per path.
    op.execute(
        "DELETE FROM ingested_files WHERE id NOT IN "
        "(SELECT MAX(id) FROM ingested_files GROUP BY source_key, path)"
    )
    with op.batch_alter_table("ingested_files") as files:
        files.drop_constraint("uq_ingested_files_source_key_path_size_mtime", type_="unique")
        files.create_unique_constraint("uq_ingested_files_source_key_path", ["source_key", "path"])
