"""Image AUROC of one trained model with its maps turned into image scores in different ways.

The recipe's image score is the mean of the top `topk_fraction` of the anomaly map; this prints
the image AUROC for the map's maximum, several top-k shares and its mean, from one pass over the
test images, so the choice can be checked on any MVTec-layout category.

    .venv/bin/python bench/image_score_ablation.py runs/toothbrush.pt ../shared/data/mvtec_toothbrush
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.evaluation import find_test_cases
from model.images import read_image
from model.metrics import image_auroc

TOPK_FRACTIONS = (0.001, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("category", help="MVTec-layout folder with test/ and ground_truth/")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    model = load_checkpoint(args.checkpoint, device=args.device)
    cases = find_test_cases(args.category)
    labels = np.array([case.is_defective for case in cases], dtype=int)
    maps = []
    for start in range(0, len(cases), 8):
        images = [read_image(case.image) for case in cases[start : start + 8]]
        maps.append(model.maps_and_scores(*model.prepare(images))[0].cpu())
    flat = torch.cat(maps).flatten(1)

    def auroc_of(scores: torch.Tensor) -> float:
        return image_auroc(labels, scores.numpy().astype(np.float64))

    print(f"model {model.version} (recipe: top {model.recipe.topk_fraction:.1%}), {labels.sum()} defective / {(labels == 0).sum()} good")
    print(f"{'image score':>14} {'image AUROC':>11}")
    print(f"{'max':>14} {auroc_of(flat.amax(dim=1)):11.4f}")
    for fraction in TOPK_FRACTIONS:
        k = max(1, int(round(flat.shape[1] * fraction)))
        print(f"{f'top {fraction:.1%} mean':>14} {auroc_of(flat.topk(k, dim=1).values.mean(dim=1)):11.4f}")
    print(f"{'mean':>14} {auroc_of(flat.mean(dim=1)):11.4f}")


if __name__ == "__main__":
    main()
