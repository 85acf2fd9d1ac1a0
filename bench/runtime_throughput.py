"""Images/s of torch, ONNX Runtime and OpenVINO on this CPU, at batch 1 and 8, with the parity gate's figures.

    .venv/bin/python bench/runtime_throughput.py [--checkpoint runs/short.pt] --category ../shared/data/mvtec_toothbrush

Without --checkpoint, an untrained model of the default recipe (the ImageNet teacher, a random
student, 256x256) is timed: speed does not depend on learnt values, and the gate still compares
its maps; its AUROC figures then say nothing about the method.

Every export goes through `lineguard export`'s parity gate on the category's test images; a refused
one is listed with the gate's figures and not timed. Timing is the network on a prepared batch
(`InspectionModel.maps_and_scores`: maps and image scores, no decoding), the models taking turns
round by round, so that a machine shared with other work slows all of them alike.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import metrics  # noqa: E402
from model.calibration import MIN_CALIBRATION_IMAGES, fit_calibration  # noqa: E402
from model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from model.errors import ParityError  # noqa: E402
from model.export import DEFAULT_CHECK_IMAGES, check_set, export_model, load_export  # noqa: E402
from model.recipe import Recipe  # noqa: E402
from model.runtimes import OpenVinoMaps  # noqa: E402
from model.scoring import InspectionModel, TeacherStudent  # noqa: E402
from model.teacher import resolve_teacher_weights  # noqa: E402
from lineguard.demo import SHARED_TEACHER_WEIGHTS  # noqa: E402


EXPORTS = (("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("onnx", "int8"), ("openvino", "int8"))


def images_per_second(models: dict[str, InspectionModel], images: list[np.ndarray], batch_size: int, seconds: float, rounds: int) -> dict[str, float]:
    """Each model scores batches of `batch_size` for seconds/rounds per round, in turns."""
    batch = [images[i % len(images)] for i in range(batch_size)]
    prepared = {name: model.prepare(batch) for name, model in models.items()}
    for name, model in models.items():
        for _ in range(2):
            model.maps_and_scores(*prepared[name])
    done = dict.fromkeys(models, 0)
    spent = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            while time.perf_counter() - started < seconds / rounds:
                model.maps_and_scores(*prepared[name])
                done[name] += batch_size
            spent[name] += time.perf_counter() - started
    return {name: done[name] / spent[name] for name in models}


def untrained_checkpoint(path: Path) -> Path:
    """A checkpoint of the default recipe at 256x256: the ImageNet teacher where ../shared has it, a random student."""
    recipe = Recipe(input_shape=(256, 256))
    network = TeacherStudent(recipe)
    source = "random:seed=0"
    if SHARED_TEACHER_WEIGHTS.is_file():
        weights = resolve_teacher_weights(recipe.backbone, str(SHARED_TEACHER_WEIGHTS))
        network.teacher.load_weights(weights.state_dict, weights.source)
        source = weights.source
    save_checkpoint(path, network, fit_calibration(np.linspace(0.0, 1.0, MIN_CALIBRATION_IMAGES), 0.01), source, {"note": "untrained, for timing"})
    print(f"timing an untrained default-recipe model ({source})")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="model to time (default: an untrained one of the default recipe)")
    parser.add_argument("--category", type=Path, required=True, help="MVTec-layout category: the parity gate's check set")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--seconds", type=float, default=24.0, help="timing per model and batch size")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--exports", type=Path, help="folder for the exports (default: a temporary one)")
    parser.add_argument(
        "--formats", default=",".join(f"{f}:{p}" for f, p in EXPORTS), help="exports to try, FORMAT:PRECISION,..."
    )
    parser.add_argument("--check-images", type=int, default=DEFAULT_CHECK_IMAGES, help="at most this many check images")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    exports = args.exports or Path(tempfile.mkdtemp(prefix="lineguard-exports-"))
    if args.checkpoint is None:
        args.checkpoint = untrained_checkpoint(exports / "untrained.pt")
    models = {
        "torch fp32": load_checkpoint(args.checkpoint, device="cpu", precision="fp32"),
        "torch bf16": load_checkpoint(args.checkpoint, device="cpu", precision="bf16"),
    }
    gate: dict[str, str] = {}
    for export_format, precision in (item.split(":") for item in args.formats.split(",")):
        out = exports / f"{export_format}-{precision}"
        started = time.monotonic()
        try:
            report = export_model(args.checkpoint, export_format, precision, out, args.category, args.check_images)
        except ParityError as error:
            gate[f"{export_format} {precision}"] = f"REFUSED: {error}"
            continue
        gate[f"{export_format} {precision}"] = f"passed in {time.monotonic() - started:.0f} s: {report.summary()}"
        model = load_export(out)
        models[f"{model.runtime.name} {precision}"] = model
    for name, verdict in gate.items():
        print(f"parity gate, {name}: {verdict}", flush=True)
    if gate.get("openvino bf16", "").startswith("REFUSED") and "openvino fp32" in models:
        # OpenVINO's bf16 is an inference precision over the same file: timed (and its AUROC shown) from
        # the fp32 export, to show what the gate refused, never to score with.
        fp32 = models["openvino fp32"]
        refused = OpenVinoMaps(exports / "openvino-fp32" / "model.xml", "bf16")
        models["openvino bf16 (refused)"] = InspectionModel(refused, fp32.recipe, fp32.calibration, fp32.version, fp32.teacher_source)

    images, labels = check_set(args.category, args.check_images)
    if labels is not None:  # every model's image AUROC on the check set, torch bf16's included
        for name, model in models.items():
            print(f"image AUROC on the check set, {name}: {metrics.image_auroc(labels, model.raw_scores(images)):.4f}", flush=True)
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    rates = {size: images_per_second(models, images, size, args.seconds, args.rounds) for size in batch_sizes}
    header = f"{'runtime':22}" + "".join(f" {f'b{size} img/s':>10} {'/torch same':>11} {'/torch best':>11}" for size in batch_sizes)
    print(header)
    for name in models:
        precision = name.split()[1]
        row = f"{name:22}"
        for size in batch_sizes:
            same = rates[size].get(f"torch {precision}", rates[size]["torch bf16" if precision == "int8" else "torch fp32"])
            best = max(rates[size]["torch fp32"], rates[size]["torch bf16"])
            row += f" {rates[size][name]:10.2f} {rates[size][name] / same:11.2f} {rates[size][name] / best:11.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
