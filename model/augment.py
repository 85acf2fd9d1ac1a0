"""Mild augmentation of good training images.

Only changes a line's camera really produces: small shifts, rotations and scale changes of the
part, and small changes of exposure. No flips: on many parts orientation is what a defect breaks.
`relit` is the recipe's optional `colour_jitter`: a lamp that drifts in brightness and colour.
`tinted` is its optional `local_tint`: a part's material that takes a colour cast in one place
(a warm patch on a toothbrush's head), which a gain over the whole image does not teach.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_SHIFT_FRACTION = 0.03
MAX_ROTATION_DEGREES = 3.0
MAX_SCALE_CHANGE = 0.03
MAX_GAIN_CHANGE = 0.08
MAX_OFFSET_CHANGE = 8.0


def augmented_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H,W,3) uint8 RGB -> a randomly shifted, rotated, scaled and re-exposed copy of it."""
    height, width = image.shape[:2]
    angle = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES)
    scale = 1.0 + rng.uniform(-MAX_SCALE_CHANGE, MAX_SCALE_CHANGE)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, scale)
    matrix[:, 2] += rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, size=2) * (width, height)
    warped = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    gain = 1.0 + rng.uniform(-MAX_GAIN_CHANGE, MAX_GAIN_CHANGE)
    offset = rng.uniform(-MAX_OFFSET_CHANGE, MAX_OFFSET_CHANGE)
    return np.clip(warped.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def relit(image: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the same under another lamp: one exposure gain and a gain per colour
    channel (white balance), each drawn from 1 ± `jitter`."""
    gains = rng.uniform(1.0 - jitter, 1.0 + jitter) * rng.uniform(1.0 - jitter, 1.0 + jitter, size=3)
    return np.clip(image.astype(np.float32) * gains.astype(np.float32), 0, 255).astype(np.uint8)


def tinted(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the same with one smooth colour cast: each channel's gain drawn from
    1 ± `strength` at a random centre, fading to 1 as a Gaussian of 15-40% of the image's side, so
    the cast is far wider than any defect."""
    height, width = image.shape[:2]
    centre = rng.uniform(0.0, 1.0, size=2) * (height, width)
    radius = rng.uniform(0.15, 0.4) * max(height, width)
    rows, cols = np.ogrid[:height, :width]
    fade = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2.0 * radius**2)).astype(np.float32)
    gains = rng.uniform(1.0 - strength, 1.0 + strength, size=3).astype(np.float32)
    return np.clip(image.astype(np.float32) * (1.0 + fade[..., None] * (gains - 1.0)), 0, 255).astype(np.uint8)
