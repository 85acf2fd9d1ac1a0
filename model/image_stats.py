"""Simple statistics of an image that move when a camera's setting moves, and the training set's reference.

Every image is first reduced to a `THUMBNAIL_SIDE`-square thumbnail (area averaging), so the figures
do not depend on the sensor's resolution and cost well under a millisecond:
- ``brightness``: mean luma (0-255); an exposure or lighting change;
- ``contrast``: standard deviation of luma; glare, fog, a lamp gone;
- ``sharpness``: log(1 + variance of the Laplacian); focus, a dirty lens;
- ``red_balance``, ``blue_balance``: mean red and blue minus mean green; white balance, a lamp's colour;
- ``offset``: how far the image is shifted against the training set's mean thumbnail (phase
  correlation), as a fraction of the side; a camera or fixture that moved.

`ImageReference` holds each statistic's mean and spread over the training images and the mean
thumbnail; it is saved in the checkpoint, so a worker compares a line's frames with what its model
was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

THUMBNAIL_SIDE = 96
STAT_NAMES: tuple[str, ...] = ("brightness", "contrast", "sharpness", "red_balance", "blue_balance", "offset")
#: Smallest spread assumed per statistic: generated or very uniform training sets vary less than any
#: real line does between two good parts, and a spread of ~0 would make every frame a shift.
MIN_SPREAD: dict[str, float] = {
    "brightness": 4.0,
    "contrast": 3.0,
    "sharpness": 0.15,
    "red_balance": 3.0,
    "blue_balance": 3.0,
    "offset": 0.01,
}


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB (or (H,W) gray) -> (side, side, 3) float32."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return cv2.resize(image, (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)


def _luma(thumbnail: np.ndarray) -> np.ndarray:
    return thumbnail @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


_WINDOW = cv2.createHanningWindow((THUMBNAIL_SIDE, THUMBNAIL_SIDE), cv2.CV_32F)


def _offset(luma: np.ndarray, reference: np.ndarray) -> float:
    (dx, dy), _ = cv2.phaseCorrelate(reference, luma, _WINDOW)
    return float(np.hypot(dx, dy)) / THUMBNAIL_SIDE


def image_stats(image: np.ndarray, reference_luma: np.ndarray | None) -> dict[str, float]:
    """The statistics of one image; ``offset`` only when a reference thumbnail is given."""
    thumbnail = _thumbnail(image)
    luma = _luma(thumbnail)
    means = thumbnail.reshape(-1, 3).mean(axis=0)
    stats = {
        "brightness": float(luma.mean()),
        "contrast": float(luma.std()),
        "sharpness": float(np.log1p(cv2.Laplacian(luma, cv2.CV_32F).var())),
        "red_balance": float(means[0] - means[1]),
        "blue_balance": float(means[2] - means[1]),
    }
    if reference_luma is not None:
        stats["offset"] = _offset(luma, reference_luma)
    return stats


@dataclass(frozen=True)
class ImageReference:
    """The training images' statistics: mean and spread of each, and their mean luma thumbnail."""

    means: dict[str, float]
    spreads: dict[str, float]
    luma: np.ndarray  # (THUMBNAIL_SIDE, THUMBNAIL_SIDE) float32

    def deviations(self, image: np.ndarray) -> dict[str, float]:
        """How far `image` lies from the training images, per statistic, in spreads (signed; offset >= 0)."""
        stats = image_stats(image, self.luma)
        return {name: (value - self.means[name]) / self.spreads[name] for name, value in stats.items()}

    def to_checkpoint(self) -> dict:
        import torch

        return {"means": dict(self.means), "spreads": dict(self.spreads), "luma": torch.from_numpy(self.luma.copy())}

    @classmethod
    def from_checkpoint(cls, values: dict) -> ImageReference:
        return cls(
            means={name: float(values["means"][name]) for name in STAT_NAMES},
            spreads={name: float(values["spreads"][name]) for name in STAT_NAMES},
            luma=values["luma"].numpy().astype(np.float32),
        )


def image_reference(images: Sequence[np.ndarray]) -> ImageReference:
    """The reference of a set of good images (a checkpoint's training images)."""
    if len(images) < 2:
        raise ValueError(f"an image reference needs at least 2 images, got {len(images)}")
    lumas = [_luma(_thumbnail(image)) for image in images]
    mean_luma = np.mean(lumas, axis=0).astype(np.float32)
    rows = [image_stats(image, mean_luma) for image in images]
    # Training parts lie a little apart from their mean too: that spread of offsets is the normal one.
    means = {name: float(np.mean([row[name] for row in rows])) for name in STAT_NAMES}
    spreads = {
        name: max(float(np.std([row[name] for row in rows], ddof=1)), MIN_SPREAD[name]) for name in STAT_NAMES
    }
    return ImageReference(means, spreads, mean_luma)
