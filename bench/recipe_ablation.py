"""Train and evaluate recipe variants on MVTec-layout categories; print one row per model.

Each variant is a name and JSON overrides of `Recipe` and `TrainingSettings` fields. Besides the
recipe's own figures (`lineguard eval`'s metrics), every model's maps are also scored other ways
after the fact, from one pass over the test images: the image score (max or a top-k mean), and
the scales weighted as the model weighs them (by their means on good training images), summed
unweighted, or each alone. Models are
trained one after another (never two at once) and kept, so a rerun only evaluates.

    .venv/bin/python bench/recipe_ablation.py --category ../shared/data/mvtec_toothbrush \\
        --variant default='{}' --variant taps345='{"taps": ["relu3_3", "relu4_3", "relu5_3"]}'
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import evaluate, find_test_cases
from model.geometry import map_to_image
from model.images import read_image, read_mask
from model.metrics import image_auroc, pixel_auroc
from model.recipe import Recipe, TrainingSettings
from model.scoring import InspectionModel
from model.training import train

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_imagenet_features.pth"
IMAGE_SCORES = {"max": None, "top1%": 0.01, "top5%": 0.05, "top10%": 0.10}


def scale_maps(model: InspectionModel, images: list[np.ndarray]) -> list[list[torch.Tensor]]:
    """Per image, per tap: the unblurred discrepancy map over the image's own pixels, at input size."""
    batch, fitted = model.prepare(images)
    with torch.inference_mode(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=model.precision == "bf16"):
        per_tap = model.network.scale_maps(batch)
    return [[m[i, : f.content_height, : f.content_width].float().cpu() for m in per_tap] for i, f in enumerate(fitted)]


def scale_maps_of_files(model: InspectionModel, paths: list[Path]) -> list[list[torch.Tensor]]:
    """`scale_maps` of image files, read eight at a time so that memory stays bounded."""
    maps = []
    for start in range(0, len(paths), 8):
        maps.extend(scale_maps(model, [read_image(path) for path in paths[start : start + 8]]))
    return maps


def image_score(anomaly_map: torch.Tensor, fraction: float | None) -> float:
    flat = anomaly_map.flatten()
    if fraction is None:
        return float(flat.max())
    return float(flat.topk(max(1, int(round(flat.numel() * fraction)))).values.mean())


def post_hoc(model: InspectionModel, category: Path) -> dict[str, float]:
    """Image AUROC (and pixel AUROC) of the model's maps combined and scored other ways: the
    scales weighted as the model weighs them, unweighted, and each scale alone."""
    cases = find_test_cases(category)
    labels = np.array([case.is_defective for case in cases], dtype=int)
    weights = model.network.scale_weights.cpu()
    combinations = {"weighted": lambda maps: sum(m * w for m, w in zip(maps, weights)), "unweighted": sum}
    combinations.update({f"{tap} alone": (lambda maps, k=k: maps[k]) for k, tap in enumerate(model.recipe.taps)})
    rows: dict[str, list[float]] = {}
    pixel_maps: dict[str, list[np.ndarray]] = {"weighted": [], "unweighted": []}
    masks = []
    for start in range(0, len(cases), 8):
        chunk = cases[start : start + 8]
        images = [read_image(case.image) for case in chunk]
        for case, image, maps in zip(chunk, images, scale_maps(model, images)):
            for kind, combine in combinations.items():
                blurred = model.network.blur(combine(maps).unsqueeze(0))[0]
                for score_name, fraction in IMAGE_SCORES.items():
                    rows.setdefault(f"{kind} {score_name}", []).append(image_score(blurred, fraction))
                if kind in pixel_maps:
                    pixel_maps[kind].append(map_to_image(blurred.numpy(), image.shape[0], image.shape[1], model.recipe.region))
            masks.append(read_mask(case.mask) if case.mask else np.zeros(image.shape[:2], dtype=bool))
    figures = {f"image_auroc {name}": image_auroc(labels, np.array(values)) for name, values in rows.items()}
    for kind, maps in pixel_maps.items():
        figures[f"pixel_auroc {kind}"] = pixel_auroc(masks, maps)
    return figures


def caught_by_type(scores_csv: Path) -> dict[str, str]:
    """Per defect type (and good), "flagged of all" at the calibrated threshold, from evaluate's scores.csv."""
    counts: dict[str, list[int]] = {}
    with scores_csv.open() as handle:
        for row in csv.DictReader(handle):
            flagged, total = counts.setdefault(row["defect_type"], [0, 0])
            counts[row["defect_type"]] = [flagged + (row["is_anomaly"] == "True"), total + 1]
    return {kind: f"{flagged}/{total}" for kind, (flagged, total) in sorted(counts.items())}


def run_variant(category: Path, name: str, overrides: dict, runs: Path, weights: str) -> dict:
    recipe_fields = {k: v for k, v in overrides.items() if k in Recipe.model_fields}
    settings_fields = {k: v for k, v in overrides.items() if k not in recipe_fields}
    checkpoint = runs / f"{category.name}-{name}.pt"
    if not checkpoint.is_file():
        train(category, checkpoint, Recipe(**recipe_fields), TrainingSettings(**settings_fields), weights)
    payload = read_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint)
    started = time.monotonic()
    report_dir = runs / f"{category.name}-{name}-report"
    figures = evaluate(model, category, report_dir, progress=False)
    figures["caught_by_type"] = caught_by_type(report_dir / "scores.csv")
    # The after-the-fact combinations re-weigh the local scales of whole images: they do not
    # describe a model with a global branch or one that scores in tiles.
    if not model.recipe.global_branch and model.recipe.pixel_scale is None:
        figures.update(post_hoc(model, category))
    figures.update(
        category=category.name,
        variant=name,
        overrides=overrides,
        version=model.version,
        input_shape=model.recipe.input_shape,
        train_seconds=payload["training_data"]["seconds"],
        eval_seconds=round(time.monotonic() - started, 1),
        calibration_scores=payload["training_data"]["calibration_scores"],
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", type=Path, action="append", required=True, help="MVTec-layout folder (repeat)")
    parser.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides (repeat)")
    parser.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="where models and results go")
    parser.add_argument("--teacher-weights", default=str(DEFAULT_WEIGHTS))
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    variants = [(spec.split("=", 1)[0], json.loads(spec.split("=", 1)[1])) for spec in args.variant]
    results = args.runs / "results.jsonl"
    for category in args.category:
        for name, overrides in variants:
            figures = run_variant(category, name, overrides, args.runs, args.teacher_weights)
            with results.open("a") as handle:
                handle.write(json.dumps(figures, default=float) + "\n")
            post = (
                f"| weighted max {figures['image_auroc weighted max']:.3f} top5% {figures['image_auroc weighted top5%']:.3f} "
                if "image_auroc weighted max" in figures
                else ""
            )
            print(
                f"{category.name:>20} {name:>16}: image {figures['image_auroc']:.3f} pixel {figures['pixel_auroc']:.3f} "
                f"aupro {figures['aupro']:.3f} FRR {figures['false_reject_rate']:.3f} recall {figures['defect_recall']:.3f} "
                f"{post}| flagged {figures['caught_by_type']} | train {figures['train_seconds']:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
