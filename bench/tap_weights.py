"""How much each tap's map counts: one trained model's maps re-weighted, no training.

This prints, for the model's own weights (its `scale_weights`), for the weights each
`scale_weighting` gives (`model.training.fit_scale_weights` on the model's own training images,
as training would set them: `map_mean`, each scale of a good part's map averaging the same;
`score_spread`, also each by the inverse spread of its image scores) and for the map_mean weights
times factors given per tap (`--weights 1,3,1`): image AUROC and, at a threshold calibrated again
on the model's held-out images as training does, good parts flagged and defective parts caught.
Blur and image score are the model's. For whole-image models without the global branch.

    .venv/bin/python bench/tap_weights.py --checkpoint runs/d1000/mvtec_toothbrush-default.pt \
        --category ../shared/data/mvtec_toothbrush --weights 1,2,1 --weights 1,3,1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench.recipe_ablation import scale_maps_of_files
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import list_images
from model.metrics import image_auroc
from model.scoring import image_score, smoothed
from model.training import fit_scale_weights, load_training_images


def scores(model, maps: list[list[torch.Tensor]], weights: torch.Tensor) -> np.ndarray:
    """Each image's score, as the recipe scores it, of its taps' maps weighted by `weights` and summed."""
    kernel = model.network.blur_kernel.cpu()
    return np.array(
        [float(image_score(model.recipe, smoothed(sum(m * w for m, w in zip(per_tap, weights)).unsqueeze(0), kernel)[0])) for per_tap in maps]
    )


def weights_of(model, images: list[np.ndarray], weighting: str) -> torch.Tensor:
    """The scale weights training would set with `scale_weighting: weighting` from its training
    `images` as `load_training_images` gives them; the model's own are kept."""
    network = model.network
    kept = network.recipe, network.scale_weights.clone()
    network.recipe = model.recipe.model_copy(update={"scale_weighting": weighting})
    try:
        statistics = fit_scale_weights(network, images, model.device, model.precision)
        print(f"training images: scales' mean maps {np.round(statistics['map_means'], 3).tolist()}, "
              f"image-score spreads {np.round(statistics['score_spreads'], 4).tolist()}")
        return network.scale_weights.cpu().clone()
    finally:
        network.recipe = kept[0]
        network.scale_weights.copy_(kept[1])


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
    calibration_maps = scale_maps_of_files(model, [folder / name for name in training["calibration_images"]])
    cases = find_test_cases(args.category)
    test_maps = scale_maps_of_files(model, [case.image for case in cases])
    defective = np.array([case.defect_type != "good" for case in cases])

    images = load_training_images([path for path in list_images(folder) if path.name not in held_out], model.recipe, progress=False)[0]
    variants = {f"model ({model.recipe.scale_weighting})": model.network.scale_weights.cpu().clone()}
    variants.update({weighting: weights_of(model, images, weighting) for weighting in ("map_mean", "score_spread")})
    mean_weights = variants["map_mean"]
    for text in args.weights:
        factors = torch.tensor([float(v) for v in text.split(",")], dtype=mean_weights.dtype)
        if len(factors) != taps:
            raise SystemExit(f"--weights {text}: {len(factors)} factors for {taps} taps")
        variants[f"map_mean x {text}"] = mean_weights * factors * taps / factors.sum()
    for name, weights in variants.items():
        threshold = fit_calibration(scores(model, calibration_maps, weights), model.calibration.false_reject_rate).threshold
        test = scores(model, test_maps, weights)
        print(
            f"{name:>20} (factors on map_mean's {np.round((weights / mean_weights).double().numpy(), 2).tolist()}): "
            f"image AUROC {image_auroc(defective, test):.3f}, good flagged {int((test[~defective] > threshold).sum())}/"
            f"{int((~defective).sum())}, defective caught {int((test[defective] > threshold).sum())}/{int(defective.sum())}",
            flush=True,
        )


if __name__ == "__main__":
    main()
