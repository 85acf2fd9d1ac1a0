"""Images/s of the teacher alone and of the full model (teacher + student + map + image score).

At the recipe's image size, batch 1 and 8, fp32 and bf16, on the CPU and on CUDA when present.
With --checkpoint and --category it also compares image AUROC at fp32 and bf16.

    .venv/bin/python bench/model_throughput.py [--recipe '{"global_branch": true}'] [--checkpoint runs/toothbrush.pt --category ../shared/data/mvtec_toothbrush]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from model.calibration import MIN_CALIBRATION_IMAGES, fit_calibration
from model.checkpoint import load_checkpoint
from model.devices import autocast
from model.evaluation import find_test_cases
from model.images import read_image
from model.metrics import image_auroc
from model.recipe import Recipe
from model.scoring import InspectionModel, TeacherStudent


def images_per_second(run, batch: torch.Tensor, min_seconds: float) -> float:
    run(batch)  # warm-up: oneDNN picks its kernels on the first call
    runs, started = 0, time.perf_counter()
    while True:
        run(batch)
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and runs >= 3:
            return runs * len(batch) / elapsed


def untrained_model(device: torch.device, precision: str, overrides: dict) -> InspectionModel:
    """Speed does not depend on learnt values: an untrained model of the recipe will do."""
    size = Recipe(**overrides).image_size
    recipe = Recipe(**{**overrides, "input_shape": (size, size)})
    calibration = fit_calibration(np.linspace(0.0, 1.0, MIN_CALIBRATION_IMAGES), 0.01)
    return InspectionModel.from_network(TeacherStudent(recipe), calibration, "bench", "random", device, precision)


def throughput_table(devices: list[torch.device], batch_sizes: list[int], min_seconds: float, overrides: dict) -> None:
    print(f"{'device':6} {'precision':9} {'batch':>5} {'teacher img/s':>14} {'full img/s':>11} {'full/teacher':>12}")
    for device in devices:
        for precision in ("fp32", "bf16"):
            model = untrained_model(device, precision, overrides)
            height, width = model.recipe.input_shape
            for batch_size in batch_sizes:
                batch, fitted = model.prepare([np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)] * batch_size)

                @torch.inference_mode()
                def teacher_only(inputs: torch.Tensor) -> None:
                    with autocast(device, precision):
                        model.network.teacher(inputs)
                    if device.type == "cuda":
                        torch.cuda.synchronize()

                def full_model(inputs: torch.Tensor) -> None:
                    model.maps_and_scores(inputs, fitted)
                    if device.type == "cuda":
                        torch.cuda.synchronize()

                teacher_rate = images_per_second(teacher_only, batch, min_seconds)
                full_rate = images_per_second(full_model, batch, min_seconds)
                print(f"{device.type:6} {precision:9} {batch_size:5d} {teacher_rate:14.2f} {full_rate:11.2f} {full_rate / teacher_rate:12.2f}", flush=True)


def auroc_by_precision(checkpoint: str, category: str) -> None:
    """Image AUROC at fp32 and bf16, and frames/s of the category's own test frames through the one
    scoring path, 8 at a time: at their own sizes, so a tiled model's tiles per frame are counted."""
    cases = find_test_cases(category)
    images = [read_image(case.image) for case in cases]
    labels = np.array([case.is_defective for case in cases], dtype=int)
    for precision in ("fp32", "bf16"):
        model = load_checkpoint(checkpoint, device="cpu", precision=precision)
        model.score_images(images[:8])  # warm-up: oneDNN picks its kernels on the first call
        started = time.perf_counter()
        scores = [r.raw_score for start in range(0, len(images), 8) for r in model.score_images(images[start : start + 8])]
        frames_per_second = len(images) / (time.perf_counter() - started)
        print(f"image AUROC {precision}: {image_auroc(labels, np.array(scores)):.4f}; {frames_per_second:.2f} frames/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="time each measurement at least this long")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--recipe", default="{}", help='JSON overrides of the default recipe, e.g. \'{"global_branch": true}\'')
    parser.add_argument("--checkpoint", help="trained checkpoint, to compare image AUROC and frames/s at fp32 and bf16")
    parser.add_argument("--category", help="MVTec-layout category for the AUROC comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    overrides = json.loads(args.recipe)
    shown = {"image_size", "taps", "student_width", "global_branch"}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, recipe {Recipe(**overrides).model_dump(include=shown)}")
    throughput_table(devices, [int(b) for b in args.batch_sizes.split(",")], args.min_seconds, overrides)
    if args.checkpoint and args.category:
        auroc_by_precision(args.checkpoint, args.category)


if __name__ == "__main__":
    main()
