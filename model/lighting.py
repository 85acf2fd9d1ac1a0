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
# Light dimmer than this (of 255) is too faint to measure a lamp by.
MEASURABLE_LUMA = 16.0
# Illumination surfaces are compared between images on this many cells a side, whatever their sizes.
COMPARISON_CELLS = 8


def _coarse(luma: np.ndarray) -> np.ndarray:
    """(H,W) float32 luma -> its means on a grid of about FIT_CELLS cells along the longer side."""
    height, width = luma.shape
    cells_x = max(2, int(round(FIT_CELLS * width / max(height, width))))
    cells_y = max(2, int(round(FIT_CELLS * height / max(height, width))))
    return cv2.resize(luma, (cells_x, cells_y), interpolation=cv2.INTER_AREA)


def _quadratic_terms(ys: np.ndarray, xs: np.ndarray) -> list[np.ndarray]:
    return [np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys]


def _quadratic_fit(values: np.ndarray) -> np.ndarray:
    """(h,w) grid -> the six coefficients of the least-squares quadratic surface over [-1,1]²."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, values.shape[0]), np.linspace(-1, 1, values.shape[1]), indexing="ij")
    terms = np.stack(_quadratic_terms(ys, xs), axis=-1).reshape(-1, 6)
    coefficients, *_ = np.linalg.lstsq(terms, values.reshape(-1), rcond=None)
    return coefficients


def _surface(coefficients: np.ndarray, height: int, width: int) -> np.ndarray:
    ys, xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32), indexing="ij")
    return sum(c * t for c, t in zip(coefficients.astype(np.float32), _quadratic_terms(ys, xs)))


def illumination(luma: np.ndarray) -> np.ndarray:
    """(H,W) float32 luma -> (H,W) float32 smooth illumination: exp of a quadratic surface fitted
    (least squares) to log luma on a coarse grid."""
    return np.exp(_surface(_quadratic_fit(np.log(_coarse(luma) + 1.0)), *luma.shape)) - 1.0


def lighting_spread(images: list[np.ndarray]) -> float:
    """How much the lighting differs between `images` ((H,W,3) uint8, any sizes): the RMS, over
    the images and a common grid, of each one's fitted log illumination about their mean. 0.15 is
    about 15% brighter or darker, part to part. Cells darker than MEASURABLE_LUMA are taken at that
    level: a black plate around a part says nothing of the lamp. Fewer than two images: 0."""
    if len(images) < 2:
        return 0.0
    surfaces = []
    for image in images:
        coarse = _coarse(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32))
        surfaces.append(_surface(_quadratic_fit(np.log(np.maximum(coarse, MEASURABLE_LUMA))), COMPARISON_CELLS, COMPARISON_CELLS))
    surfaces = np.stack(surfaces)
    return float(np.sqrt(np.mean((surfaces - surfaces.mean(axis=0)) ** 2)))


def levelled(image: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> the same divided by its illumination and brought to the mean level LEVEL."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gain = LEVEL / np.maximum(illumination(luma), 1.0)
    return np.clip(image.astype(np.float32) * gain[..., None], 0, 255).astype(np.uint8)


def as_seen(image: np.ndarray, recipe: Recipe) -> np.ndarray:
    """(H,W,3) uint8 frame -> the pixels the model sees: its region, its lighting levelled if the recipe says so."""
    image = in_region(image, recipe.region)
    return levelled(image) if recipe.lighting == "levelled" else image
