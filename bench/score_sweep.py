"""Many ways of turning one trained model's maps into scores, from one pass of the network.

The model's scale maps (unblurred, per tap) are computed once for its held-out calibration images
and a category's test images. Each "component" is one map (the scales weighted and summed as the
model does, or one tap alone), one blur sigma and one image score (max or a top-k mean). Then, for
every component alone and for a few unions of components, the threshold is calibrated again on
the held-out images (as training does) and the test images are scored. A union takes, per image,
the largest of its components' z-scores (each component standardised by its mean and sd on the
held-out images), so a part is flagged when any of its components is unusual; its threshold is
then calibrated on the held-out images' union scores, which also gave the z-scores (optimistic
for the flagged counts, not for AUROC). One row per variant: image AUROC, pixel AUROC (of the
component's map at the map's resolution, masks scaled to it), good parts flagged and defective
parts caught per defect type at the threshold. For whole-image models without the global branch
(whose quantiles depend on the blur); `bench/score_variants.py` rescores any model through the
full scoring path, one variant at a time.

    .venv/bin/python bench/score_sweep.py --checkpoint runs/proxy/board-today120.pt --category runs/categories/board
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.recipe_ablation import image_score, scale_maps_of_files
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import find_test_cases
from model.images import read_mask
from model.metrics import image_auroc, pixel_auroc
from model.scoring import gaussian_kernel, smoothed

SIGMAS = (1.0, 2.0, 4.0)
SHARES = {"max": None, "top0.5%": 0.005, "top1%": 0.01, "top2%": 0.02, "top5%": 0.05, "top10%": 0.10}
#: Unions of components (map, blur sigma, image score) scored by their largest held-out z-score.
UNIONS = {
    "weighted top5% s4 or weighted max s2": [("weighted", 4.0, "top5%"), ("weighted", 2.0, "max")],
    "weighted top5% s4 or weighted top1% s4": [("weighted", 4.0, "top5%"), ("weighted", 4.0, "top1%")],
    "weighted top5% s4 or weighted top0.5% s1": [("weighted", 4.0, "top5%"), ("weighted", 1.0, "top0.5%")],
    "each tap top5% s4": [("tap0", 4.0, "top5%"), ("tap1", 4.0, "top5%"), ("tap2", 4.0, "top5%")],
    "each tap top5% s4 or weighted max s2": [("tap0", 4.0, "top5%"), ("tap1", 4.0, "top5%"), ("tap2", 4.0, "top5%"), ("weighted", 2.0, "max")],
}


def combined_maps(model, paths: list[Path]) -> list[dict[str, torch.Tensor]]:
    """Per image: the scales weighted and summed as the model does ("weighted") and each tap alone
    ("tap0", ...), unblurred, over the image's own pixels."""
    weights = model.network.scale_weights.cpu()
    maps = []
    for per_tap in scale_maps_of_files(model, paths):
        kinds = {"weighted": sum(m * w for m, w in zip(per_tap, weights))}
        kinds.update({f"tap{k}": m * w for k, (m, w) in enumerate(zip(per_tap, weights))})
        maps.append(kinds)
    return maps


def add_combinations(held_out: list[dict[str, torch.Tensor]], test: list[dict[str, torch.Tensor]], taps: int) -> None:
    """Add more maps per image: "spread-weighted", each tap's map standardised by the mean and
    sd of its pixels on the held-out good images (instead of divided by its mean on training
    images), then summed, so a tap whose good maps vary much counts less; and "taps 0+1", the two
    shallowest taps alone (without the deepest, where unseen good parts differ most). Where every
    map has one shape (a category of one image size), also "position-centred": the weighted map
    less its mean at each position over the held-out images, so a place that is always high on
    good parts (bristle tips, edges) counts for less; its flagged counts are optimistic, the held-out
    images both centring and calibrating it."""
    stats = []
    for k in range(taps):
        pixels = torch.cat([m[f"tap{k}"].flatten() for m in held_out])
        stats.append((float(pixels.mean()), float(pixels.std())))
    for maps in held_out + test:
        maps["spread-weighted"] = sum((maps[f"tap{k}"] - mean) / sd for k, (mean, sd) in enumerate(stats))
        maps["taps 0+1"] = maps["tap0"] + maps["tap1"]
    if len({m["weighted"].shape for m in held_out + test}) == 1:
        good_mean = torch.stack([m["weighted"] for m in held_out]).mean(0)
        for maps in held_out + test:
            maps["position-centred"] = maps["weighted"] - good_mean


