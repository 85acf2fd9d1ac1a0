"""Generated parts for tests, the demo and benchmarks, each with ground-truth masks of its defects.

Three kinds of product, each drawn from the given seed:
- `washer`: a textured washer on a belt, an object (scratches, dark spots, chipped edges);
- `weave`: a woven fabric, a texture without an object (faint stains, small holes, pulled threads, cuts);
- `strip`: a long brushed-metal strip with mounting holes, 2000x500 by default (small
  scratches, pits and dents: a few dozen pixels on a megapixel image).
Good parts vary a little in position and lighting, as they would under a line camera.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "spot", "chip")
WEAVE_DEFECT_KINDS = ("stain", "hole", "pull", "cut")
STRIP_DEFECT_KINDS = ("scratch", "pit", "dent")
STRIP_SHAPE = (500, 2000)


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, (size // 8, size // 8)).astype(np.float32)
    return cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)


def good_part(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,size,3) uint8 RGB image of a defect-free washer."""
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
    """Draw a washer defect of `kind` on a copy of `image`; returns (image, (H,W) bool mask)."""
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
    """A washer with one defect (random kind unless given) and its mask."""
    return add_defect(good_part(size, rng), kind or str(rng.choice(DEFECT_KINDS)), rng)


def good_weave(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,size,3) uint8 RGB image of a defect-free plain-weave fabric, a little warped and
    unevenly lit as cloth on a roller is."""
    period = size / 24 * rng.uniform(0.97, 1.03)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Cloth is never flat: a slow random warp of both thread directions.
    warp_x, warp_y = (cv2.resize(rng.normal(0, 0.15 * period, (4, 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC) for _ in range(2))
    u = (xx + warp_x + rng.uniform(0, period)) / period
    v = (yy + warp_y + rng.uniform(0, period)) / period
    # Each thread's cross-section is bright in its middle; warp and weft alternate on top.
    warp = np.abs(np.sin(np.pi * u)) ** 0.6
    weft = np.abs(np.sin(np.pi * v)) ** 0.6
    warp_on_top = (np.floor(u) + np.floor(v)) % 2 == 0
    relief = np.where(warp_on_top, warp * (0.8 + 0.2 * weft), weft * (0.8 + 0.2 * warp))
    fibres = cv2.resize(rng.normal(0, 1, (size // 2, size // 2)).astype(np.float32), (size, size))
    lighting = 1 + 0.08 * cv2.resize(rng.normal(0, 1, (3, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    shade = (0.55 + 0.45 * relief + 0.06 * fibres) * lighting * rng.uniform(0.93, 1.07)
    colour = np.array([150.0, 118.0, 86.0]) * rng.uniform(0.97, 1.03, 3)
    return np.clip(shade[..., None] * colour, 0, 255).astype(np.uint8)


def add_weave_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a faint fabric defect of `kind` on a copy of `image`; returns (image, (H,W) bool mask)."""
    if kind not in WEAVE_DEFECT_KINDS:
        raise ValueError(f"weave defect kind must be one of {WEAVE_DEFECT_KINDS}, got {kind!r}")
    size = image.shape[0]
    out = image.astype(np.float32)
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    x, y = (int(v) for v in rng.uniform(0.15, 0.85, 2) * size)
    if kind == "stain":
        radius = int(rng.uniform(0.02, 0.05) * size)
        cv2.ellipse(mask, (x, y), (radius, int(radius * rng.uniform(0.5, 1.0))), rng.uniform(0, 180), 0, 360, 1, -1)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), radius / 4)[..., None]
        out = out * (1 - 0.2 * soft) + 0.2 * soft * np.array([90.0, 100.0, 60.0])
    elif kind == "hole":
        radius = int(rng.uniform(0.008, 0.016) * size) + 1
        cv2.ellipse(mask, (x, y), (radius, int(radius * rng.uniform(0.6, 1.0)) + 1), rng.uniform(0, 180), 0, 360, 1, -1)
        out[mask.astype(bool)] *= 0.45
    elif kind == "pull":
        length = int(rng.uniform(0.06, 0.15) * size)
        end = (x + length, y) if rng.random() < 0.5 else (x, y + length)
        cv2.line(mask, (x, y), end, 1, max(2, size // 200))
        out[mask.astype(bool)] = out[mask.astype(bool)] * 1.12 + 6
    else:
        length = rng.uniform(0.05, 0.12) * size
        direction = rng.uniform(0, np.pi)
        end = (int(x + length * np.cos(direction)), int(y + length * np.sin(direction)))
        cv2.line(mask, (x, y), end, 1, max(1, size // 400))
        out[mask.astype(bool)] *= 0.7
    return np.clip(out, 0, 255).astype(np.uint8), mask.astype(bool)


def good_strip(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(height,width,3) uint8 RGB image of a defect-free brushed-metal strip with mounting holes."""
    height, width = shape
    # Brushing: noise stretched along the strip, plus a fine grain.
    streaks = cv2.resize(rng.normal(0, 1, (height // 2, max(2, width // 80))).astype(np.float32), (width, height))
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = rng.uniform(0.94, 1.06) * (1.0 - 0.12 * ((yy / height - 0.5) * 2) ** 2)
    metal = (150 + 9 * streaks + 3 * grain) * light
    edge = np.minimum(yy, height - 1 - yy) < 0.04 * height
    metal = np.where(edge, metal * 0.7, metal)
    offset = rng.uniform(-0.01, 0.01) * width
    for index in range(4):
        cx, cy = (index + 0.5) * width / 4 + offset, height / 2
        distance = np.hypot(xx - cx, yy - cy)
        metal = np.where(distance < 0.12 * height, 35.0, np.where(distance < 0.14 * height, metal * 1.15, metal))
    return np.clip(np.dstack([metal, metal * 0.99, metal * 0.96]), 0, 255).astype(np.uint8)


def add_strip_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a small strip defect of `kind` on a copy of `image`, clear of its holes and edges."""
    if kind not in STRIP_DEFECT_KINDS:
        raise ValueError(f"strip defect kind must be one of {STRIP_DEFECT_KINDS}, got {kind!r}")
    height, width = image.shape[:2]
    out = image.astype(np.float32)
    mask = np.zeros((height, width), dtype=np.uint8)
    # Between two holes, away from the edges.
    x = int((rng.integers(0, 3) + 1 + rng.uniform(-0.3, 0.3)) * width / 4 - width / 8)
    y = int(rng.uniform(0.2, 0.8) * height)
    if kind == "scratch":
        length = rng.uniform(0.02, 0.04) * width
        direction = rng.uniform(0, np.pi)
        end = (int(x + length * np.cos(direction)), int(y + length * np.sin(direction)))
        cv2.line(mask, (x, y), end, 1, 2)
        out[mask.astype(bool)] = out[mask.astype(bool)] * 1.3 + 25
    elif kind == "pit":
        radius = int(rng.uniform(0.008, 0.02) * height) + 3
        cv2.circle(mask, (x, y), radius, 1, -1)
        out[mask.astype(bool)] *= 0.4
    else:
        radius = int(rng.uniform(0.03, 0.05) * height)
        cv2.circle(mask, (x, y), radius, 1, -1)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        # A dent shades one flank and lights the other.
        relief = np.clip(1 - np.hypot(xx - x, yy - y) / radius, 0, 1) * np.sign(xx - x)
        out *= (1 + 0.35 * relief)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), mask.astype(bool)


def part_generators(kind: str, size: int) -> tuple[Callable[[np.random.Generator], np.ndarray], Callable]:
    """(good(rng), defective(rng) -> (image, mask)) for a kind of part ("washer", "weave", "strip")."""
    if kind == "washer":
        return (lambda rng: good_part(size, rng)), (lambda rng: defective_part(size, rng))
    if kind == "weave":
        return (lambda rng: good_weave(size, rng)), (
            lambda rng: add_weave_defect(good_weave(size, rng), str(rng.choice(WEAVE_DEFECT_KINDS)), rng)
        )
    if kind == "strip":
        shape = STRIP_SHAPE if size == STRIP_SHAPE[1] else (size // 4, size)
        return (lambda rng: good_strip(shape, rng)), (
            lambda rng: add_strip_defect(good_strip(shape, rng), str(rng.choice(STRIP_DEFECT_KINDS)), rng)
        )
    raise ValueError(f"part kind must be washer, weave or strip, got {kind!r}")


def write_category(
    root: str | Path, n_train: int, n_test_good: int, n_test_defective: int, size: int, seed: int, kind: str = "washer", gray: bool = False
) -> None:
    """Write an MVTec-layout category of generated parts under `root` (PNG files). `size` is the
    side of a washer or weave image and the long side of a strip (4:1); `gray` saves 8-bit gray."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    good, defective = part_generators(kind, size)
    for folder in ("train/good", "test/good", "test/defective", "ground_truth/defective"):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path, rgb: np.ndarray) -> None:
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR))

    for index in range(n_train):
        save(root / "train/good" / f"{index:03d}.png", good(rng))
    for index in range(n_test_good):
        save(root / "test/good" / f"{index:03d}.png", good(rng))
    for index in range(n_test_defective):
        image, mask = defective(rng)
        save(root / "test/defective" / f"{index:03d}.png", image)
        cv2.imwrite(str(root / "ground_truth/defective" / f"{index:03d}_mask.png"), mask.astype(np.uint8) * 255)
