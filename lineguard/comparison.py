"""Comparing a candidate model with a line's active one on the line's own stored pictures
(`lineguard models compare`), before anyone promotes it.

Both models judge the same parts: every reviewed part whose picture was kept, and the most recent
passed parts whose picture was kept (a sample, one in 50 by default: worker.evidence). The candidate
scores the stored pictures (JPEG). The active model's verdict on a part is the one the line got
live, from the frame itself: the stored raw score against the active threshold, which holds for
parts scored by the active weights or any recalibration of them. Only parts that older weights
scored are rescored from their pictures, and a few pictures are scored besides to time it. What a part
truly is comes from people: reviewed as a defect, or as a false alarm; an unreviewed passed part
counts as good (a missed defect among them is unknown to the line too). Unreviewed flagged parts
are scored and their verdict changes listed, but they count neither way.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine

from model.checkpoint import load_checkpoint, weights_version
from model.images import decode_image
from model.scoring import InspectionModel
from store.artifacts import ArtifactStore
from store.errors import ArtifactError
from store.line_parts import ScoredPart
from store.records import active_model_info, get_model, scored_parts
from store.schema import CONFIRMED_REVIEW, FLAGGED_VERDICT

#: Recent passed parts (with a kept picture) scored besides the reviewed ones, unless told otherwise.
DEFAULT_RECENT_PASSED = 200
_SCORING_BATCH = 16
#: Stored pictures the active model scores only to time it, when every verdict of it is the live one.
_TIMING_FRAMES = 16


@dataclass(frozen=True)
class ModelFigures:
    """One model on the compared parts."""

    version: str
    threshold: float
    stated_false_reject_rate: float
    defects_caught: int
    defects: int
    false_alarms: int
    good_parts: int
    ms_per_frame: float

    @property
    def measured_false_reject_rate(self) -> float | None:
        return self.false_alarms / self.good_parts if self.good_parts else None


@dataclass(frozen=True)
class Comparison:
    """Active and candidate side by side, and the parts whose verdict the candidate changes."""

    line: str
    active: ModelFigures
    candidate: ModelFigures
    parts: int
    unreadable: list[str]
    # Parts whose active verdict is the live one (the rest were rescored from their pictures).
    active_live: int
    # frame id -> what the part is ("defect", "good", "unreviewed flag"), per direction of change.
    now_flagged: dict[str, str] = field(default_factory=dict)
    now_passed: dict[str, str] = field(default_factory=dict)
    image_keys: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        for name in ("active", "candidate"):
            document[name]["measured_false_reject_rate"] = getattr(self, name).measured_false_reject_rate
        return document


def compare_models(
    engine: Engine,
    artifacts: ArtifactStore,
    line: str,
    candidate_version: str,
    device: str = "auto",
    recent_passed: int = DEFAULT_RECENT_PASSED,
) -> Comparison:
    """Score `line`'s reviewed and recent passed parts with its active model and the candidate."""
    active = active_model_info(engine, line)
    parts = _parts_to_compare(engine, line, recent_passed)
    if not parts:
        raise ValueError(f"line {line} has no reviewed or passed parts with a kept picture to compare on")
    images, unreadable = {}, []
    for part in parts:
        try:
            images[part.frame_id] = decode_image(artifacts.get(part.image_key), part.frame_id)
        except (ArtifactError, ValueError) as error:  # pruned by retention, or damaged: named, not fatal
            unreadable.append(f"{part.frame_id} ({error})")
    scored = [part for part in parts if part.frame_id in images]
    truth = {part.frame_id: _truth(part) for part in scored}
    threshold = float(active.calibration["threshold"])
    active_weights = weights_version(active.version)
    live = {part.frame_id: part.raw_score > threshold for part in scored if weights_version(part.model_version) == active_weights}
    rescored = [part for part in scored if part.frame_id not in live]
    flags, figures = {}, {}
    for role, version, judged in (("active", active.version, rescored or scored[:_TIMING_FRAMES]), ("candidate", candidate_version, scored)):
        model = load_checkpoint(get_model(engine, version).checkpoint_path, device=device)
        flags[role], seconds = _flags(model, [(part.frame_id, images[part.frame_id]) for part in judged])
        timing = 1000.0 * seconds / len(judged)
        if role == "active":
            flags[role] = {**flags[role], **live}
        figures[role] = _figures(model, flags[role], truth, timing)
    changed = [frame_id for frame_id in truth if flags["active"][frame_id] != flags["candidate"][frame_id]]
    return Comparison(
        line=line,
        active=figures["active"],
        candidate=figures["candidate"],
        parts=len(scored),
        unreadable=unreadable,
        active_live=len(live),
        now_flagged={f: truth[f] for f in changed if flags["candidate"][f]},
        now_passed={f: truth[f] for f in changed if not flags["candidate"][f]},
        image_keys={part.frame_id: part.image_key for part in scored if part.frame_id in changed},
    )


def _parts_to_compare(engine: Engine, line: str, recent_passed: int) -> list[ScoredPart]:
    parts = scored_parts(engine, line, None, with_image=True)
    reviewed = [part for part in parts if part.review is not None]
    unreviewed_flags = [part for part in parts if part.review is None and part.verdict == FLAGGED_VERDICT]
    passed = [part for part in parts if part.review is None and part.verdict != FLAGGED_VERDICT]
    return reviewed + unreviewed_flags + passed[-recent_passed:] if recent_passed > 0 else reviewed + unreviewed_flags


def _truth(part: ScoredPart) -> str:
    if part.review is not None:
        return "defect" if part.review == CONFIRMED_REVIEW else "good"
    return "unreviewed flag" if part.verdict == FLAGGED_VERDICT else "good"


def _flags(model: InspectionModel, images: list[tuple[str, Any]]) -> tuple[dict[str, bool], float]:
    """Whether `model` flags each image, and the seconds its scoring took."""
    flags, started = {}, time.perf_counter()
    for start in range(0, len(images), _SCORING_BATCH):
        batch = images[start : start + _SCORING_BATCH]
        for (frame_id, _), result in zip(batch, model.score_images([image for _, image in batch])):
            flags[frame_id] = result.is_anomaly
    return flags, time.perf_counter() - started


def _figures(model: InspectionModel, flags: dict[str, bool], truth: dict[str, str], ms_per_frame: float) -> ModelFigures:
    defects = [f for f, kind in truth.items() if kind == "defect"]
    good = [f for f, kind in truth.items() if kind == "good"]
    return ModelFigures(
        version=model.version,
        threshold=float(model.calibration.threshold),
        stated_false_reject_rate=float(model.calibration.false_reject_rate),
        defects_caught=sum(flags[f] for f in defects),
        defects=len(defects),
        false_alarms=sum(flags[f] for f in good),
        good_parts=len(good),
        ms_per_frame=ms_per_frame,
    )
