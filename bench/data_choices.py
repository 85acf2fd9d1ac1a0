"""What training would choose from each folder's good images for the default recipe
(model/data_choices.py), and the two measurements behind it, without training.

    PYTHONPATH=. .venv/bin/python bench/data_choices.py ../shared/data/mvtec_toothbrush runs/categories/*

Training measures its own training split (the calibration images held out), so its figures, in
the checkpoint's `training_data.data_choices`, differ from these in the last digit or two.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from model.data_choices import choose_from_data
from model.images import read_image
from model.recipe import Recipe
from model.training import LIGHTING_SAMPLE_IMAGES, evenly_spaced, find_good_images, good_image_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("categories", type=Path, nargs="+", help="folders of good images, or MVTec-layout categories")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{'folder':24s} {'images':>6s} {'scale spread':>12s} {'shape spread':>12s} {'lighting spread':>15s}  chosen")
    for category in args.categories:
        folder, _ = good_image_folder(category)
        paths, shapes, _ = find_good_images(folder)
        sample = evenly_spaced(paths, LIGHTING_SAMPLE_IMAGES)
        _, measured = choose_from_data(Recipe(), shapes, lambda: [read_image(path) for path in sample])
        chosen = ", ".join(f"{key} {value}" for key, value in measured["chosen"].items()) or "the default"
        print(f"{category.name:24s} {len(paths):6d} {measured['scale_spread']:12.2f} {measured['shape_spread']:12.2f} {measured['lighting_spread']:15.3f}  {chosen}")


if __name__ == "__main__":
    main()
