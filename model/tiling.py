"""Scoring at a constant pixel scale: an image cut into tiles of the network's input shape.

For a texture, and for a set of images of varied sizes, what stays constant is the size of a
pixel, not the frame: fitting a 110 px wide tile and a 600 px wide one into one input shape sees
their grain at scales several times apart. With the recipe's `pixel_scale`, an image is scaled by
that factor only, cut into overlapping tiles of the input shape, every tile goes through the same
network, and the tiles' maps are stitched back (averaged where they overlap). A side shorter than
a tile is filled by reflection and the filling cut off the map again, as `fit_image` does.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

# Neighbouring tiles overlap by at least this share of a tile, so that no part of the image is seen
# only at a tile's border, where the networks' zero padding makes their features least reliable.
MIN_OVERLAP = 0.25


def scaled(image: np.ndarray, pixel_scale: float) -> np.ndarray:
    """(H,W,3) uint8 scaled by `pixel_scale` (1.0: as it is)."""
    if pixel_scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, int(round(width * pixel_scale))), max(1, int(round(height * pixel_scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if pixel_scale < 1.0 else cv2.INTER_LINEAR)


def tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of `tile` pixels covering `length`, evenly spread, overlapping by at
    least MIN_OVERLAP; one tile (filled beyond `length`) when `length` <= `tile`."""
    if length <= tile:
        return [0]
    step = tile * (1.0 - MIN_OVERLAP)
    count = int(np.ceil((length - tile) / step)) + 1
    return [int(round(k * (length - tile) / (count - 1))) for k in range(count)]


def padded_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` filled by reflection (right and bottom) to at least height x width."""
    pad_bottom, pad_right = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not (pad_bottom or pad_right):
        return image
    border = cv2.BORDER_REFLECT_101 if pad_bottom < image.shape[0] and pad_right < image.shape[1] else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(image, 0, pad_bottom, 0, pad_right, border)


def cut_tiles(image: np.ndarray, height: int, width: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """(H,W,3) -> tiles of height x width covering it, and each tile's (top, left)."""
    full = padded_to(image, height, width)
    boxes = [(top, left) for top in tile_starts(image.shape[0], height) for left in tile_starts(image.shape[1], width)]
    return [np.ascontiguousarray(full[top : top + height, left : left + width]) for top, left in boxes], boxes


def stitched(tile_maps: torch.Tensor, boxes: list[tuple[int, int]], height: int, width: int) -> torch.Tensor:
    """(N,...,h,w) maps of the tiles of one image -> its (...,height,width) map, overlaps averaged."""
    tile_height, tile_width = tile_maps.shape[-2:]
    total = torch.zeros(*tile_maps.shape[1:-2], max(height, tile_height), max(width, tile_width), dtype=tile_maps.dtype)
    counts = torch.zeros(total.shape[-2:], dtype=tile_maps.dtype)
    for tile_map, (top, left) in zip(tile_maps.cpu(), boxes):
        total[..., top : top + tile_height, left : left + tile_width] += tile_map
        counts[top : top + tile_height, left : left + tile_width] += 1
    return (total / counts)[..., :height, :width]


def tiled_maps(
    images: list[np.ndarray], height: int, width: int, batch_size: int, maps_of: Callable[[list[np.ndarray]], torch.Tensor]
) -> list[torch.Tensor]:
    """Each (H,W,3) image cut into tiles of height x width, the tiles of all images through
    `maps_of` (tiles -> (n,...,h,w) maps on the CPU) `batch_size` at a time, so that small images
    share a forward pass, and each image's maps stitched back: per image, its (...,H,W) map."""
    tiles, layouts = [], []
    for image in images:
        image_tiles, boxes = cut_tiles(image, height, width)
        layouts.append((len(tiles), boxes, *image.shape[:2]))
        tiles += image_tiles
    maps = torch.cat([maps_of(tiles[start : start + batch_size]) for start in range(0, len(tiles), batch_size)])
    return [stitched(maps[first : first + len(boxes)], boxes, h, w) for first, boxes, h, w in layouts]


def random_crop(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A height x width crop at a random place of `image` (filled by reflection where it is smaller)."""
    full = padded_to(image, height, width)
    top = int(rng.integers(0, full.shape[0] - height + 1))
    left = int(rng.integers(0, full.shape[1] - width + 1))
    return np.ascontiguousarray(full[top : top + height, left : left + width])