def component_scores(maps: list[dict[str, torch.Tensor]], kind: str, sigma: float) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Every image score of one map kind at one blur, and the blurred maps (for pixel AUROC)."""
    kernel = gaussian_kernel(sigma)
    blurred = [smoothed(m[kind].unsqueeze(0), kernel)[0] for m in maps]
    return {name: np.array([image_score(b, share) for b in blurred]) for name, share in SHARES.items()}, [b.numpy() for b in blurred]


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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(payload["training_data"]["folder"])
    held_out = combined_maps(model, [folder / name for name in payload["training_data"]["calibration_images"]])
    cases = find_test_cases(args.category)
    test = combined_maps(model, [case.image for case in cases])
    add_combinations(held_out, test, len(model.recipe.taps))
    labels = np.array([case.is_defective for case in cases], dtype=int)
    masks = []
    for case, test_map in zip(cases, test):
        height, width = test_map["weighted"].shape
        if case.mask is None:
            masks.append(np.zeros((height, width), dtype=bool))
            continue
        # The maps cover the recipe's region only; so must the masks they are scored against.
        mask = np.ascontiguousarray(model.in_region(read_mask(case.mask).astype(np.uint8)))
        masks.append(cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0)
    rate = payload["training_data"]["settings"]["false_reject_rate"]
    types = sorted({case.defect_type for case in cases} - {"good"})

    def row(name: str, held: np.ndarray, scores: np.ndarray, pixel: float | None) -> None:
        threshold = fit_calibration(list(held), rate).threshold
        flagged = scores > threshold
        by_type = {t: f"{int(sum(f for f, c in zip(flagged, cases) if c.defect_type == t))}/{sum(c.defect_type == t for c in cases)}" for t in types}
        record = {
            "checkpoint": args.checkpoint.stem, "category": args.category.name, "variant": name,
            "image_auroc": image_auroc(labels, scores), "pixel_auroc": pixel,
            "good_flagged": f"{int(flagged[labels == 0].sum())}/{int((labels == 0).sum())}",
            "caught": f"{int(flagged[labels == 1].sum())}/{int(labels.sum())}", "by_type": by_type,
        }
        with args.out.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        pixel_text = f"{pixel:.3f}" if pixel is not None else ""
        print(f"| {name} | {record['image_auroc']:.3f} | {pixel_text} | {record['good_flagged']} | {record['caught']} | {' | '.join(by_type.values())} |", flush=True)

    print(f"{args.checkpoint.stem} on {args.category.name} (recipe blur {model.recipe.blur_sigma}, {model.recipe.image_score} {model.recipe.topk_fraction})")
    print(f"| map, blur, image score | image AUROC | pixel AUROC | good flagged | caught | {' | '.join(types)} |")
    components: dict[tuple[str, float, str], tuple[np.ndarray, np.ndarray]] = {}
    kinds = ["weighted", "spread-weighted", "taps 0+1"] + [f"tap{k}" for k in range(len(model.recipe.taps))]
    for kind in kinds + (["position-centred"] if "position-centred" in test[0] else []):
        for sigma in SIGMAS:
            held_scores, _ = component_scores(held_out, kind, sigma)
            test_scores, blurred_test = component_scores(test, kind, sigma)
            pixel = pixel_auroc(masks, blurred_test)
            for name in SHARES:
                components[(kind, sigma, name)] = (held_scores[name], test_scores[name])
                row(f"{kind} s{sigma:g} {name}", held_scores[name], test_scores[name], pixel)
    for name, members in UNIONS.items():
        held_z, test_z = [], []
        for member in members:
            held, scores = components[member]
            mean, sd = held.mean(), max(held.std(ddof=1), 1e-9)
            held_z.append((held - mean) / sd)
            test_z.append((scores - mean) / sd)
        row(f"union: {name}", np.max(held_z, axis=0), np.max(test_z, axis=0), None)
    today = components[("weighted", model.recipe.blur_sigma, "top5%")][1]
    good = [(s, c.image.name) for s, c in zip(today, cases) if not c.is_defective]
    print("highest good test parts (weighted top5% at the recipe's blur):", sorted(good, reverse=True)[:4])


if __name__ == "__main__":
    main()
