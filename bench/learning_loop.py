"""The learning loop on a line whose good parts are not quite the training folder's.

A model trains on the dev set's train/good. The line then sends unseen parts: the dev set's 12
test/good and 30 test/defective parts, each seen several times through the line-camera
augmentation (shift, rotation, scale, exposure: `model.augment`), all under one white-balance and
exposure change of the line's light. The first half of the parts is the line's past: scored by the
model, stored as the worker stores them (rows, pictures of flagged parts and of one passed part in
`--good-sample-every`), and every flagged part reviewed. The second half measures:

- the original model;
- after `models recalibrate` on the past half (same weights, threshold from the line's parts);
- after `models retrain` (original images + the past half's false alarms and kept passed pictures;
  its threshold from the line pictures it did not train on, each weighted by the line's parts of its
  kind; also printed: the threshold those pictures give unweighted).

For each it prints the false-reject rate and defect recall on the second half, and the reviews it
needed; and, whatever the threshold, how well its scores separate good from defective parts (image
AUROC, and the recall of the best threshold for the stated rate), also for the original on the same
views under the training folder's light: what the line's light costs. The original's and the
recalibration's rows print before the retraining starts. Trainings are short proxies (`--steps`);
run it under the training lock:

    flock /tmp/lineguard-train.lock .venv/bin/python bench/learning_loop.py --out runs/learning
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

from lineguard.recalibration import plan_recalibration
from lineguard.registration import register_checkpoint
from lineguard.retraining import gather_training_data, line_calibration_pictures, retrain
from model.augment import augmented_view
from model.calibration import fit_calibration
from model.choices import Lighting, options
from model.checkpoint import load_checkpoint, read_checkpoint
from model.images import list_images, read_image
from model.metrics import image_auroc
from model.recipe import Recipe, TrainingSettings
from model.training import calibration_scores, train
from store.artifacts import open_artifact_store
from store.db import make_engine, upgrade
from store.records import InspectionRecord, active_model_info, save_frame_reviews, write_inspections
from worker.evidence import GoodSample, evidence_keys, save_evidence

DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "mvtec_toothbrush"
LINE = "line-shifted"
#: The line's light: brighter, and warmer (more red, less blue) than the training folder's.
EXPOSURE_GAIN = 1.12
WHITE_BALANCE_RGB = (1.06, 1.0, 0.90)
#: Side the line's camera delivers (the dev set's 1024 px halved: memory and time).
LINE_SIDE = 512


def line_light(image: np.ndarray) -> np.ndarray:
    """The line's exposure and white balance applied to an RGB uint8 image."""
    gains = EXPOSURE_GAIN * np.array(WHITE_BALANCE_RGB, dtype=np.float32)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def line_parts(views_good: int, views_defective: int, seed: int) -> list[tuple[str, bool, np.ndarray, np.ndarray]]:
    """(frame id, is defective, image under the line's light, the same view under the training
    folder's light) of the parts the line sends, shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for folder, defective, views in ((DEV_SET / "test" / "good", False, views_good), (DEV_SET / "test" / "defective", True, views_defective)):
        for path in list_images(folder):
            base = cv2.resize(read_image(path), (LINE_SIDE, LINE_SIDE), interpolation=cv2.INTER_AREA)
            for view in range(views):
                kind = "defect" if defective else "good"
                view_image = augmented_view(base, rng)
                parts.append((f"{kind}-{path.stem}-{view}", defective, line_light(view_image), view_image))
    order = rng.permutation(len(parts))
    return [parts[i] for i in order]


def score(model, images: list[np.ndarray]) -> list:  # noqa: ANN001 - InspectionModel
    results = []
    for start in range(0, len(images), 8):
        results += model.score_images(images[start : start + 8])
    return results


def separation(results: list, truth: list[bool], rate: float) -> tuple[float, float]:  # noqa: ANN001 - ImageResult
    """How well the raw scores separate defective from good parts, whatever the threshold: image
    AUROC, and the recall of the best threshold for `rate` (the one flagging that share of these
    very good parts, which no line can know in advance)."""
    scores, truth_array = np.array([result.raw_score for result in results]), np.array(truth)
    best = np.quantile(scores[~truth_array], 1.0 - rate, method="higher")
    return image_auroc(truth_array, scores), float((scores[truth_array] > best).mean())


def rates(flags: list[bool], truth: list[bool]) -> tuple[float, float]:
    """(false-reject rate on good parts, recall on defective parts)."""
    flags_array, truth_array = np.array(flags), np.array(truth)
    return float(flags_array[~truth_array].mean()), float(flags_array[truth_array].mean())


TABLE_HEADER = f"\n{'model':14}{'stated FRR':>12}{'measured FRR':>14}{'defect recall':>15}{'AUROC':>8}{'best recall':>13}{'reviews':>9}"


def print_row(name: str, stated_rate: float, false_rejects: float, recall: float, area: float, best_recall: float, reviews: int) -> None:
    print(f"{name:14}{stated_rate:>12.1%}{false_rejects:>14.1%}{recall:>15.1%}{area:>8.3f}{best_recall:>13.1%}{reviews:>9}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, the line's store and pictures")
    parser.add_argument("--model", type=Path, help="an original checkpoint trained on the dev set's train/good (default: train one)")
    parser.add_argument("--teacher-weights", default=str(Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_imagenet_features.pth"))
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps of each training (proxy; default 300)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--lighting", choices=options(Lighting), default="as_captured",
        help="the recipe's lighting (levelled: each image divided by its own illumination; model/lighting.py)",
    )
    parser.add_argument(
        "--colour-jitter", type=float, default=0.0,
        help="the recipe's colour_jitter: training views relit, exposure and channel gains from 1 ± this (default 0: off)",
    )
    parser.add_argument("--views-good", type=int, default=50, help="views of each of the 12 unseen good parts (default 50: 600 parts)")
    parser.add_argument("--views-defective", type=int, default=4, help="views of each of the 30 defective parts (default 4: 120 parts)")
    parser.add_argument("--good-sample-every", type=int, default=50, help="passed parts keep their picture one in N, as the worker (default 50)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--memory-gb", type=float, default=12.0, help="address-space cap of this process")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cap = int(args.memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    settings = TrainingSettings(steps=args.steps, device=args.device, seed=args.seed)
    recipe = Recipe(image_size=args.image_size, lighting=args.lighting, colour_jitter=args.colour_jitter)

    original_path = args.model
    if original_path is None:
        original_path = args.out / "original.pt"
        train(DEV_SET, original_path, recipe, settings, args.teacher_weights, progress=False)
    database = args.out / "line.db"
    database.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    artifacts = open_artifact_store(str(args.out / "artifacts"))
    register_checkpoint(engine, original_path, LINE, by="bench")
    original = load_checkpoint(original_path, device=args.device)

    parts = line_parts(args.views_good, args.views_defective, args.seed)
    half = len(parts) // 2
    past, future = parts[:half], parts[half:]
    print(f"line parts: {len(past)} past ({sum(d for _, d, *_ in past)} defective), {len(future)} to measure ({sum(d for _, d, *_ in future)} defective)")

    past_results = score(original, [image for _, _, image, _ in past])
    now = datetime.now(UTC)
    records = []
    good_samples = GoodSample(args.good_sample_every)
    for (frame_id, _, image, _), result in zip(past, past_results):
        image_key = None
        if result.is_anomaly or good_samples.keeps(LINE, "cam-1"):
            image_key, _ = save_evidence(artifacts, evidence_keys(LINE, "cam-1", now, frame_id), image, result, original)
        records.append(
            InspectionRecord(
                frame_id=frame_id, line=LINE, camera="cam-1", source="bench", captured_at=now, enqueued_at=now,
                started_at=now, finished_at=now, verdict="defect" if result.is_anomaly else "good",
                model_version=original.version, score=min(max(result.score, 0.0), 1.0), raw_score=result.raw_score,
                threshold=float(original.calibration.threshold), image_key=image_key, worker="bench",
            )
        )
    write_inspections(engine, records)
    flagged = [(frame_id, defective) for (frame_id, defective, *_), result in zip(past, past_results) if result.is_anomaly]
    for verdict, wanted in (("confirmed", True), ("false_alarm", False)):
        chosen = [frame_id for frame_id, defective in flagged if defective == wanted]
        if chosen:
            save_frame_reviews(engine, chosen, verdict, None, "bench")
    reviews = len(flagged)

    truth = [defective for _, defective, *_ in future]
    future_results = score(original, [image for _, _, image, _ in future])
    stated = original.calibration.false_reject_rate
    original_separation = separation(future_results, truth, stated)
    training_light = separation(score(original, [image for *_, image in future]), truth, stated)
    plan = plan_recalibration(engine, LINE)
    threshold = plan.calibration.threshold
    print(
        f"recalibration on {plan.parts} past parts ({plan.false_alarms} reviewed false alarms): threshold "
        f"{original.calibration.threshold:.4g} -> {threshold:.4g}"
    )
    print(TABLE_HEADER)
    print_row("original", stated, *rates([r.is_anomaly for r in future_results], truth), *original_separation, 0)
    print_row("recalibrated", plan.calibration.false_reject_rate, *rates([r.raw_score > threshold for r in future_results], truth), *original_separation, reviews)
    print(
        f"best recall: at the threshold that flags the stated share of these good parts. The original on the same "
        f"parts under the training folder's light: AUROC {training_light[0]:.3f}, best recall {training_light[1]:.1%}\n",
        flush=True,
    )

    base = active_model_info(engine, LINE)
    data = gather_training_data(engine, artifacts, base, LINE, args.out / "candidate.data", DEV_SET)
    print(
        f"retraining on {data.original_images} original images, {data.false_alarms} false alarms, {data.passed_parts} passed pictures; "
        f"{data.calibration_parts} line pictures held out for its threshold",
        flush=True,
    )
    result = retrain(engine, base, data, args.out / "candidate.pt", settings)
    candidate = load_checkpoint(result.checkpoint, device=args.device)
    candidate_training = read_checkpoint(result.checkpoint)["training_data"]
    print(
        f"candidate's threshold {candidate.calibration.threshold:.4g} from {candidate.calibration.n_images} images: "
        + (f"{candidate_training['recalibration']['parts']} line pictures it never trained on" if "recalibration" in candidate_training else "held out of its training folder")
    )
    candidate_results = score(candidate, [image for _, _, image, _ in future])
    candidate_separation = separation(candidate_results, truth, stated)
    print(TABLE_HEADER)
    print_row("retrained", candidate.calibration.false_reject_rate, *rates([r.is_anomaly for r in candidate_results], truth), *candidate_separation, reviews)
    if "recalibration" in candidate_training:
        line_scores, _ = calibration_scores(candidate, line_calibration_pictures(data, result.checkpoint), progress=False)
        unweighted = fit_calibration(line_scores, candidate.calibration.false_reject_rate).threshold
        print_row(
            "unweighted", candidate.calibration.false_reject_rate, *rates([r.raw_score > unweighted for r in candidate_results], truth),
            *candidate_separation, reviews,
        )
        print(f"unweighted: the retrained model at the threshold its held-out line pictures give unweighted ({unweighted:.4g})")
    print(f"\n{time.monotonic() - started:.0f} s in all")
    engine.dispose()


if __name__ == "__main__":
    main()
