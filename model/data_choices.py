"""What training chooses from the good images where the recipe leaves it unsaid.

A line engineer trains with the default recipe; whether a folder is a texture cut at many sizes,
or lit differently part to part, is measured here from the images rather than asked. Only the
fields a recipe was not given are chosen (`Recipe.model_fields_set`: a recipe read back from a
checkpoint, as a retraining's is, has every field given and keeps them), and the measurements go
into the checkpoint, so the choice can be read back and undone (`--pixel-scale whole`,
`--lighting as_captured`). docs/design.md, "Chosen from the data", has the measurements behind the
two bounds.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from model.geometry import fit_scale_spread, input_shape_for
from model.lighting import lighting_spread
from model.recipe import Recipe
from model.tiling import MIN_OVERLAP

log = logging.getLogger(__name__)

# Whole images seen at scales this far apart or more, and cut to shapes this far apart (width over
# height), are a texture cut at many sizes: its grain changes size between them, which tiles at one
# pixel scale avoid. Images of one shape at several resolutions are one view from several cameras,
# which fitting whole suits. The generated tile is 2.2x apart in scale and 8.2x in shape; toothbrush,
# the board and the strip 1.0x in both.
VARIED_SIZES = 1.5
# Good parts whose lighting differs by this much (lighting.lighting_spread) are levelled. The
# generated tile under six lightings measures 0.197; toothbrush 0.057, its gray copy 0.104, the weave
# 0.077-0.081, the board 0.042, the strip 0.036.
VARIED_LIGHTING = 0.15
# Chosen tiles are at native pixels unless the median image would then be cut into more tiles
# than this (an image's worth of tiles is scored per frame).
MAX_CHOSEN_TILES = 16


def tile_pixel_scale(image_shapes: list[tuple[int, int]], tile_side: int) -> float:
    """The pixel scale chosen for tiles: 1.0 (native), or less where the median image would
    otherwise take more than MAX_CHOSEN_TILES tiles (counted by the new area each tile adds)."""
    median_area = float(np.median([height * width for height, width in image_shapes]))
    new_area_per_tile = (tile_side * (1.0 - MIN_OVERLAP)) ** 2
    return round(min(1.0, float(np.sqrt(MAX_CHOSEN_TILES * new_area_per_tile / median_area))), 3)


def choose_from_data(
    recipe: Recipe, seen_shapes: list[tuple[int, int]], sample: Callable[[], list[np.ndarray]]
) -> tuple[Recipe, dict]:
    """The recipe with its unsaid pixel scale and lighting chosen from the training images, and the
    measurements (for the checkpoint). `seen_shapes` are the training images' (region's) sizes;
    `sample()` gives some of them decoded, region applied, when the lighting must be measured."""
    unsaid = set(Recipe.model_fields) - recipe.model_fields_set
    chosen: dict = {}
    whole_input = input_shape_for(seen_shapes, recipe.image_size, recipe.stride)
    scale_spread = fit_scale_spread(seen_shapes, whole_input)
    aspects = [width / height for height, width in seen_shapes]
    shape_spread = max(aspects) / min(aspects)
    if recipe.pixel_scale is None and scale_spread >= VARIED_SIZES:
        if "pixel_scale" in unsaid and not recipe.global_branch and shape_spread >= VARIED_SIZES:
            chosen["pixel_scale"] = tile_pixel_scale(seen_shapes, recipe.image_size)
            log.info(
                "the training images are cut to different sizes and shapes (fitted whole they would be seen %.1fx apart): "
                "training and scoring tiles at pixel scale %.3f instead (--pixel-scale whole fits them whole)",
                scale_spread, chosen["pixel_scale"],
            )
        else:
            log.warning(
                "the training images differ in size: fitted whole into the %dx%d input, they are seen at scales up to "
                "%.1fx apart. For a texture, whose grain has one size in pixels, --pixel-scale 1.0 trains and scores "
                "tiles at one pixel scale instead (docs/design.md, 'Tiles at a constant pixel scale').",
                whole_input[1], whole_input[0], scale_spread,
            )
    measured = {"scale_spread": round(scale_spread, 3), "shape_spread": round(shape_spread, 3)}
    if "lighting" in unsaid:
        measured["lighting_spread"] = round(lighting_spread(sample()), 3)
        if measured["lighting_spread"] >= VARIED_LIGHTING:
            chosen["lighting"] = "levelled"
            log.info(
                "the good images' lighting differs part to part (spread %.3f, levelled from %.2f): levelling each "
                "image's lighting (--lighting as_captured keeps it as captured)", measured["lighting_spread"], VARIED_LIGHTING,
            )
    if chosen:
        recipe = Recipe.model_validate({**recipe.model_dump(exclude_unset=True), **chosen})
    return recipe, {**measured, "chosen": chosen}
