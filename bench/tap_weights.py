"""How much each tap's map counts: one trained model's maps re-weighted, no training.

The model weighs its taps so that each scale of a good part's map averages the same (its
`scale_weights`). This multiplies those weights by further factors per tap, given (`--weights
1,3,1`) or from a rule on the good training images (each tap's image scores: the inverse of
their spread, their mean over their spread), and for each prints image AUROC and, at a threshold
calibrated again on the model's held-out images as training does, good parts flagged and defective
parts caught. Blur and image score are the model's. For whole-image models without the global branch.

    .venv/bin/python bench/tap_weights.py --checkpoint runs/d1000/mvtec_toothbrush-default.pt \
        --category ../shared/data/mvtec_toothbrush --weights 1,2,1 --weights 1,3,1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.recipe_ablation import image_score, scale_maps
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import list_images, read_image
from model.metrics import image_auroc
from model.scoring import smoothed


def per_tap_maps(model, paths: list[Path]) -> list[list[torch.Tensor]]:
    """Per image, per tap: the map weighted by the model's scale weight, unblurred."""
    weights = model.network.scale_weights.cpu()
    maps = []
    for start in range(0, len(paths), 8):
        for per_tap in scale_maps(model, [read_image(path) for path in paths[start : start + 8]]):
            maps.append([m * w for m, w in zip(per_tap, weights)])
    return maps


def scores(model, maps: list[list[torch.Tensor]], factors: np.ndarray) -> np.ndarray:
    """Each image's score, as the recipe scores it, of its taps' maps times `factors`, summed."""
    kernel = model.network.blur_kernel.cpu()
    fraction = None if model.recipe.image_score == "max" else model.recipe.topk_fraction
    return np.array(
        [image_score(smoothed(sum(m * float(f) for m, f in zip(per_tap, factors)).unsqueeze(0), kernel)[0], fraction) for per_tap in maps]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--category", type=Path, required=True, help="MVTec-layout category with test/")
    parser.add_argument("--weights", action="append", default=[], help="factor per tap, comma-separated (repeatable)")
    args = parser.parse_args()

    model = load_checkpoint(args.checkpoint, device="cpu", precision="auto")
    training = read_checkpoint(args.checkpoint)["training_data"]
    folder = Path(training["folder"])
    held_out = set(training["calibration_images"])
    taps = len(model.recipe.taps)
    calibration_maps = per_tap_maps(model, [folder / name for name in training["calibration_images"]])
    training_maps = per_tap_maps(model, [path for path in list_images(folder) if path.name not in held_out])
    cases = find_test_cases(args.category)
    test_maps = per_tap_maps(model, [case.image for case in cases])
    defective = np.array([case.defect_type != "good" for case in cases])

    alone = [scores(model, training_maps, np.eye(taps)[tap]) for tap in range(taps)]
    means, spreads = np.array([s.mean() for s in alone]), np.array([s.std() for s in alone])
    print(f"training images, each tap alone: image score mean {means.round(3).tolist()}, sd {spreads.round(4).tolist()}")
    variants = {"model (equal)": np.ones(taps), "1 / sd": 1.0 / spreads, "mean / sd": means / spreads}
    variants.update({f"given {text}": np.array([float(v) for v in text.split(",")]) for text in args.weights})
    for name, factors in variants.items():
        if len(factors) != taps:
            raise SystemExit(f"{name}: {len(factors)} factors for {taps} taps")
        factors = factors / factors.sum() * taps
        threshold = fit_calibration(scores(model, calibration_maps, factors), model.calibration.false_reject_rate).threshold
        test = scores(model, test_maps, factors)
        print(
            f"{name:>16} factors {factors.round(2).tolist()}: image AUROC {image_auroc(defective, test):.3f}, "
            f"good flagged {int((test[~defective] > threshold).sum())}/{int((~defective).sum())}, "
            f"defective caught {int((test[defective] > threshold).sum())}/{int(defective.sum())}",
            flush=True,
        )


if __name__ == "__main__":
    main()
