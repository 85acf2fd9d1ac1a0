"""Frames decoded and fitted on the scoring device, trusted per model only once measured.

On a GPU, decoding and fitting on the host bound the worker far below the network (one core fits
about 50-100 640x480 frames/s, bench/capacity.py). With decoding on the device the frames' bytes go
to the GPU, nvJPEG decodes them and `model.device_images` fits them into the input with the
host's own scaling, so the two paths differ by the JPEG decoder alone. That is measured, not
assumed: for each model, the first DEVICE_DECODE_CHECK_FRAMES frames are scored both ways (the
rows take the host's scores), and the device's decoding is trusted for that model only if no raw
score moved by more than DEVICE_DECODE_TOLERANCE of the model's threshold; otherwise the worker
says so, with the figure, and decodes on the host for that model from then on.

A frame the device cannot decode is decoded on the host (which gives it its error row if it is
bad), so decoding on the device never records a frame as bad that the host would have scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from model.scoring import ImageScore, InspectionModel
from worker.defaults import DEVICE_DECODE_CHECK_FRAMES, DEVICE_DECODE_TOLERANCE

logger = logging.getLogger(__name__)

DECODE_ON_DEVICE_CHOICES = ("auto", "on", "off")


def decodes_on_device(choice: str, device: torch.device) -> bool:
    """Whether a worker on `device` decodes on it: `choice` "on", or "auto" on CUDA."""
    if choice not in DECODE_ON_DEVICE_CHOICES:
        raise ValueError(f"--decode-on-device must be one of {', '.join(DECODE_ON_DEVICE_CHOICES)}, got {choice!r}")
    return choice == "on" or (choice == "auto" and device.type == "cuda")


@dataclass
class _Check:
    frames: int = 0
    largest: float = 0.0


@dataclass
class DeviceDecoding:
    """A worker's decoding on `device`, and what it has measured of it per model version."""

    device: torch.device
    tolerance: float = DEVICE_DECODE_TOLERANCE
    check_frames: int = DEVICE_DECODE_CHECK_FRAMES
    _checks: dict[str, _Check] = field(default_factory=dict)
    _trusted: dict[str, bool] = field(default_factory=dict)

    def serves(self, model: InspectionModel) -> bool:
        """Whether frames decoded here can be scored by `model` (torch on this kind of device, whole frames)."""
        return model.scores_decoded_frames and model.device.type == self.device.type

    def trusted(self, model: InspectionModel) -> bool | None:
        """True once measured within the tolerance for `model`, False once measured outside it, None while measuring."""
        return self._trusted.get(model.version)

    def compare(self, model: InspectionModel, host: list[ImageScore], device: list[ImageScore]) -> None:
        """Add frames scored both ways (`host`, `device`, in the same order) to `model`'s measurement."""
        check = self._checks.setdefault(model.version, _Check())
        threshold = max(abs(float(model.calibration.threshold)), 1e-12)
        check.frames += len(host)
        check.largest = max([check.largest] + [abs(d.raw_score - h.raw_score) / threshold for h, d in zip(host, device)])
        if check.largest > self.tolerance:
            self._trusted[model.version] = False
            logger.error(
                "model %s: frames decoded on %s scored up to %.2f%% of the threshold away from the host's (tolerance %.2f%%) "
                "over %d frames; decoding on the host for this model",
                model.version, self.device, 100 * check.largest, 100 * self.tolerance, check.frames,
            )
        elif check.frames >= self.check_frames:
            self._trusted[model.version] = True
            logger.info(
                "model %s: frames decoded on %s score within %.3f%% of the threshold of the host's over %d frames; decoding there",
                model.version, self.device, 100 * check.largest, check.frames,
            )

    def measured(self) -> dict[str, tuple[int, float, bool | None]]:
        """Per model version: frames compared, the largest difference (share of the threshold), the verdict."""
        return {version: (check.frames, check.largest, self._trusted.get(version)) for version, check in self._checks.items()}
