"""Rules for how much each tap's map counts, read from good training images and from generated
defects drawn on them, then scored through the model's own scoring path (tiles, region and
lighting included).

Every rule keeps the model's student and sets only its scale weights: the mean-map weights
(`scale_weighting: map_mean`, from the checkpoint's `training_data.scale_means`) times one factor
per tap, the factors averaging 1. On the same fixed sample of good training views that training's
scale statistics use (`statistics_inputs`), each tap's map alone gives every view an image score
(blur and image score as the recipe's, in units of the tap's mean map); the same views with one
generated defect each (a thin stroke, a foreign patch, or a piece of the view copied elsewhere)
give a second set. Per tap: the spread (sd) of the good views' scores, and the mean rise a defect
gives them. Rules:

- map_mean: factors 1 (today's default);
- score_spread: the recipe's option, as training sets it (`fit_scale_weights`): 1 / the spread of
  each tap's scores of the sample's whole images through the scoring path (for a tiled model every
  tile of an image, stitched);
- crop_spread: 1 / the spread over the sample's views (for a tiled model one crop per image), the
  option's first form, rejected on the tile;
- defect_zscore: rise / spread, each tap by how many of its good spreads a generated defect lifts it;
- defect_lda: rise / spread², the weights that best separate the two sets for independent taps.

For each rule: the threshold calibrated again on the model's held-out images (as training does),
then image AUROC, good parts flagged and defective parts caught per defect type on the category's
test set. The generated defects know nothing of the category's own.

    .venv/bin/python bench/scale_rules.py --checkpoint runs/d1000/tile-spread.pt --category runs/categories/tile
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.tap_weights import weights_of
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import list_images, read_image
from model.metrics import image_auroc
from model.synthetic import unrelated_image
from model.training import load_training_images, statistics_inputs, tap_image_scores


RULES = ("map_mean", "score_spread", "crop_spread", "defect_zscore", "defect_lda")


def generated_defect(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`view` with one defect of no category's making: a thin stroke (a crack, a scratch, a cut or
    bent lead), a foreign patch (a stain, a wrong component) or a piece of the view copied over
    another place (a part moved or missing), at 2-15% of the view's side."""
    height, width = view.shape[:2]
    side = min(height, width)
    out = view.copy()
    y, x = int(rng.integers(side // 8, height - side // 8)), int(rng.integers(side // 8, width - side // 8))
    kind = int(rng.integers(3))
    if kind == 0:
        length, angle = rng.uniform(0.05, 0.15) * side, rng.uniform(0, np.pi)
        end = (int(x + length * np.cos(angle)), int(y + length * np.sin(angle)))
        cv2.line(out, (x, y), end, tuple(int(v) for v in rng.integers(0, 256, 3)), int(rng.integers(1, 4)))
    elif kind == 1:
        mask = np.zeros((height, width), dtype=np.uint8)
        axes = (int(rng.uniform(0.02, 0.08) * side), int(rng.uniform(0.02, 0.08) * side))
        cv2.ellipse(mask, (x, y), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        out[mask > 0] = unrelated_image((height, width), rng)[mask > 0]
    else:
        size = int(rng.uniform(0.06, 0.15) * side)
        top, left = min(y, height - size), min(x, width - size)
        source_top, source_left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
        out[top : top + size, left : left + size] = view[source_top : source_top + size, source_left : source_left + size]
    return out


def raw_scores(model, images: list[np.ndarray]) -> np.ndarray:
    """The model's raw scores, eight images at a time so that memory stays bounded."""
    return np.concatenate([model.raw_scores(images[start : start + 8]) for start in range(0, len(images), 8)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--category", type=Path, required=True, help="MVTec-layout category with test/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    args = parser.parse_args()

    model = load_checkpoint(args.checkpoint, device="cpu", precision="fp32")
    if model.recipe.global_branch:
        raise SystemExit("the global branch's quantiles were fitted to the model's own weights: a model without it, please")
    training = read_checkpoint(args.checkpoint)["training_data"]
    folder = Path(training["folder"])
    held_out = set(training["calibration_images"])
    images = load_training_images([path for path in list_images(folder) if path.name not in held_out], model.recipe, progress=False)[0]
    views = statistics_inputs(model.recipe, images)
    rng = np.random.default_rng(args.seed)
    means = np.array(training["scale_means"])
    # Each view is one input (a crop of a tiled model's image), scored as a whole: its tap scores.
    good = tap_image_scores(model.network, views, model.device, model.precision).numpy() / means
    defects = [generated_defect(view, rng) for view in views]
    rise = (tap_image_scores(model.network, defects, model.device, model.precision).numpy() / means - good).mean(axis=0)
    spread = good.std(axis=0)
    print(f"{len(views)} good training views; per tap: image-score spread over the views {np.round(spread, 4).tolist()}, "
          f"mean rise from a generated defect {np.round(rise, 4).tolist()}")
    floor = 0.05 * rise.max()  # a tap a generated defect hardly moves still counts a little
    mean_weights = torch.tensor(1.0 / (len(means) * means), dtype=model.network.scale_weights.dtype)
    rules = {
        "map_mean": np.ones_like(spread),
        "score_spread": (weights_of(model, images, "score_spread") / mean_weights).double().numpy(),
        "crop_spread": 1 / spread,
        "defect_zscore": np.maximum(rise, floor) / spread,
        "defect_lda": np.maximum(rise, floor) / spread**2,
    }
    calibration_images = [read_image(folder / name) for name in training["calibration_images"]]
    cases = find_test_cases(args.category)
    test_images = [read_image(case.image) for case in cases]
    defective = np.array([case.defect_type != "good" for case in cases])
    for name in args.rules:
        factors = rules[name]
        factors = factors * len(factors) / factors.sum()
        model.network.scale_weights.copy_(mean_weights * torch.tensor(factors, dtype=mean_weights.dtype))
        threshold = fit_calibration(raw_scores(model, calibration_images), model.calibration.false_reject_rate).threshold
        scores = raw_scores(model, test_images)
        flagged = Counter(case.defect_type for case, score in zip(cases, scores) if score > threshold)
        totals = Counter(case.defect_type for case in cases)
        print(
            f"{name:>14} (factors {np.round(factors, 2).tolist()}): image AUROC {image_auroc(defective, scores):.3f}; flagged "
            + ", ".join(f"{kind} {flagged[kind]}/{totals[kind]}" for kind in sorted(totals)),
            flush=True,
        )


if __name__ == "__main__":
    main()
