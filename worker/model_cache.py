"""The models of one worker process: each loaded once, and the active model of every line kept fresh.

A registered model is a checkpoint (torch runs it) or an export folder (ONNX Runtime or OpenVINO
runs it, on the CPU): the file decides, see `model.export.load_model`.

Loading a checkpoint takes seconds and GPU memory, so a model is loaded the first time a frame
needs it and kept, by version, for as long as some line uses it. Which version a line uses is read
from the store at most every `refresh_s` seconds (one small query for all lines), so activating
another model (`lineguard models activate`) reaches running workers within that time, no restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from model.errors import CheckpointReadError, ModelError
from model.export import load_model
from model.scoring import InspectionModel
from store.errors import StoreError
from store.records import active_models, get_model
from worker.defaults import DEFAULT_MODEL_REFRESH_S
from worker.errors import ModelUnavailableError, NoActiveModelError

logger = logging.getLogger(__name__)


def is_checkpoint_read_error(error: BaseException) -> bool:
    """Whether `error` is a checkpoint read that failed with an I/O error: waited out like an outage."""
    return isinstance(error, CheckpointReadError)


class ModelCache:
    """Active model per line, read from the store; checkpoints loaded once on one device."""

    def __init__(
        self,
        engine: Engine,
        device: str = "auto",
        precision: str = "auto",
        refresh_s: float = DEFAULT_MODEL_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
        versions_by_line: Callable[[Engine], dict[str, str]] = active_models,
        role: str = "active",
    ) -> None:
        """Cache models for the store at `engine`.

        Args:
            engine: the store's engine (registered models and the active model of each line).
            device: where models run: auto, cpu, cuda or cuda:N.
            precision: auto, fp32 or bf16 (auto: bf16 where the device is fast at it).
            refresh_s: longest time a change of a line's active model goes unnoticed.
            clock: monotonic seconds; tests pass their own to step through refreshes.
            versions_by_line: reads which version each line uses (default: the active models).
            role: what those versions are, for the log ("active", "shadow").
        """
        if refresh_s < 0:
            raise ValueError(f"refresh_s must be >= 0, got {refresh_s}")
        self._engine = engine
        self._device = device
        self._precision = precision
        self._refresh_s = refresh_s
        self._clock = clock
        # Which version each line uses: the active models, or (shadow scoring) the shadow candidates.
        self._versions_by_line = versions_by_line
        self._role = role
        self._active: dict[str, str] = {}
        self._read_at: float | None = None
        self._loaded: dict[str, InspectionModel] = {}
        # Versions whose checkpoint failed to load, with the reason and when; retried after refresh_s.
        self._failed: dict[str, tuple[str, float]] = {}

    @property
    def loaded_versions(self) -> list[str]:
        """Versions held in memory now, sorted."""
        return sorted(self._loaded)

    def model_for_line(self, line: str) -> InspectionModel:
        """The model `line` scores with now, loaded on first use.

        Raises NoActiveModelError when the line has no active model, ModelUnavailableError when
        its checkpoint cannot be loaded here (missing file, damaged, another device...),
        CheckpointReadError when reading it failed with an I/O error (worth trying again).
        """
        version = self.version_for_line(line)
        if version is None:
            raise NoActiveModelError(
                f"no active model for line {line} (activate one with `lineguard models add MODEL.pt --line {line} --activate`)"
            )
        model = self._loaded.get(version)
        return model if model is not None else self._load(version)

    def version_for_line(self, line: str) -> str | None:
        """The version `line` uses now, or None."""
        self._refresh_if_due()
        return self._active.get(line)

    def _refresh_if_due(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._refresh_s:
            return
        active = self._versions_by_line(self._engine)
        if active != self._active:
            logger.info("%s models: %s", self._role, ", ".join(f"{line}={version}" for line, version in sorted(active.items())) or "none")
        self._active = active
        self._read_at = now
        in_use = set(active.values())
        for version in [version for version in self._loaded if version not in in_use]:
            # No line uses it any more: free its memory (GPU memory above all).
            del self._loaded[version]
            logger.info("unloaded model %s: no line uses it any more", version)

    def _load(self, version: str) -> InspectionModel:
        failure = self._failed.get(version)
        if failure is not None and self._clock() - failure[1] < self._refresh_s:
            raise ModelUnavailableError(failure[0])
        try:
            info = get_model(self._engine, version)
            model = load_model(info.checkpoint_path, device=self._device, precision=self._precision)
            if model.version != version:
                raise ModelUnavailableError(
                    f"checkpoint {info.checkpoint_path} holds model {model.version}, "
                    f"but the store registers it as {version}; re-add it with `lineguard models add`"
                )
        except CheckpointReadError:
            raise  # an I/O error: the caller waits it out and tries again (worker.jobs), nothing remembered
        except (ModelError, StoreError, ModelUnavailableError, ValueError, OSError) as error:
            message = f"model {version} cannot be loaded on this worker: {error}"
            self._failed[version] = (message, self._clock())
            logger.error(message)
            raise ModelUnavailableError(message) from error
        self._failed.pop(version, None)
        self._loaded[version] = model
        if model.random_teacher:
            logger.warning("model %s was trained with a RANDOM teacher: its scores are not those of the real method", version)
        logger.info("loaded model %s on %s (%s) from %s", version, model.device, model.precision, info.checkpoint_path)
        return model
