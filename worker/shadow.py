"""Shadow scoring: a worker also runs a line's shadow candidate (`lineguard models shadow`) on the
frames it has just scored, and stores the candidate's verdicts apart (store.shadow).

The candidate never gives a verdict: its verdicts are stored after the batch's rows, and anything
that goes wrong with it (a checkpoint that does not load, a database hiccup) is logged and leaves
the batch as it was. Its models are kept here, apart from the active models' cache, loaded once
per version and dropped when no line shadows them any more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import Engine

from model.checkpoint import load_checkpoint
from model.scoring import InspectionModel
from store.records import InspectionRecord, get_model, shadow_models, write_shadow_verdicts
from store.schema import FLAGGED_VERDICT
from store.shadow import ShadowVerdict
from wire.protocol import FrameEntry
from worker.defaults import DEFAULT_MODEL_REFRESH_S

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
        self._device = device
        self._precision = precision
        self._refresh_s = refresh_s
        self._clock = clock
        self._shadows: dict[str, str] = {}
        self._read_at: float | None = None
        self._loaded: dict[str, InspectionModel] = {}

    def verdicts(
        self, images_by_line: dict[str, list[tuple[FrameEntry, np.ndarray]]], records: Sequence[InspectionRecord]
    ) -> list[ShadowVerdict]:
        """The shadow candidates' verdicts on the scored frames of shadowed lines. Never raises:
        the shadow must not cost the line its verdicts."""
        try:
            self._refresh_if_due()
            scored = {record.frame_id: record for record in records if record.raw_score is not None}
            verdicts = []
            for line, items in images_by_line.items():
                version = self._shadows.get(line)
                frames = [(frame, image) for frame, image in items if frame.frame_id in scored]
                if version is None or not frames:
                    continue
                model = self._model(version)
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

    def _refresh_if_due(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._refresh_s:
            return
        shadows = shadow_models(self._engine)
        if shadows != self._shadows:
            logger.info("shadow models: %s", ", ".join(f"{line}={version}" for line, version in sorted(shadows.items())) or "none")
        self._shadows, self._read_at = shadows, now
        for version in [version for version in self._loaded if version not in shadows.values()]:
            del self._loaded[version]

    def _model(self, version: str) -> InspectionModel:
        model = self._loaded.get(version)
        if model is None:
            model = load_checkpoint(get_model(self._engine, version).checkpoint_path, device=self._device, precision=self._precision)
            self._loaded[version] = model
            logger.info("loaded shadow model %s", version)
        return model
