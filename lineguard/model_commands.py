"""Commands about the model: train, eval, score."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from model.choices import Backbone, Discrepancy, ImageScore, Lighting, Precision, ScaleWeighting, options

log = logging.getLogger("lineguard")


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model on a folder of good images")
    train.add_argument("data", type=Path, help="folder of good images, or an MVTec-layout category (uses train/good)")
    train.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    train.add_argument("--teacher-weights", help="ImageNet VGG weights file, or 'random' (tests only)")
    train.add_argument("--backbone", choices=options(Backbone))
    train.add_argument("--taps", help="comma-separated teacher layers, e.g. relu2_2,relu3_3,relu4_3")
    train.add_argument("--image-size", type=int)
    train.add_argument("--student-width", type=float)
    train.add_argument(
        "--discrepancy",
        choices=options(Discrepancy),
        help="how student and teacher are compared: cosine (default) or standardised (each teacher channel in units of "
        "its spread on good parts, squared difference)",
    )
    train.add_argument(
        "--scale-weighting",
        choices=options(ScaleWeighting),
        help="how the taps' maps are weighted: map_mean (default; each in units of its mean on good parts) or "
        "score_spread (also each by the inverse spread of its good parts' image scores)",
    )
    train.add_argument(
        "--global-branch", action="store_true", default=None, help="add the global branch: finds parts missing or out of place"
    )
    train.add_argument(
        "--pixel-scale",
        type=_pixel_scale,
        help="score in tiles of --image-size at this scale of the images (1.0: native), for textures; 'whole': fit each "
        "image whole. Default: tiles at native pixels when the images' sizes vary 1.5x or more, else whole",
    )
    train.add_argument(
        "--lighting",
        choices=options(Lighting),
        help="levelled: each image divided by its own smooth illumination (textures). Default: levelled when the good "
        "images' lighting varies part to part (15%% or more), else as_captured",
    )
    train.add_argument(
        "--colour-jitter", type=float,
        help="training views relit: exposure and each colour channel's gain drawn from 1 ± this (e.g. 0.15), for a drifting lamp",
    )
    train.add_argument(
        "--local-tint", type=float,
        help="training views given one smooth colour cast in one place, each channel's gain at its centre from 1 ± this (e.g. 0.2)",
    )
    train.add_argument(
        "--region",
        help="top,left,bottom,right of the part's fixed place in the frame, as fractions (e.g. 0.1,0.2,0.9,0.8): "
        "only it is trained on and scored",
    )
    train.add_argument(
        "--image-score", choices=options(ImageScore), help="how a map becomes the part's score (default topk_mean)"
    )
    train.add_argument(
        "--topk-fraction",
        type=float,
        help="share of the map's highest pixels whose mean is the score (default 0.05); 0.01-0.02 for defects "
        "a few pixels wide (thin leads, faint cracks)",
    )
    train.add_argument("--steps", type=int, help="optimiser steps (default 1000); bounds training time")
    train.add_argument("--batch-size", type=int)
    train.add_argument(
        "--unrelated-penalty",
        type=float,
        help="weight of a penalty on the student imitating the teacher on generated images unlike the part (default 0: off)",
    )
    train.add_argument(
        "--hard-features", type=float, help="share of single features, the worst reproduced, the loss averages (default 1: all)"
    )
    train.add_argument("--false-reject-rate", type=float, help="expected share of good parts flagged (default 0.01)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--precision", choices=options(Precision))
    train.add_argument("--seed", type=int)
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="evaluate a model on an MVTec-layout category")
    evaluate.add_argument("model", type=Path, help="checkpoint file or export folder")
    evaluate.add_argument("category", type=Path, help="MVTec-layout folder with test/ and ground_truth/")
    evaluate.add_argument("--report", type=Path, required=True, help="folder for metrics.json and pictures")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--precision", default="auto", choices=options(Precision))
    evaluate.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES, help=RUNTIME_HELP)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.add_argument("--no-record", action="store_true", help="do not store the metrics in the checkpoint")
    evaluate.set_defaults(handler=run_eval)

    score = commands.add_parser("score", help="score images; one JSON line per image")
    score.add_argument("model", type=Path, help="checkpoint file or export folder")
    score.add_argument("paths", type=Path, nargs="+", help="image files or folders of images")
    score.add_argument("--heatmaps", type=Path, help="folder for heatmap overlays")
    score.add_argument("--device", default="auto")
    score.add_argument("--precision", default="auto", choices=options(Precision))
    score.add_argument("--batch-size", type=int, default=8)
    score.add_argument("--runtime", default="auto", choices=RUNTIME_CHOICES, help=RUNTIME_HELP)
    score.set_defaults(handler=run_score)

    export = commands.add_parser("export", help="write an ONNX or OpenVINO model that passes the parity gate")
    export.add_argument("model", type=Path, help="checkpoint file")
    export.add_argument("--format", required=True, choices=["onnx", "openvino"], dest="export_format")
    export.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "int8"])
    export.add_argument("--out", type=Path, required=True, help="folder to write (replaced if it is an export)")
    export.add_argument(
        "--check", type=Path, required=True,
        help="check set: an MVTec-layout category (its test images; AUROC compared too) or a folder of images",
    )
    export.add_argument("--check-images", type=int, default=100, help="at most this many check images")
    export.set_defaults(handler=run_export)


RUNTIME_CHOICES = ["auto", "torch", "onnxruntime", "openvino"]
RUNTIME_HELP = "what computes the maps (auto: torch for a checkpoint, the export's own runtime for an export folder)"


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict:
    """The options the user actually gave, keyed by setting name; the rest keep their defaults."""
    return {setting: getattr(args, option) for option, setting in names.items() if getattr(args, option) is not None}


def _pixel_scale(text: str) -> float | str:
    """--pixel-scale: a factor, or 'whole' (every image fitted whole, said explicitly)."""
    if text == "whole":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1.0, or 'whole', got {text!r}") from None


def _region(text: str) -> tuple[float, float, float, float]:
    """--region's "top,left,bottom,right" -> four floats (the recipe checks they make a box)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise SystemExit(f"--region {text!r}: expected four numbers top,left,bottom,right") from None
    if len(values) != 4:
        raise SystemExit(f"--region {text!r}: expected four numbers top,left,bottom,right, got {len(values)}")
    return values


