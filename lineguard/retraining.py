"""Retraining a line's model with what the line taught (`lineguard models retrain`).

The candidate trains on the original good images (the folder recorded in the active checkpoint, or
`--data` when it moved), plus the stored pictures of parts people reviewed as false alarms and a
sample of the line's passed parts (those whose picture the workers kept, one in 50 by default),
plus any `--extra` folders of good images. It is trained with the active model's recipe and
teacher, calibrated by training on held-out images of that mix, and registered, never activated:
`models compare` and a person's promotion come next.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from lineguard.registration import register_checkpoint
from model.images import list_images
from model.recipe import Recipe, TrainingSettings
from model.teacher import RANDOM_TEACHER
from model.training import TrainingResult, good_image_folder, train
from store.artifacts import ArtifactStore, key_part
from store.errors import ArtifactError
from store.records import ModelInfo, scored_parts
from store.schema import FLAGGED_VERDICT

log = logging.getLogger(__name__)

#: Most of the line's passed parts added to a retraining, the most recent first.
DEFAULT_PASSED_PARTS = 500
_FILE_TEACHER_PREFIX = "file:"


@dataclass(frozen=True)
class RetrainingData:
    """The folder a retraining trains on, and what is in it."""

    folder: Path
    original_folder: Path
    original_images: int
    false_alarms: int
    passed_parts: int
    extra_images: int


def default_candidate_path(base: ModelInfo, line: str) -> Path:
    """Where a candidate is written unless told: beside the active model's checkpoint, named by line and time."""
    return Path(base.checkpoint_path).with_name(f"retrained-{key_part(line)}-{datetime.now(UTC):%Y%m%d-%H%M%S}.pt")


def gather_training_data(
    engine: Engine,
    artifacts: ArtifactStore,
    base: ModelInfo,
    line: str,
    staging: Path,
    data: Path | None = None,
    extra: list[Path] | tuple[Path, ...] = (),
    passed_parts: int = DEFAULT_PASSED_PARTS,
) -> RetrainingData:
    """Fill `staging` (emptied first) with links to the good images of `base` (the line's model)
    and copies of the line's pictures. Raises ValueError when the original folder is gone and no
    `data` was given.
    """
    recorded = base.training_data.get("folder")
    original = Path(data) if data is not None else Path(recorded) if recorded else None
    if original is None or not original.is_dir():
        raise ValueError(
            f"the training folder of {base.version} ({recorded or 'not recorded'}) is not here; give it with --data DIR"
        )
    original, _ = good_image_folder(original)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    originals = _link_all(list_images(original), staging, "original")
    extras = sum(_link_all(list_images(Path(folder)), staging, f"extra{index}") for index, folder in enumerate(extra))
    parts = scored_parts(engine, line, None, with_image=True)
    false_alarms = [part for part in parts if part.review == "false_alarm"]
    passed = [part for part in parts if part.review is None and part.verdict != FLAGGED_VERDICT][-passed_parts:] if passed_parts else []
    copied = {"false_alarm": 0, "passed": 0}
    for kind, chosen in (("false_alarm", false_alarms), ("passed", passed)):
        for part in chosen:
            try:
                (staging / f"line-{kind}-{key_part(part.frame_id)}.jpg").write_bytes(artifacts.get(part.image_key))
                copied[kind] += 1
            except ArtifactError as error:  # pruned by retention meanwhile: one part less, said once
                log.warning("%s: its picture is gone (%s); trained without it", part.frame_id, error)
    return RetrainingData(staging, original, originals, copied["false_alarm"], copied["passed"], extras)


def retrain(
    engine: Engine,
    base: ModelInfo,
    data: RetrainingData,
    out: Path,
    settings: TrainingSettings,
    progress: bool = False,
) -> TrainingResult:
    """Train a candidate on `data` with `base`'s recipe and teacher; register it (not active)."""
    recipe = Recipe.model_validate({**base.recipe, "input_shape": None})
    result = train(data.folder, out, recipe, settings, teacher_spec(base), progress=progress)
    register_checkpoint(engine, out)
    return result


def teacher_spec(base: ModelInfo) -> str | None:
    """The teacher `base` was trained with, as `train` takes it: its weights file, "random", or None
    (torchvision's ImageNet weights, found as for any training)."""
    if base.random_teacher:
        return RANDOM_TEACHER
    if base.teacher_source.startswith(_FILE_TEACHER_PREFIX):
        return base.teacher_source[len(_FILE_TEACHER_PREFIX) :]
    return None


def _link_all(paths: list[Path], staging: Path, prefix: str) -> int:
    for index, path in enumerate(paths):
        (staging / f"{prefix}-{index:06d}{path.suffix.lower()}").symlink_to(path.resolve())
    return len(paths)
