"""Generated parts for tests, the demo and benchmarks, each with ground-truth masks of its defects.

Five kinds of product, each drawn from the given seed:
- `washer`: a textured washer on a belt, an object (scratches, dark spots, chipped edges);
- `weave`: a woven fabric, a texture without an object (faint stains, small holes, pulled threads, cuts);
- `strip`: a long brushed-metal strip with mounting holes, 2000x500 by default (small
  scratches, pits and dents: a few dozen pixels on a megapixel image);
- `board`: a circuit board with several components on thin leads, which are 2-3 px wide once the
  image is scaled to 256 px (a component missing or moved, a lead cut short or bent: defects a
  purely local comparison misses, as the background they leave is locally plausible);
- `tile`: a gray texture in images of varied sizes (110-620 px wide, 235-390 high) under six
  lightings, with faint cracks, blowholes and broken corners.
Good parts vary a little in position and lighting, as they would under a line camera.

`unrelated_image` draws images of no product at all (random textures and shapes): what training
shows the student so that it learns not to reproduce the teacher on what is unlike the part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "spot", "chip")
WEAVE_DEFECT_KINDS = ("stain", "hole", "pull", "cut")
STRIP_DEFECT_KINDS = ("scratch", "pit", "dent")
STRIP_SHAPE = (500, 2000)
BOARD_DEFECT_KINDS = ("missing", "moved", "cut", "bent")
TILE_DEFECT_KINDS = ("crack", "blowhole", "break")
# (centre x, centre y, half width, half height) of each component, as fractions of the board's side,
# and how many leads it has on each of its left and right sides.
BOARD_COMPONENTS = ((0.28, 0.30, 0.10, 0.07, 3), (0.70, 0.28, 0.07, 0.10, 4), (0.30, 0.72, 0.06, 0.05, 2), (0.70, 0.70, 0.12, 0.08, 4))
# Six lightings of the tile: (gain, gradient along x, gradient along y).
TILE_LIGHTINGS = ((1.0, 0.0, 0.0), (0.8, 0.25, 0.0), (1.15, 0.0, -0.2), (0.9, -0.2, 0.15), (0.7, 0.1, 0.1), (1.25, -0.1, -0.1))


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


@dataclass(frozen=True)
class Lead:
    """A straight lead from `start` (on the component) to `end` (its pad), in pixels."""

    start: tuple[float, float]
    end: tuple[float, float]


def _board_layout(size: int, rng: np.random.Generator) -> tuple[list[tuple[int, int, int, int]], list[list[Lead]]]:
    """Components (x0, y0, x1, y1) and their leads on one board, shifted a little as a camera sees it."""
    shift = rng.uniform(-0.01, 0.01, 2) * size
    boxes, leads = [], []
    for cx, cy, half_w, half_h, per_side in BOARD_COMPONENTS:
        x, y = cx * size + shift[0], cy * size + shift[1]
        w, h = half_w * size, half_h * size
        boxes.append((int(x - w), int(y - h), int(x + w), int(y + h)))
        length = 0.06 * size
        own = []
        for side in (-1, 1):
            for k in range(per_side):
                ly = y - h + (k + 0.5) * 2 * h / per_side
                own.append(Lead((x + side * w, ly), (x + side * (w + length), ly)))
        leads.append(own)
    return boxes, leads


def _draw_component(image: np.ndarray, box: tuple[int, int, int, int], leads: list[Lead], lead_width: int, light: float) -> None:
    for lead in leads:
        _draw_lead(image, lead.start, lead.end, lead_width, light)
    x0, y0, x1, y1 = box
    cv2.rectangle(image, (x0, y0), (x1, y1), tuple(int(v * light) for v in (38, 38, 42)), -1)
    cv2.circle(image, (x0 + (x1 - x0) // 6, y0 + (y1 - y0) // 4), max(2, (x1 - x0) // 20), tuple(int(v * light) for v in (90, 90, 95)), -1)


def _draw_lead(image: np.ndarray, start, end, lead_width: int, light: float) -> None:
    cv2.line(image, tuple(int(round(v)) for v in start), tuple(int(round(v)) for v in end), tuple(int(v * light) for v in (205, 200, 185)), lead_width, cv2.LINE_AA)


def _board_background(size: int, boxes, leads, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A green board with its traces and every lead's solder pad, and the lighting drawn for it."""
    texture = 4 * _texture(size, rng)
    image = np.dstack([30 + texture, 95 + texture, 55 + texture]).astype(np.float32)
    light = rng.uniform(0.93, 1.07)
    image = np.clip(image * light, 0, 255).astype(np.uint8)
    pad = max(2, size // 110)
    for own in leads:
        for lead in own:
            end = tuple(int(round(v)) for v in lead.end)
            cv2.circle(image, end, pad, tuple(int(v * light) for v in (150, 140, 90)), -1)
    return image, light


def _lead_width(size: int) -> int:
    """Leads 2-3 px wide once a board is scaled to 256 px."""
    return max(1, int(round(size / 100)))


def good_board(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size,size,3) uint8 RGB image of a board with every component in place on intact leads."""
    return defective_board(size, rng, None)[0]


def defective_board(size: int, rng: np.random.Generator, kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """A board with one defect of `kind` (None: a good board) and the defect's (H,W) bool mask."""
    if kind is not None and kind not in BOARD_DEFECT_KINDS:
        raise ValueError(f"board defect kind must be one of {BOARD_DEFECT_KINDS}, got {kind!r}")
    boxes, leads = _board_layout(size, rng)
    image, light = _board_background(size, boxes, leads, rng)
    width = _lead_width(size)
    mask = np.zeros((size, size), dtype=np.uint8)
    target = int(rng.integers(len(boxes)))
    margin = width + 2
    for index, (box, own) in enumerate(zip(boxes, leads)):
        if index != target or kind is None:
            _draw_component(image, box, own, width, light)
            continue
        footprint = np.zeros_like(mask)
        _draw_component(footprint, box, own, width + 2 * margin, 1.0)
        if kind == "missing":
            mask |= footprint > 0
        elif kind == "moved":
            dx, dy = (rng.choice([-1, 1], 2) * rng.uniform(0.04, 0.07, 2) * size).astype(int)
            moved_box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
            moved_leads = [Lead((l.start[0] + dx, l.start[1] + dy), (l.end[0] + dx, l.end[1] + dy)) for l in own]
            _draw_component(image, moved_box, moved_leads, width, light)
            _draw_component(footprint, moved_box, moved_leads, width + 2 * margin, 1.0)
            mask |= footprint > 0
        else:
            broken = int(rng.integers(len(own)))
            lead = own[broken]
            # The mask covers the whole broken lead, where it is and where it should be.
            _draw_component(image, box, [l for k, l in enumerate(own) if k != broken], width, light)
            middle = ((lead.start[0] + lead.end[0]) / 2, (lead.start[1] + lead.end[1]) / 2)
            if kind == "cut":
                # Cut short at 30-50% of its length: the rest of the lead is gone, its pad stays.
                share = rng.uniform(0.3, 0.5)
                kept_end = (lead.start[0] + share * (lead.end[0] - lead.start[0]), lead.start[1])
                _draw_lead(image, lead.start, kept_end, width, light)
                cv2.line(mask, tuple(int(v) for v in lead.start), tuple(int(v) for v in lead.end), 1, width + 2 * margin)
            else:
                # Bent at its middle by 35-60 degrees, up or down: it misses its pad.
                angle = np.deg2rad(rng.uniform(35, 60)) * rng.choice([-1, 1])
                half = lead.end[0] - middle[0]
                bent_end = (middle[0] + half * np.cos(angle), middle[1] + abs(half) * np.sin(angle))
                _draw_lead(image, lead.start, middle, width, light)
                _draw_lead(image, middle, bent_end, width, light)
                cv2.line(mask, tuple(int(v) for v in middle), tuple(int(v) for v in bent_end), 1, width + 2 * margin)
                cv2.line(mask, tuple(int(v) for v in lead.start), tuple(int(v) for v in lead.end), 1, width + 2 * margin)
    return image, mask.astype(bool)


def tile_shape(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of a tile image: 235-390 high, 110-620 wide, as a line's crops vary."""
    return int(rng.integers(235, 391)), int(rng.integers(110, 621))


def lamp(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(height,width) float32 light falling on an image: one of the six TILE_LIGHTINGS (a gain and
    gradients), times a little drift."""
    height, width = shape
    gain, gx, gy = TILE_LIGHTINGS[int(rng.integers(len(TILE_LIGHTINGS)))]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return gain * (1 + gx * (xx / width - 0.5) + gy * (yy / height - 0.5)) * rng.uniform(0.96, 1.04)


def good_tile(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(height,width,3) uint8 gray image of a defect-free tile surface under one of six lightings.
    Its grain has a constant size in pixels whatever the image's size, as under a fixed camera."""
    height, width = shape
    fine = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.2)
    blotches = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 9) * 6
    gray = (110 + 14 * fine + 10 * blotches) * lamp(shape, rng)
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def add_tile_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw a faint tile defect of `kind` on a copy of `image`; returns (image, (H,W) bool mask)."""
    if kind not in TILE_DEFECT_KINDS:
        raise ValueError(f"tile defect kind must be one of {TILE_DEFECT_KINDS}, got {kind!r}")
    height, width = image.shape[:2]
    out = image.astype(np.float32)
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y = int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height)
    if kind == "crack":
        # A wandering hairline, 1-2 px wide and 25-35% darker: faint at any scale but the native one.
        points = [(x, y)]
        direction = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(6, 12))):
            direction += rng.normal(0, 0.5)
            step = rng.uniform(5, 10)
            points.append((int(points[-1][0] + step * np.cos(direction)), int(points[-1][1] + step * np.sin(direction))))
        cv2.polylines(mask, [np.array(points, dtype=np.int32)], False, 1, int(rng.integers(1, 3)))
        out[mask.astype(bool)] *= rng.uniform(0.65, 0.75)
    elif kind == "blowhole":
        radius = int(rng.integers(3, 7))
        cv2.circle(mask, (x, y), radius, 1, -1)
        out[mask.astype(bool)] *= 0.55
    else:
        # A corner broken off: the background shows through a ragged triangle.
        corner_x, corner_y = (0 if rng.random() < 0.5 else width - 1), (0 if rng.random() < 0.5 else height - 1)
        reach = rng.uniform(0.08, 0.15) * min(height, width)
        triangle = np.array([(corner_x, corner_y), (abs(corner_x - reach), corner_y), (corner_x, abs(corner_y - reach))], dtype=np.int32)
        cv2.fillPoly(mask, [triangle], 1)
        out[mask.astype(bool)] = 25.0
    return np.clip(out, 0, 255).astype(np.uint8), mask.astype(bool)


# Shapes drawn on an unrelated image, at most.
UNRELATED_MAX_SHAPES = 24


def unrelated_image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(height,width,3) uint8 RGB image of no product: a coloured noise texture of a random grain
    size under random filled and outlined ellipses, boxes, lines and polygons of random colours."""
    height, width = shape
    grain = rng.uniform(1.0, 24.0)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), grain)
    noise /= noise.std() + 1e-6
    image = rng.uniform(0, 255, 3) + rng.uniform(5, 60) * noise
    image = np.ascontiguousarray(np.clip(image, 0, 255).astype(np.uint8))
    side = min(height, width)
    for _ in range(int(rng.integers(0, UNRELATED_MAX_SHAPES + 1))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, max(2, side // 32)))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        extent = rng.uniform(0.02, 0.3) * side
        kind = rng.integers(4)
        if kind == 0:
            axes = (max(1, int(extent)), max(1, int(extent * rng.uniform(0.2, 1.0))))
            cv2.ellipse(image, centre, axes, rng.uniform(0, 180), 0, 360, colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            corner = (int(centre[0] + extent * rng.uniform(-1, 1)), int(centre[1] + extent * rng.uniform(-1, 1)))
            cv2.rectangle(image, centre, corner, colour, thickness)
        elif kind == 2:
            end = (int(centre[0] + extent * rng.uniform(-2, 2)), int(centre[1] + extent * rng.uniform(-2, 2)))
            cv2.line(image, centre, end, colour, max(1, thickness), cv2.LINE_AA)
        else:
            points = (np.array(centre) + rng.uniform(-extent, extent, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            if thickness < 0:
                cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
            else:
                cv2.polylines(image, [points], True, colour, thickness, cv2.LINE_AA)
    return image


def part_generators(kind: str, size: int) -> tuple[Callable[[np.random.Generator], np.ndarray], Callable]:
    """(good(rng), defective(rng) -> (image, mask)) for a kind of part ("washer", "weave", "strip",
    "board" or "tile"; a tile's size is drawn per image, `size` is ignored)."""
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
    if kind in ("board", "tile"):
        good = (lambda rng: good_board(size, rng)) if kind == "board" else (lambda rng: good_tile(tile_shape(rng), rng))
        types = BOARD_DEFECT_KINDS if kind == "board" else TILE_DEFECT_KINDS
        return good, (lambda rng: typed_defect(kind, size, str(rng.choice(types)), rng))
    raise ValueError(f"part kind must be washer, weave, strip, board or tile, got {kind!r}")


# Kinds whose defects are written one folder per defect type, the types in turn, so that the share
# caught can be stated per type (the older kinds keep their single `defective` folder and draws).
DEFECT_TYPES_BY_KIND = {"board": BOARD_DEFECT_KINDS, "tile": TILE_DEFECT_KINDS}


def write_category(
    root: str | Path, n_train: int, n_test_good: int, n_test_defective: int, size: int, seed: int, kind: str = "washer", gray: bool = False
) -> None:
    """Write an MVTec-layout category of generated parts under `root` (PNG files). `size` is the
    side of a washer, weave or board image and the long side of a strip (4:1); `gray` saves 8-bit gray."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    good, defective = part_generators(kind, size)
    types = DEFECT_TYPES_BY_KIND.get(kind)
    for folder in ("train/good", "test/good", *(f"{base}/{t}" for base in ("test", "ground_truth") for t in (types or ["defective"]))):
        (root / folder).mkdir(parents=True, exist_ok=True)

    def save(path: Path, rgb: np.ndarray) -> None:
        cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR))

    for index in range(n_train):
        save(root / "train/good" / f"{index:03d}.png", good(rng))
    for index in range(n_test_good):
        save(root / "test/good" / f"{index:03d}.png", good(rng))
    for index in range(n_test_defective):
        if types:
            defect_type = types[index % len(types)]
            image, mask = typed_defect(kind, size, defect_type, rng)
        else:
            defect_type = "defective"
            image, mask = defective(rng)
        save(root / "test" / defect_type / f"{index:03d}.png", image)
        cv2.imwrite(str(root / "ground_truth" / defect_type / f"{index:03d}_mask.png"), mask.astype(np.uint8) * 255)


def typed_defect(kind: str, size: int, defect_type: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A board or tile with one defect of the given type, and its mask."""
    if kind == "board":
        return defective_board(size, rng, defect_type)
    return add_tile_defect(good_tile(tile_shape(rng), rng), defect_type, rng)
