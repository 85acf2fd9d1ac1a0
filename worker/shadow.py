"""Shadow scoring: a worker also runs a line's shadow candidate (`lineguard models shadow`) on the
frames it has just scored, and stores the candidate's verdicts apart (store.shadow).

The candidate never gives a verdict: its verdicts are stored after the batch's rows, and anything
that goes wrong with it (a checkpoint that does not load, a database hiccup) is logged and leaves
the batch as it was. Its models are kept in a model cache of their own (worker.model_cache), loaded once
per version and dropped when no line shadows them any more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Engine

from store.records import InspectionRecord, shadow_models, write_shadow_verdicts
from store.schema import FLAGGED_VERDICT
from store.shadow import ShadowVerdict
from wire.protocol import FrameEntry
from worker.defaults import DEFAULT_MODEL_REFRESH_S
from worker.model_cache import ModelCache

logger = logging.getLogger(__name__)


class ShadowScorer:
    """Runs each line's shadow candidate on the line's scored frames."""

    def __init__(
        self,
        engine: Engine,
        device: str = "auto",
        precision: str = "auto",
        refresh_s: float = DEFAULT_MODEL_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        # The same cache as the active models', kept apart and fed the shadow candidates instead.
        self._models = ModelCache(
            engine, device=device, precision=precision, refresh_s=refresh_s, clock=clock,
            versions_by_line=shadow_models, role="shadow",
        )

    def verdicts(
        self, images_by_line: dict[str, list[tuple[FrameEntry, np.ndarray]]], records: Sequence[InspectionRecord]
    ) -> list[ShadowVerdict]:
        """The shadow candidates' verdicts on the scored frames of shadowed lines. Never raises:
        the shadow must not cost the line its verdicts."""
        try:
            scored = {record.frame_id: record for record in records if record.raw_score is not None}
            verdicts = []
            for line, items in images_by_line.items():
                version = self._models.version_for_line(line)
                frames = [(frame, image) for frame, image in items if frame.frame_id in scored]
                if version is None or not frames:
                    continue
                model = self._models.model_for_line(line)
                for (frame, _), result in zip(frames, model.score_images([image for _, image in frames])):
                    active = scored[frame.frame_id]
                    verdicts.append(
                        ShadowVerdict(
                            frame.frame_id, line, version, result.raw_score, result.is_anomaly,
                            active.verdict == FLAGGED_VERDICT, active.image_key,
                        )
                    )
            return verdicts
        except Exception:  # noqa: BLE001 - see the module docstring
            logger.exception("shadow scoring failed; the batch's verdicts stand")
            return []

    def store(self, verdicts: Sequence[ShadowVerdict]) -> None:
        """Store shadow verdicts, once the batch's rows are written. Never raises."""
        try:
            write_shadow_verdicts(self._engine, verdicts)
        except Exception:  # noqa: BLE001 - see the module docstring
            logger.exception("%d shadow verdicts not stored; the batch's verdicts stand", len(verdicts))
