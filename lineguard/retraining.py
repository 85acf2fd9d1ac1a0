"""Retraining a line's model with what the line taught (`lineguard models retrain`).

The candidate trains on the original good images (the folder recorded in the active checkpoint, or
`--data` when it moved), plus the stored pictures of parts people reviewed as false alarms and a
sample of the line's passed parts (those whose picture the workers kept, one in 50 by default),
plus any `--extra` folders of good images. It is trained with the active model's recipe and
teacher, and registered, never activated: `models compare` and a person's promotion come next.

Its threshold comes from the line, as `models recalibrate` sets one: a line's parts are not the
training folder's (other light, other batches), so held-out images of the folder would state a
false-reject rate the line does not see. Every other line picture (passed or false alarm, never a
confirmed defect) is kept out of training, and the candidate's raw scores on those, plus on the line
pictures the training held out itself, set the threshold at the active model's stated rate. The
false alarms are all kept while passed parts are a sample (one in 50), so each held-out picture is
weighted by how many of the line's parts of its kind it stands for (the line's false alarms, or its
passed parts, over the held-out pictures of that kind): unweighted, the sample leans to the harder
good parts and the threshold errs high, fewer false alarms than stated and defects missed. The
weights count from the order statistic's minimum on (99 pictures at 1%: `fit_calibration`); below
it the lean stays, on the side of fewer false alarms. With fewer than `MIN_LINE_CALIBRATION` line pictures the folder's own calibration stays,
and the candidate says so.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from lineguard.recalibration import recalibration_record
from lineguard.registration import register_checkpoint
from model.calibration import MIN_CALIBRATION_IMAGES, fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint, save_recalibrated
from model.images import list_images
from model.recipe import Recipe, TrainingSettings
from model.teacher import RANDOM_TEACHER
from model.training import TrainingResult, calibration_scores, good_image_folder, train
from store.artifacts import ArtifactStore, key_part
from store.errors import ArtifactError
from store.records import ModelInfo, scored_parts
from store.schema import FALSE_ALARM_REVIEW, FLAGGED_VERDICT

log = logging.getLogger(__name__)

#: Most of the line's passed parts added to a retraining, the most recent first.
DEFAULT_PASSED_PARTS = 500
#: Fewest line pictures for a threshold from the line: half of them are held out, at least
#: `MIN_CALIBRATION_IMAGES`.
MIN_LINE_CALIBRATION = 2 * MIN_CALIBRATION_IMAGES
#: Line pictures' names in the training folder start with this; the held-out ones live beside it.
LINE_PREFIX = "line-"
#: The two kinds of line pictures, as their names say (`line-<kind>-<frame>.jpg`).
FALSE_ALARM_KIND, PASSED_KIND = "false_alarm", "passed"
_FILE_TEACHER_PREFIX = "file:"


@dataclass(frozen=True)
class RetrainingData:
    """The folder a retraining trains on, and what is in it; `calibration_folder` holds the line
    pictures kept out of training to set the threshold (empty below `MIN_LINE_CALIBRATION`);
    `line_good_parts` counts the line's good parts of each kind, pictured or not (what the
    held-out pictures of a kind stand for)."""

    line: str
    folder: Path
    original_folder: Path
    original_images: int
    false_alarms: int
    passed_parts: int
    extra_images: int
    calibration_folder: Path
    calibration_parts: int
    line_good_parts: dict[str, int]


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
    and copies of the line's pictures, and `calibration_folder(staging)` with every other line
    picture when there are `MIN_LINE_CALIBRATION` of them. Raises ValueError when the original
    folder is gone and no `data` was given.
    """
    recorded = base.training_data.get("folder")
    original = Path(data) if data is not None else Path(recorded) if recorded else None
    if original is None or not original.is_dir():
        raise ValueError(
            f"the training folder of {base.version} ({recorded or 'not recorded'}) is not here; give it with --data DIR"
        )
    original, _ = good_image_folder(original)
    held_out = calibration_folder(staging)
    for folder in (staging, held_out):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    originals = _link_all(list_images(original), staging, "original")
    extras = sum(_link_all(list_images(Path(folder)), staging, f"extra{index}") for index, folder in enumerate(extra))
    parts = scored_parts(engine, line, None)
    line_false_alarms = [part for part in parts if part.review == FALSE_ALARM_REVIEW]
    line_passed = [part for part in parts if part.review is None and part.verdict != FLAGGED_VERDICT]
    false_alarms = [part for part in line_false_alarms if part.image_key]
    passed = [part for part in line_passed if part.image_key][-passed_parts:] if passed_parts else []
    pictures: list[tuple[str, bytes]] = []
    for kind, chosen in ((FALSE_ALARM_KIND, false_alarms), (PASSED_KIND, passed)):
        for part in chosen:
            try:
                pictures.append((f"{LINE_PREFIX}{kind}-{key_part(part.frame_id)}.jpg", artifacts.get(part.image_key)))
            except ArtifactError as error:  # pruned by retention meanwhile: one part less, said once
                log.warning("%s: its picture is gone (%s); trained without it", part.frame_id, error)
    # Alternate pictures, so both kinds and every stretch of the line's time are on both sides.
    holding_out = len(pictures) >= MIN_LINE_CALIBRATION
    copied = {FALSE_ALARM_KIND: 0, PASSED_KIND: 0}
    for index, (name, picture) in enumerate(pictures):
        calibrating = holding_out and index % 2 == 1
        (held_out if calibrating else staging).joinpath(name).write_bytes(picture)
        if not calibrating:
            copied[picture_kind(name)] += 1
    return RetrainingData(
        line, staging, original, originals, copied[FALSE_ALARM_KIND], copied[PASSED_KIND], extras, held_out,
        len(pictures) - sum(copied.values()), {FALSE_ALARM_KIND: len(line_false_alarms), PASSED_KIND: len(line_passed)},
    )


