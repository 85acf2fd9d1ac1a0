"""Generated parts for tests and the demo: a textured washer on a belt, with optional defects.

Good parts vary a little in position, rotation and lighting; defects are scratches, dark spots
and chipped edges, each with its ground-truth mask. Everything is drawn from the given seed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "spot", "chip")


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, (size // 8, size // 8)).astype(np.float32)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def good_part(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,size,3) uint8 RGB image of a defect-free part."""
    belt = 70 + 6 * _texture(size, rng)
    image = np.dstack([belt, belt * 1.02, belt * 0.95])
    centre = (size / 2 + rng.uniform(-0.03, 0.03) * size, size / 2 + rng.uniform(-0.03, 0.03) * size)
    outer, inner = 0.36 * size, 0.14 * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.hypot(xx - centre[0], yy - centre[1])
    ring = (radius < outer) & (radius > inner)
    angle = np.arctan2(yy - centre[1], xx - centre[0]) + rng.uniform(0, 2 * np.pi)
    # Machined grooves: concentric rings plus a faint radial pattern, as on a turned part.
    metal = 165 + 18 * np.sin(radius / size * 90.0) + 6 * np.sin(angle * 12) + 4 * _texture(size, rng)
    light = rng.uniform(0.92, 1.08)
    for channel, tint in enumerate((1.0, 0.98, 0.93)):
        image[..., channel] = np.where(ring, metal * tint * light, image[..., channel])
    return np.clip(image, 0, 255).astype(np.uint8)


def add_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a defect of `kind` on a copy of `image`; returns (image, (H,W) bool mask)."""
    if kind not in DEFECT_KINDS:
        raise ValueError(f"defect kind must be one of {DEFECT_KINDS}, got {kind!r}")
    size = image.shape[0]
    out = image.copy()
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    angle = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(0.2, 0.3) * size
    x, y = int(size / 2 + radius * np.cos(angle)), int(size / 2 + radius * np.sin(angle))
    if kind == "scratch":
        length = rng.uniform(0.08, 0.15) * size
        direction = rng.uniform(0, np.pi)
        end = (int(x + length * np.cos(direction)), int(y + length * np.sin(direction)))
        thickness = max(1, size // 96)
        cv2.line(out, (x, y), end, (235, 235, 240), thickness)
        cv2.line(mask, (x, y), end, 1, thickness)
    elif kind == "spot":
        spot = max(2, int(rng.uniform(0.02, 0.04) * size))
        cv2.circle(out, (x, y), spot, (40, 30, 25), -1)
        cv2.circle(mask, (x, y), spot, 1, -1)
    else:
        chip_centre = (int(size / 2 + 0.36 * size * np.cos(angle)), int(size / 2 + 0.36 * size * np.sin(angle)))
        chip = max(3, int(rng.uniform(0.04, 0.07) * size))
        belt_colour = tuple(int(v) for v in image[2, 2])
        cv2.circle(out, chip_centre, chip, belt_colour, -1)
        cv2.circle(mask, chip_centre, chip, 1, -1)
        mask &= (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) > 120).astype(np.uint8)
    return out, mask.astype(bool)


def defective_part(size: int, rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A part with one defect (random kind unless given) and its mask."""
    return add_defect(good_part(size, rng), kind or str(rng.choice(DEFECT_KINDS)), rng)


def write_category(root: str | Path, n_train: int, n_test_good: int, n_test_defective: int, size: int, seed: int) -> None:
    """Write an MVTec-layout category of generated parts under `root` (PNG files)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for folder in ("train/good", "test/good", "test/defective", "ground_truth/defective"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path, rgb: np.ndarray) -> None:
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    for index in range(n_train):
        save(root / "train/good" / f"{index:03d}.png", good_part(size, rng))
    for index in range(n_test_good):
        save(root / "test/good" / f"{index:03d}.png", good_part(size, rng))
    for index in range(n_test_defective):
        image, mask = defective_part(size, rng)
        save(root / "test/defective" / f"{index:03d}.png", image)
        cv2.imwrite(str(root / "ground_truth/defective" / f"{index:03d}_mask.png"), mask.astype(np.uint8) * 255)
