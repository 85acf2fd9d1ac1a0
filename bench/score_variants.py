"""Score a trained model's maps other ways, without training again: recipe fields that do not
change the weights (blur_sigma, image_score, topk_fraction) overridden, the threshold calibrated
again on the checkpoint's own held-out images, then evaluated. One row per variant.

    .venv/bin/python bench/score_variants.py --checkpoint runs/board.pt --category runs/categories/board \\
        --variant blur2-top1='{"blur_sigma": 2, "topk_fraction": 0.01}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.recipe_ablation import caught_by_type
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.evaluation import evaluate
from model.images import read_image
from model.recipe import Recipe
from model.scoring import InspectionModel, TeacherStudent

SCORING_FIELDS = {"blur_sigma", "image_score", "topk_fraction"}


def rescored(checkpoint: Path, overrides: dict) -> InspectionModel:
    """The checkpoint's model with scoring fields overridden and its threshold calibrated again."""
    unknown = set(overrides) - SCORING_FIELDS
    if unknown:
        raise SystemExit(f"only {sorted(SCORING_FIELDS)} can change without training; got {sorted(unknown)}")
    payload = read_checkpoint(checkpoint)
    trained = load_checkpoint(checkpoint, device="cpu")
    network = TeacherStudent(Recipe.model_validate({**payload["recipe"], **overrides}))
    network.load_state_dict(payload["state_dict"])
    model = InspectionModel.from_network(network, None, trained.version, trained.teacher_source, trained.device, trained.precision)
    folder = Path(payload["training_data"]["folder"])
    images = [read_image(folder / name) for name in payload["training_data"]["calibration_images"]]
    scores = [score for start in range(0, len(images), 8) for score in model.raw_scores(images[start : start + 8])]
    model.calibration = fit_calibration(scores, payload["training_data"]["settings"]["false_reject_rate"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--category", type=Path, required=True)
    parser.add_argument("--variant", action="append", required=True, help="NAME=JSON overrides of scoring fields (repeat)")
    parser.add_argument("--runs", type=Path, default=Path("runs/score_variants"))
    args = parser.parse_args()
    for spec in args.variant:
        name, overrides = spec.split("=", 1)[0], json.loads(spec.split("=", 1)[1])
        report_dir = args.runs / f"{args.category.name}-{args.checkpoint.stem}-{name}"
        figures = evaluate(rescored(args.checkpoint, overrides), args.category, report_dir, progress=False)
        print(
            f"{args.category.name} {args.checkpoint.stem} {name}: image {figures['image_auroc']:.3f} pixel {figures['pixel_auroc']:.3f} "
            f"FRR {figures['false_reject_rate']:.3f} recall {figures['defect_recall']:.3f} flagged {caught_by_type(report_dir / 'scores.csv')}",
            flush=True,
        )


if __name__ == "__main__":
    main()