def run_train(args: argparse.Namespace) -> int:
    from model.recipe import Recipe, TrainingSettings
    from model.training import train

    recipe_options = _given(
        args,
        {
            "backbone": "backbone",
            "image_size": "image_size",
            "student_width": "student_width",
            "discrepancy": "discrepancy",
            "scale_weighting": "scale_weighting",
            "global_branch": "global_branch",
            "pixel_scale": "pixel_scale",
            "lighting": "lighting",
            "colour_jitter": "colour_jitter",
            "local_tint": "local_tint",
            "image_score": "image_score",
            "topk_fraction": "topk_fraction",
        },
    )
    if recipe_options.get("pixel_scale") == "whole":
        recipe_options["pixel_scale"] = None
    if args.region:
        recipe_options["region"] = _region(args.region)
    if args.taps:
        recipe_options["taps"] = [tap.strip() for tap in args.taps.split(",") if tap.strip()]
    recipe = Recipe(**recipe_options)
    settings = TrainingSettings(
        device=args.device,
        **_given(
            args,
            {
                "steps": "steps",
                "batch_size": "batch_size",
                "unrelated_penalty": "unrelated_penalty",
                "hard_features": "hard_features",
                "false_reject_rate": "false_reject_rate",
                "precision": "precision",
                "seed": "seed",
            },
        ),
    )
    result = train(args.data, args.out, recipe, settings, args.teacher_weights, progress=not args.no_progress)
    log.info("saved %s (version %s): threshold %.4f, %.0f s", result.checkpoint, result.version, result.threshold, result.seconds)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from model.checkpoint import record_metrics
    from model.evaluation import evaluate
    from model.export import is_export, load_model

    model = load_model(args.model, runtime=args.runtime, device=args.device, precision=args.precision)
    if model.random_teacher:
        log.warning("model %s was trained with a RANDOM teacher: its scores are not those of the real method", model.version)
    figures = evaluate(model, args.category, args.report, progress=not args.no_progress)
    print(json.dumps(figures))
    log.info(
        "at the calibrated threshold: %.1f%% of good parts flagged (stated %.1f%%), %.1f%% of defective parts caught",
        100 * figures["false_reject_rate"], 100 * model.calibration.false_reject_rate, 100 * figures["defect_recall"],
    )
    if is_export(args.model):
        log.info("metrics not recorded: an export carries its checkpoint's metrics (evaluate the checkpoint to record them)")
    elif not args.no_record:
        record_metrics(args.model, {**figures, "evaluated_on": str(args.category.resolve()), "report": str(args.report.resolve())})
        log.info("metrics recorded in %s; `lineguard models add` takes them to the store", args.model)
    return 0


def expand_image_paths(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their files (sorted). A missing path is an error."""
    expanded = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            if not files:
                raise ValueError(f"folder {path} is empty")
            expanded += files
        elif path.is_file():
            expanded.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return expanded


def run_score(args: argparse.Namespace) -> int:
    import cv2

    from model.errors import InvalidImageError
    from model.export import load_model
    from model.images import read_image
    from model.report import overlay_heatmap

    files = expand_image_paths(args.paths)
    model = load_model(args.model, runtime=args.runtime, device=args.device, precision=args.precision)
    if model.random_teacher:
        log.warning("model %s was trained with a RANDOM teacher: its scores are not those of the real method", model.version)
    if args.heatmaps:
        args.heatmaps.mkdir(parents=True, exist_ok=True)
    skipped = []
    for start in range(0, len(files), args.batch_size):
        batch_paths, images = [], []
        for path in files[start : start + args.batch_size]:
            try:
                images.append(read_image(path))
                batch_paths.append(path)
            except InvalidImageError as error:
                skipped.append(str(path))
                log.warning("skipping %s", error)
        for path, image, result in zip(batch_paths, images, model.score_images(images)):
            line = {"path": str(path), "score": round(result.score, 6), "is_anomaly": result.is_anomaly, "raw_score": result.raw_score}
            print(json.dumps(line), flush=True)
            if args.heatmaps:
                overlay = overlay_heatmap(image, model.calibration.normalise(result.anomaly_map), 0.0, 1.0)
                cv2.imwrite(str(args.heatmaps / f"{path.stem}_heatmap.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    if skipped:
        log.warning("skipped %d file(s) that are not readable images: %s", len(skipped), ", ".join(skipped))
    if len(skipped) == len(files):
        print("lineguard score: error: none of the given files is a readable image", file=sys.stderr)
        return 2
    return 0


def run_export(args: argparse.Namespace) -> int:
    from model.export import export_model

    report = export_model(args.model, args.export_format, args.precision, args.out, args.check, args.check_images)
    log.info("parity gate passed: %s", report.summary())
    log.info("wrote %s; score, eval and workers use it like a checkpoint", args.out)
    return 0
