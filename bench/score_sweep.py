"""Many ways of turning one trained model's maps into scores, from one pass of the network.

The model's scale maps (unblurred, per tap) are computed once for its held-out calibration images
and a category's test images; then for every blur sigma and image score the threshold is
calibrated again on the held-out images (as training does) and the test images are scored. One
row per variant: image AUROC, pixel AUROC (at the map's resolution, masks scaled to it), good
parts flagged and defective parts caught per defect type at the threshold. For whole-image models
without the global branch (whose quantiles depend on the blur); `bench/score_variants.py`
rescores any model through the full scoring path, one variant at a time.

    .venv/bin/python bench/score_sweep.py --checkpoint runs/proxy/board-today120.pt --category runs/categories/board
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.recipe_ablation import scale_maps
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import read_image, read_mask
from model.metrics import image_auroc, pixel_auroc
from model.scoring import gaussian_kernel, smoothed

SIGMAS = (1.0, 2.0, 4.0)
SHARES = {"max": None, "top0.5%": 0.005, "top1%": 0.01, "top2%": 0.02, "top5%": 0.05, "top10%": 0.10}


def local_maps(model, images: list[np.ndarray]) -> list[torch.Tensor]:
    """Per image, the scales weighted and summed as the model does, unblurred, over its own pixels."""
    weights = model.network.scale_weights.cpu()
    return [sum(m * w for m, w in zip(maps, weights)) for maps in scale_maps(model, images)]


def all_maps(model, paths: list[Path]) -> list[torch.Tensor]:
    maps = []
    for start in range(0, len(paths), 8):
        maps += local_maps(model, [read_image(path) for path in paths[start : start + 8]])
    return maps


def score(anomaly_map: torch.Tensor, share: float | None) -> float:
    flat = anomaly_map.flatten()
    if share is None:
        return float(flat.max())
    return float(flat.topk(max(1, int(round(flat.numel() * share)))).values.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--category", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/score_sweep.jsonl"))
    args = parser.parse_args()
    payload = read_checkpoint(args.checkpoint)
    model = load_checkpoint(args.checkpoint, device="cpu")
    if model.recipe.global_branch or model.recipe.pixel_scale is not None:
        raise SystemExit("score_sweep re-blurs the local map of whole images: use bench/score_variants.py for this model")
    folder = Path(payload["training_data"]["folder"])
    held_out = all_maps(model, [folder / name for name in payload["training_data"]["calibration_images"]])
    cases = find_test_cases(args.category)
    test = all_maps(model, [case.image for case in cases])
    labels = np.array([case.is_defective for case in cases], dtype=int)
    masks = []
    for case, test_map in zip(cases, test):
        height, width = test_map.shape
        mask = read_mask(case.mask).astype(np.uint8) if case.mask else np.zeros((height, width), np.uint8)
        masks.append(cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0)
    rate = payload["training_data"]["settings"]["false_reject_rate"]
    types = sorted({case.defect_type for case in cases} - {"good"})
    print(f"{args.checkpoint.stem} on {args.category.name} (recipe blur {model.recipe.blur_sigma}, {model.recipe.image_score} {model.recipe.topk_fraction})")
    print(f"| blur | image score | image AUROC | pixel AUROC | good flagged | caught | {' | '.join(types)} |")
    for sigma in SIGMAS:
        kernel = gaussian_kernel(sigma)
        blurred_held_out = [smoothed(m.unsqueeze(0), kernel)[0] for m in held_out]
        blurred_test = [smoothed(m.unsqueeze(0), kernel)[0] for m in test]
        pixel = pixel_auroc(masks, [m.numpy() for m in blurred_test])
        for name, share in SHARES.items():
            threshold = fit_calibration([score(m, share) for m in blurred_held_out], rate).threshold
            scores = np.array([score(m, share) for m in blurred_test])
            flagged = scores > threshold
            by_type = {t: f"{int(sum(f for f, c in zip(flagged, cases) if c.defect_type == t))}/{sum(c.defect_type == t for c in cases)}" for t in types}
            row = {
                "checkpoint": args.checkpoint.stem, "category": args.category.name, "blur_sigma": sigma, "image_score": name,
                "image_auroc": image_auroc(labels, scores), "pixel_auroc": pixel,
                "good_flagged": f"{int(flagged[labels == 0].sum())}/{int((labels == 0).sum())}",
                "caught": f"{int(flagged[labels == 1].sum())}/{int(labels.sum())}", "by_type": by_type,
            }
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"| {sigma:g} | {name} | {row['image_auroc']:.3f} | {pixel:.3f} | {row['good_flagged']} | {row['caught']} | {' | '.join(by_type.values())} |", flush=True)


if __name__ == "__main__":
    main()
