"""Putting a trained checkpoint into the store, where workers and the dashboard find it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from model.checkpoint import read_checkpoint
from model.export import is_export, read_export
from store.records import activate_model, register_model
from store.registry import UNKNOWN_ACTOR


def register_checkpoint(
    engine: Engine, checkpoint: Path, activate_on_line: str | None = None, *, by: str = UNKNOWN_ACTOR, reason: str | None = None
) -> dict[str, Any]:
    """Register the model in `checkpoint`, a checkpoint file or an export folder (and make it
    `activate_on_line`'s model, recorded as `by`'s activation for `reason`); returns its contents.
    Registering the same file twice updates the same version. An export is a version of its own
    (`<checkpoint version>-<format>-<precision>`)."""
    path = Path(checkpoint).expanduser().resolve()
    contents = read_export(path) if is_export(path) else read_checkpoint(path)
    register_model(
        engine,
        version=contents["version"],
        checkpoint_path=str(path),
        recipe=contents["recipe"],
        calibration=contents["calibration"],
        metrics=contents["metrics"],
        teacher_source=contents["teacher_source"],
        random_teacher=contents["random_teacher"],
        training_data=contents["training_data"],
    )
    if activate_on_line:
        activate_model(engine, activate_on_line, contents["version"], by=by, reason=reason)
    return contents
