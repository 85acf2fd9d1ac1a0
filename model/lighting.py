"""Lighting that varies between good parts, levelled per image (recipe `lighting`).

A part under a stronger lamp, or with light falling off across it, differs from the good parts
the student learnt in every pixel, while a faint crack differs in a few. With `levelled`, each
image is divided by its own illumination, estimated as a smooth surface (a second-order
polynomial fitted to the logarithm of its luma on a coarse grid: gain and gradients, nothing as
fine as a defect), and brought to one mean level. Detail finer than the surface (grain, cracks,
blowholes) keeps its relative contrast. For textures and flat surfaces; on an object whose
brightness pattern is its shape, `as_captured` (the default) keeps what the camera saw.

`as_seen` is what every path does to a frame before it is fitted into the input or cut into
tiles: the recipe's region, then its lighting.
"""

from __future__ import annotations

import cv2
import numpy as np

from model.geometry import in_region
from model.recipe import Recipe

# The illumination is fitted on a grid of about this many cells along the longer side.
FIT_CELLS = 32
# The mean luma a levelled image is brought to.
LEVEL = 128.0


def illumination(luma: np.ndarray) -> np.ndarray:
    """(H,W) float32 luma -> (H,W) float32 smooth illumination: exp of a quadratic surface fitted
    (least squares) to log luma on a coarse grid."""
    height, width = luma.shape
    cells_x = max(2, int(round(FIT_CELLS * width / max(height, width))))
    cells_y = max(2, int(round(FIT_CELLS * height / max(height, width))))
    coarse = np.log(cv2.resize(luma, (cells_x, cells_y), interpolation=cv2.INTER_AREA) + 1.0)
    ys, xs = np.meshgrid(np.linspace(-1, 1, cells_y), np.linspace(-1, 1, cells_x), indexing="ij")
    terms = np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], axis=-1).reshape(-1, 6)
    coefficients, *_ = np.linalg.lstsq(terms, coarse.reshape(-1), rcond=None)
    full_ys, full_xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32), indexing="ij")
    full_terms = (np.ones_like(full_xs), full_xs, full_ys, full_xs * full_xs, full_ys * full_ys, full_xs * full_ys)
    return np.exp(sum(c * t for c, t in zip(coefficients.astype(np.float32), full_terms))) - 1.0


def levelled(image: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the same divided by its illumination and brought to the mean level LEVEL."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gain = LEVEL / np.maximum(illumination(luma), 1.0)
    return np.clip(image.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def as_seen(image: np.ndarray, recipe: Recipe) -> np.ndarray:
    """(H,W,3) uint8 frame -> the pixels the model sees: its region, its lighting levelled if the recipe says so."""
    image = in_region(image, recipe.region)
    return levelled(image) if recipe.lighting == "levelled" else image
