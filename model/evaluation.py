"""Evaluation of a model on an MVTec-layout category, and the report folder it writes.

Layout: `test/good/*`, `test/<defect type>/*`, `ground_truth/<defect type>/<stem>_mask.*`.
Pixel metrics are computed at each image's own resolution.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model import metrics, report
from model.errors import DatasetError
from model.images import IMAGE_SUFFIXES, list_images, read_image, read_mask
from model.scoring import InspectionModel

WORST_CASES_SHOWN = 3


@dataclass(frozen=True)
class TestCase:
    image: Path
    defect_type: str
    mask: Path | None

    @property
    def is_defective(self) -> bool:
        return self.mask is not None


def find_test_cases(category_dir: Path) -> list[TestCase]:
    """Every test image with its mask; a defect image without a mask is an error naming it."""
    test_dir = Path(category_dir) / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"{category_dir} is not an MVTec-layout category: {test_dir} is missing")
    cases = []
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for image_path in list_images(type_dir):
            if type_dir.name == "good":
                cases.append(TestCase(image_path, "good", None))
                continue
            mask_dir = Path(category_dir) / "ground_truth" / type_dir.name
            masks = [mask_dir / f"{image_path.stem}_mask{suffix}" for suffix in IMAGE_SUFFIXES]
            found = next((m for m in masks if m.is_file()), None)
            if found is None:
                raise DatasetError(f"defect image {image_path} has no mask: expected {masks[0]}")
            cases.append(TestCase(image_path, type_dir.name, found))
    if not any(c.is_defective for c in cases) or all(c.is_defective for c in cases):
        raise DatasetError(f"{test_dir} needs both good and defective images to evaluate")
    return cases


def evaluate(model: InspectionModel, category_dir: str | Path, report_dir: str | Path, batch_size: int = 8, progress: bool = True) -> dict:
    """Score every test image, write metrics.json, scores.csv and pictures to `report_dir`."""
    started = time.monotonic()
    cases = find_test_cases(Path(category_dir))
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    scores, maps, masks = [], [], []
    for start in tqdm(range(0, len(cases), batch_size), desc="evaluating", unit="batch", disable=not progress):
        chunk = cases[start : start + batch_size]
        images = [read_image(c.image) for c in chunk]
        for case, image, result in zip(chunk, images, model.score_images(images)):
            mask = read_mask(case.mask) if case.mask else np.zeros(image.shape[:2], dtype=bool)
            if mask.shape != image.shape[:2]:
                raise DatasetError(f"mask {case.mask} is {mask.shape[1]}x{mask.shape[0]}, its image {case.image} is {image.shape[1]}x{image.shape[0]}")
            scores.append(result.raw_score)
            maps.append(result.anomaly_map)
            masks.append(mask)
    labels = np.array([c.is_defective for c in cases], dtype=np.int64)
    raw_scores = np.array(scores, dtype=np.float64)
    figures = {
        "image_auroc": metrics.image_auroc(labels, raw_scores),
        "pixel_auroc": metrics.pixel_auroc(masks, maps),
        "aupro": metrics.aupro(masks, maps),
        "image_f1_max": metrics.f1_max(labels, raw_scores),
        **metrics.rates_at_threshold(labels, raw_scores, model.calibration.threshold),
        "n_good": int((labels == 0).sum()),
        "n_defective": int(labels.sum()),
    }
    _write_pictures(model, cases, labels, raw_scores, maps, masks, report_dir)
    _write_scores(model, cases, raw_scores, report_dir / "scores.csv")
    figures["seconds"] = round(time.monotonic() - started, 2)
    (report_dir / "metrics.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _write_scores(model: InspectionModel, cases: list[TestCase], raw_scores: np.ndarray, path: Path) -> None:
    normalised = model.calibration.normalise(raw_scores)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "defect_type", "raw_score", "score", "is_anomaly"])
        for case, raw, score in zip(cases, raw_scores, normalised):
            writer.writerow([str(case.image), case.defect_type, f"{raw:.6f}", f"{score:.6f}", bool(raw > model.calibration.threshold)])


def _write_pictures(model, cases, labels, raw_scores, maps, masks, report_dir: Path) -> None:
    report.save_roc_curves(report_dir / "roc_curves.png", labels, raw_scores, masks, maps)
    report.save_score_histogram(report_dir / "score_histogram.png", labels, raw_scores, threshold=model.calibration.threshold)
    # Worst misses: the highest-scoring good parts and the lowest-scoring defective ones.
    good = [i for i in np.argsort(-raw_scores) if labels[i] == 0][:WORST_CASES_SHOWN]
    defective = [i for i in np.argsort(raw_scores) if labels[i] == 1][:WORST_CASES_SHOWN]
    (report_dir / "worst_misses").mkdir(exist_ok=True)
    for kind, indices in (("good_highest", good), ("defective_lowest", defective)):
        for rank, index in enumerate(indices, start=1):
            case = cases[index]
            title = f"{case.defect_type} {case.image.name}: score {model.calibration.normalise(raw_scores[index]):.3f}"
            report.save_case_panel(
                report_dir / "worst_misses" / f"{kind}_{rank}_{case.image.stem}.png",
                read_image(case.image),
                model.calibration.normalise(maps[index]),
                masks[index] if case.is_defective else None,
                title,
                0.0,
                1.0,
            )
