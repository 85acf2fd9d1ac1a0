"""Could training choose the image score's share by itself? Measured against the real defects.

The image score is the mean of the top share of a map's pixels. A small share (top 1-2%) catches
defects a few pixels wide (cut leads, cracks); a wide one (top 5%) ranks patches best and keeps
good parts with scattered high pixels (bristle tips) low. No share suits every set (docs/design.md,
"The default at 1,000 steps"). Training has only good images, so the idea measured here is
the usual one of the field: paint defects of no particular kind on the held-out good images
(an ellipse of another part of the same image, CutPaste's idea, from a speck to a patch, round or
a thin scratch, at any opacity), and keep the share that catches most of them at the threshold the
held-out images calibrate. The painted defects are generic on purpose: the generated categories'
own defects (model/synthetic.py) would choose for the test they are then scored on.

For each share, the table gives the painted defects caught and their AUROC against the held-out
images, the real test's flagged and caught counts at the same share, and where the threshold sits
(in held-out standard deviations above their mean) beside the highest held-out and test good
scores, so a threshold set too high by its held-out images shows: the choice is worth
building only if it picks, per set, a share that does well on the real defects.

    .venv/bin/python bench/share_choice.py --checkpoint runs/d1000/tile-default.pt --category runs/categories/tile
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench.recipe_ablation import image_score, scale_maps
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import read_image
from model.metrics import image_auroc

SHARES = {"max": None, "top1%": 0.01, "top2%": 0.02, "top5%": 0.05, "top10%": 0.10}
PAINTED_PER_IMAGE = 4


def painted_defect(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ellipse of the image (1-12% of its shorter side across; one in three a scratch ten times
    longer than wide) replaced by the same image shifted by a quarter to a half of its size, blended
    at an opacity of 0.5-1."""
    height, width = image.shape[:2]
    side = min(height, width)
    axis = max(1, int(rng.uniform(0.005, 0.06) * side))
    axes = (axis * 10, max(1, axis // 2)) if rng.random() < 1 / 3 else (axis, max(1, int(axis * rng.uniform(0.5, 1.0))))
    centre = (int(rng.uniform(0.1, 0.9) * width), int(rng.uniform(0.1, 0.9) * height))
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    shift = (rng.uniform(0.25, 0.5, size=2) * (height, width) * rng.choice([-1, 1], size=2)).astype(int)
    source = np.roll(image, tuple(shift), axis=(0, 1))
    opacity = rng.uniform(0.5, 1.0) * (mask[..., None] / 255.0)
    return (image * (1 - opacity) + source * opacity).astype(np.uint8)


def weighted_maps(model, images: list[np.ndarray]) -> list:
    """The scales weighted and summed as the model does, blurred as the recipe blurs."""
    weights = model.network.scale_weights.cpu()
    maps = []
    for start in range(0, len(images), 8):
        for per_tap in scale_maps(model, images[start : start + 8]):
            maps.append(model.network.blur(sum(m * w for m, w in zip(per_tap, weights)).unsqueeze(0))[0])
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--category", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    payload = read_checkpoint(args.checkpoint)
    model = load_checkpoint(args.checkpoint, device="cpu")
    if model.recipe.global_branch or model.recipe.pixel_scale is not None:
        raise SystemExit("share_choice scores the local map of whole images")
    rng = np.random.default_rng(args.seed)
    folder = Path(payload["training_data"]["folder"])
    held_images = [read_image(folder / name) for name in payload["training_data"]["calibration_images"]]
    painted = [painted_defect(image, rng) for image in held_images for _ in range(PAINTED_PER_IMAGE)]
    cases = find_test_cases(args.category)
    labels = np.array([case.is_defective for case in cases], dtype=int)
    held_maps, painted_maps = weighted_maps(model, held_images), weighted_maps(model, painted)
    test_maps = weighted_maps(model, [read_image(case.image) for case in cases])
    rate = payload["training_data"]["settings"]["false_reject_rate"]
    print(f"{args.checkpoint.stem} on {args.category.name}: {len(held_images)} held-out good images, {len(painted)} painted defects")
    print("| image score | painted: caught, AUROC | test: image AUROC | good flagged | caught | threshold, highest held-out, highest test good (held-out sd above their mean) |")
    print("|---|---|---|---|---|---|")
    caught_painted = {}
    for name, share in SHARES.items():
        held = np.array([image_score(m, share) for m in held_maps])
        threshold = fit_calibration(held, rate).threshold
        painted_scores = np.array([image_score(m, share) for m in painted_maps])
        test_scores = np.array([image_score(m, share) for m in test_maps])
        caught_painted[name] = float((painted_scores > threshold).mean())
        painted_auroc = image_auroc(np.r_[np.zeros(held.size, int), np.ones(painted_scores.size, int)], np.r_[held, painted_scores])
        flagged = test_scores > threshold
        mean, sd = held.mean(), held.std(ddof=1)
        place = ", ".join(f"{(value - mean) / sd:.1f}" for value in (threshold, held.max(), test_scores[labels == 0].max()))
        print(
            f"| {name} | {caught_painted[name]:.1%}, {painted_auroc:.3f} | {image_auroc(labels, test_scores):.3f} | "
            f"{int(flagged[labels == 0].sum())} / {int((labels == 0).sum())} | {int(flagged[labels == 1].sum())} / {int(labels.sum())} | {place} |",
            flush=True,
        )
    print("the painted defects would choose:", max(caught_painted, key=caught_painted.get))


if __name__ == "__main__":
    main()
