"""Recalibrating a line's model on the line's own parts (`lineguard models recalibrate`).

The weights stay; only the threshold moves. Its sample is the raw scores of the line's good parts
as far as the line knows them: parts the model passed and parts a person reviewed as false alarms,
never a confirmed defect (even one the model passed). Flagged parts nobody reviewed yet are left
out, which can only lower the threshold (more false alarms, no defect missed); the plan counts them
so the person deciding sees it. `model.calibration.fit_calibration` sets the threshold, so with
hundreds of parts its distribution-free bound holds whatever the scores' shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine

from model.calibration import Calibration, fit_calibration
from model.checkpoint import save_recalibrated, weights_version
from store.records import ModelInfo, ScoredPart, active_model_info, list_models, scored_parts
from store.schema import CONFIRMED_REVIEW, FALSE_ALARM_REVIEW, FLAGGED_VERDICT


class NotEnoughPartsError(ValueError):
    """The line has too few known-good parts for the stated false-reject rate."""


@dataclass(frozen=True)
class RecalibrationPlan:
    """A calibration from the line's parts, and what it would have done on the parts people reviewed.

    The four frame-id lists judge the new threshold on reviewed parts: false alarms it now passes or
    still flags, confirmed defects it still flags or would now miss.
    """

    line: str
    base: ModelInfo
    calibration: Calibration
    since: datetime | None
    passed: int
    false_alarms: int
    unreviewed_flags: int
    false_alarms_passed: list[str]
    false_alarms_flagged: list[str]
    defects_flagged: list[str]
    defects_missed: list[str]

    @property
    def parts(self) -> int:
        """How many parts' scores the threshold rests on."""
        return self.passed + self.false_alarms


def minimum_parts(false_reject_rate: float) -> int:
    """Fewest good parts for a threshold at `false_reject_rate`: the distribution-free bound (the
    k-th smallest of n scores, k = ceil((n+1)(1-rate))) exists only from n = 1/rate - 1."""
    return max(math.ceil(1.0 / false_reject_rate - 1.0 - 1e-9), 1)


def same_weights_versions(engine: Engine, version: str) -> list[str]:
    """The registered versions that share `version`'s weights (it and its recalibrations)."""
    weights = weights_version(version)
    return sorted({model.version for model in list_models(engine) if weights_version(model.version) == weights} | {version})


def plan_recalibration(
    engine: Engine, line: str, since: datetime | None = None, false_reject_rate: float | None = None
) -> RecalibrationPlan:
    """A new calibration of `line`'s active model from the line's parts; writes nothing.

    The rate defaults to the active model's. Raises NotEnoughPartsError below `minimum_parts`.
    """
    base = active_model_info(engine, line)
    active = base.version
    rate = false_reject_rate if false_reject_rate is not None else float(base.calibration["false_reject_rate"])
    parts = scored_parts(engine, line, same_weights_versions(engine, active), since)
    good = [part for part in parts if _known_good(part)]
    needed = minimum_parts(rate)
    if len(good) < needed:
        window = f" since {since.isoformat()}" if since else ""
        raise NotEnoughPartsError(
            f"recalibrating line {line} at a false-reject rate of {rate:.2%} needs at least {needed} good parts "
            f"(passed, or flagged and reviewed as false alarms); it has {len(good)}{window}: "
            f"{needed - len(good)} more needed"
        )
    calibration = fit_calibration(np.array([part.raw_score for part in good]), rate)
    reviewed = [part for part in parts if part.review is not None]

    def frames(review: str, flagged: bool) -> list[str]:
        return [p.frame_id for p in reviewed if p.review == review and (p.raw_score > calibration.threshold) == flagged]

    return RecalibrationPlan(
        line=line,
        base=base,
        calibration=calibration,
        since=since,
        passed=sum(part.review is None for part in good),
        false_alarms=sum(part.review == FALSE_ALARM_REVIEW for part in good),
        unreviewed_flags=sum(part.verdict == FLAGGED_VERDICT and part.review is None for part in parts),
        false_alarms_passed=frames(FALSE_ALARM_REVIEW, flagged=False),
        false_alarms_flagged=frames(FALSE_ALARM_REVIEW, flagged=True),
        defects_flagged=frames(CONFIRMED_REVIEW, flagged=True),
        defects_missed=frames(CONFIRMED_REVIEW, flagged=False),
    )


def save_recalibration(plan: RecalibrationPlan, out: Path | None = None) -> tuple[str, Path]:
    """Write the recalibrated checkpoint (default: beside the base model's); returns (version, path).
    Registering and activating it is the caller's step."""
    source = Path(plan.base.checkpoint_path)
    recalibration = recalibration_record(plan.line, plan.base.version, plan.passed, plan.false_alarms, plan.since)
    return save_recalibrated(source, plan.calibration, recalibration, out)


def recalibration_record(line: str, from_version: str, passed: int, false_alarms: int, since: datetime | None) -> dict:
    """What a recalibrated checkpoint says of its threshold's origin (the Models page's sentence)."""
    return {
        "line": line,
        "from_version": from_version,
        "parts": passed + false_alarms,
        "passed_parts": passed,
        "false_alarms": false_alarms,
        "since": since.isoformat() if since else None,
        "recalibrated_at": datetime.now(UTC).isoformat(),
    }


def _known_good(part: ScoredPart) -> bool:
    """Passed and not reviewed as a defect, or flagged and reviewed as a false alarm."""
    if part.review is not None:
        return part.review == FALSE_ALARM_REVIEW
    return part.verdict != FLAGGED_VERDICT