def picture_kind(name: str) -> str:
    """The kind of a line picture by its name: FALSE_ALARM_KIND or PASSED_KIND."""
    return FALSE_ALARM_KIND if name.startswith(f"{LINE_PREFIX}{FALSE_ALARM_KIND}-") else PASSED_KIND


def line_weights(names: list[str], line_good_parts: dict[str, int]) -> np.ndarray:
    """How many of the line's good parts each held-out picture stands for: the line's parts of its
    kind over the held-out pictures of that kind (a kind's parts without a held-out picture are not
    represented)."""
    kinds = [picture_kind(name) for name in names]
    return np.array([line_good_parts[kind] / kinds.count(kind) for kind in kinds], dtype=np.float64)


def calibration_folder(staging: Path) -> Path:
    """Where the line pictures a retraining holds out for its threshold are kept, beside its training folder."""
    return staging.with_name(staging.name + ".calibration")


def retrain(
    engine: Engine,
    base: ModelInfo,
    data: RetrainingData,
    out: Path,
    settings: TrainingSettings,
    progress: bool = False,
) -> TrainingResult:
    """Train a candidate on `data` with `base`'s recipe and teacher, calibrate it on the line's
    held-out pictures where there are enough (see the module's text), and register it (not active)."""
    recipe = Recipe.model_validate({**base.recipe, "input_shape": None})
    result = train(data.folder, out, recipe, settings, teacher_spec(base), progress=progress)
    if data.calibration_parts:
        result = calibrate_on_line(base, data, result, settings.device, progress)
    register_checkpoint(engine, result.checkpoint)
    return result


def calibrate_on_line(base: ModelInfo, data: RetrainingData, result: TrainingResult, device: str, progress: bool = False) -> TrainingResult:
    """Rewrite the candidate with a threshold from the line pictures it never trained on: those
    held out in `data.calibration_folder` and those the training held out from its folder, each
    weighted by the line's parts it stands for (`line_weights`)."""
    candidate = load_checkpoint(result.checkpoint, device=device)
    scores, scored = calibration_scores(candidate, line_calibration_pictures(data, result.checkpoint), progress)
    calibration = fit_calibration(scores, float(base.calibration["false_reject_rate"]), line_weights(scored, data.line_good_parts))
    false_alarms = sum(picture_kind(name) == FALSE_ALARM_KIND for name in scored)
    provenance = recalibration_record(data.line, result.version, len(scored) - false_alarms, false_alarms, since=None)
    version, path = save_recalibrated(result.checkpoint, calibration, provenance, result.checkpoint)
    return TrainingResult(path, version, calibration.threshold, result.seconds)


def line_calibration_pictures(data: RetrainingData, candidate: Path) -> list[Path]:
    """The line pictures `candidate` never trained on: those held out in `data.calibration_folder`
    and those its training held out from its folder."""
    trained_aside = [name for name in read_checkpoint(candidate)["training_data"]["calibration_images"] if name.startswith(LINE_PREFIX)]
    return list_images(data.calibration_folder) + [data.folder / name for name in trained_aside]


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
