"""Exported models: the folder `lineguard export` writes, the parity gate it must pass, and loading it.

An export is a folder holding the network that maps a normalised input batch to anomaly maps
(`TeacherStudent.anomaly_maps`, whatever branches it has) as an ONNX or OpenVINO model, and
`lineguard-model.json`: the checkpoint's recipe, input shape and calibration, the model files'
SHA-256, the precision and the parity figures. Everything outside the network (fitting images into
the input, image scores, calibration, maps back at each image's size) stays in `model.scoring`, so an
export scores exactly like its checkpoint wherever its maps do.

The parity gate: before the folder appears, the export's maps and image scores on a check set are
compared with torch's at fp32. It is refused, with the figures, when
- at fp32, the largest map difference exceeds FP32_MAP_TOLERANCE of the largest map value;
- at bf16 or int8, it exceeds LOW_PRECISION_FACTOR times torch's own bf16 difference;
- where the check set has defects, its image AUROC differs from torch's by more than AUROC_TOLERANCE.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model import metrics, tiling
from model.calibration import Calibration
from model.checkpoint import library_versions, load_checkpoint, model_from_payload, read_checkpoint
from model.errors import DatasetError, ExportError, ParityError
from model.evaluation import find_test_cases
from model.geometry import IMAGENET_MEAN, IMAGENET_STD, fit_image, to_network_input
from model.image_stats import STAT_NAMES, ImageReference
from model.images import list_images, read_image
from model.lighting import as_seen
from model.recipe import Recipe
from model.runtimes import INPUT_NAME, ONNXRUNTIME, OPENVINO, OUTPUT_NAME, OnnxRuntimeMaps, OpenVinoMaps
from model.scoring import InspectionModel, TeacherStudent

EXPORT_MANIFEST = "lineguard-model.json"
EXPORT_FORMAT = "lineguard-export"
EXPORT_FORMAT_VERSION = 1
# Export format -> the runtime that runs it by default, and the file that holds the network.
FORMAT_RUNTIME = {"onnx": ONNXRUNTIME, "openvino": OPENVINO}
MODEL_FILE = {"onnx": "model.onnx", "openvino": "model.xml"}
# Runtimes that can run each format (OpenVINO reads ONNX too).
FORMAT_RUNTIMES = {"onnx": (ONNXRUNTIME, OPENVINO), "openvino": (OPENVINO,)}
# Precisions each format can be written at. ONNX Runtime has no bf16 convolutions on the CPU.
FORMAT_PRECISIONS = {"onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
ONNX_OPSET = 18

# The parity gate (see the module's docstring).
FP32_MAP_TOLERANCE = 1e-3
LOW_PRECISION_FACTOR = 1.5
AUROC_TOLERANCE = 0.002
# At most this many check images are scored (spread evenly over the check set's sorted list).
DEFAULT_CHECK_IMAGES = 100
CHECK_BATCH = 8


@dataclass(frozen=True)
class ParityReport:
    """How far an export's results are from torch's at fp32 on a check set, and the verdict."""

    runtime: str
    precision: str
    n_images: int
    n_defective: int
    map_difference: float
    map_tolerance: float
    torch_bf16_difference: float | None
    torch_auroc: float | None
    export_auroc: float | None
    refused_because: list[str]

    @property
    def passed(self) -> bool:
        return not self.refused_because

    def summary(self) -> str:
        auroc = "" if self.torch_auroc is None else f"; image AUROC {self.export_auroc:.4f} vs torch {self.torch_auroc:.4f}"
        return (
            f"{self.runtime} {self.precision} on {self.n_images} check images ({self.n_defective} defective): "
            f"largest map difference {self.map_difference:.2e} of the largest map value (tolerance {self.map_tolerance:.2e}){auroc}"
        )


class AnomalyMapModule(nn.Module):
    """The exported module: normalised (B,3,H,W) input -> (B,H,W) anomaly maps, in eval mode."""

    def __init__(self, network: TeacherStudent) -> None:
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.network.anomaly_maps(batch)


def is_export(path: str | Path) -> bool:
    """Whether `path` is an export folder (or its manifest), rather than a checkpoint file."""
    path = Path(path)
    return (path / EXPORT_MANIFEST).is_file() or (path.name == EXPORT_MANIFEST and path.is_file())


def _folder(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.name == EXPORT_MANIFEST else path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_export(path: str | Path) -> dict[str, Any]:
    """The manifest of an export folder, checked: the marker, the version, and every model file's SHA-256."""
    folder = _folder(path)
    manifest_path = folder / EXPORT_MANIFEST
    if not manifest_path.is_file():
        raise ExportError(f"{folder} is not a lineguard export: {EXPORT_MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportError(f"{manifest_path} is unreadable: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{manifest_path} is not a lineguard export manifest (no '{EXPORT_FORMAT}' marker)")
    if manifest.get("format_version") != EXPORT_FORMAT_VERSION:
        raise ExportError(
            f"{folder} is a lineguard export of format version {manifest.get('format_version')}; this lineguard reads "
            f"version {EXPORT_FORMAT_VERSION}. Export the checkpoint again."
        )
    files = manifest.get("files")
    if manifest.get("export_format") not in MODEL_FILE or not isinstance(files, dict) or MODEL_FILE[manifest["export_format"]] not in files:
        raise ExportError(f"{manifest_path} names no model file of a known format")
    for name, expected in files.items():
        file = folder / name
        if Path(name).name != name or not file.is_file():
            raise ExportError(f"{folder}: model file {name} is missing")
        if sha256_of(file) != expected:
            raise ExportError(f"{file} is not the file that passed the parity gate (SHA-256 differs): export the checkpoint again")
    return manifest


def load_export(path: str | Path, runtime: str = "auto", device: str = "auto", precision: str = "auto", threads: int | None = None) -> InspectionModel:
    """A ready-to-score model from an export folder, on the runtime its format names (or `runtime`)."""
    folder = _folder(path)
    manifest = read_export(folder)
    export_format = manifest["export_format"]
    runtime = FORMAT_RUNTIME[export_format] if runtime == "auto" else runtime
    if runtime not in FORMAT_RUNTIMES[export_format]:
        raise ExportError(f"{folder} is an {export_format} export: run it with {' or '.join(FORMAT_RUNTIMES[export_format])}, not {runtime}")
    if device not in ("auto", "cpu"):
        raise ExportError(f"{folder}: exports run on the CPU; on {device}, score the checkpoint itself (--runtime torch)")
    if precision not in ("auto", manifest["precision"]):
        raise ExportError(f"{folder} passed the parity gate at {manifest['precision']}, not {precision}: export it at {precision}")
    try:
        recipe = Recipe.model_validate(manifest["recipe"])
        calibration = Calibration.from_dict(manifest["calibration"])
        image_reference = _reference_from_json(manifest.get("image_reference"))
    except (KeyError, TypeError, ValueError) as error:
        raise ExportError(f"{folder / EXPORT_MANIFEST} is damaged: {error}") from error
    maps_class = OnnxRuntimeMaps if runtime == ONNXRUNTIME else OpenVinoMaps
    maps = maps_class(folder / MODEL_FILE[export_format], manifest["precision"], threads)
    return InspectionModel(maps, recipe, calibration, manifest["version"], manifest["teacher_source"], image_reference)


def _reference_to_json(reference: ImageReference | None) -> dict[str, Any] | None:
    """The training images' statistics (drift alarms) as JSON; None for checkpoints without them."""
    if reference is None:
        return None
    return {"means": reference.means, "spreads": reference.spreads, "luma": reference.luma.tolist()}


def _reference_from_json(values: dict[str, Any] | None) -> ImageReference | None:
    if values is None:
        return None
    return ImageReference(
        means={name: float(values["means"][name]) for name in STAT_NAMES},
        spreads={name: float(values["spreads"][name]) for name in STAT_NAMES},
        luma=np.array(values["luma"], dtype=np.float32),
    )


def load_model(path: str | Path, runtime: str = "auto", device: str = "auto", precision: str = "auto") -> InspectionModel:
    """A checkpoint (torch) or an export folder (ONNX Runtime, OpenVINO), told apart by the file."""
    if is_export(path):
        if runtime == "torch":
            raise ExportError(f"{path} is an export: torch runs checkpoints, give the checkpoint it was exported from")
        return load_export(path, runtime, device, precision)
    if runtime not in ("auto", "torch"):
        raise ExportError(f"{path} is a checkpoint, which torch runs: write a {runtime} model with `lineguard export` first")
    return load_checkpoint(path, device=device, precision=precision)


def check_set(check_dir: str | Path, limit: int = DEFAULT_CHECK_IMAGES) -> tuple[list[np.ndarray], np.ndarray | None]:
    """The images of a check set and, for an MVTec-layout category (its test/ folder), whether each
    is defective; a plain folder of images has no labels. At most `limit` images, spread evenly."""
    check_dir = Path(check_dir)
    if (check_dir / "test").is_dir():
        cases = find_test_cases(check_dir)
        paths, labels = [c.image for c in cases], np.array([c.is_defective for c in cases], dtype=np.int64)
    elif check_dir.is_dir():
        paths, labels = list_images(check_dir), None
    else:
        raise DatasetError(f"check set {check_dir} is not a folder")
    if not paths:
        raise DatasetError(f"check set {check_dir} has no images")
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int))
    labels = labels[chosen] if labels is not None else None
    if labels is not None and labels.min() == labels.max():
        labels = None
    return [read_image(paths[i]) for i in chosen], labels


def _maps_and_scores(model: InspectionModel, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every map value (flat: maps over the whole input, or each image's stitched map for a recipe
    scored in tiles) and (N,) raw image scores, by the one scoring path."""
    maps, scores = [], []
    for start in range(0, len(images), CHECK_BATCH):
        chunk = images[start : start + CHECK_BATCH]
        if model.recipe.pixel_scale is not None:
            chunk_maps, batch_scores = model.tiled_maps_and_scores(chunk)
        else:
            batch_maps, batch_scores = model.maps_and_scores(*model.prepare(chunk))
            chunk_maps = list(batch_maps)
        maps += [m.float().cpu().numpy().ravel() for m in chunk_maps]
        scores.append(batch_scores.float().cpu().numpy())
    return np.concatenate(maps), np.concatenate(scores).astype(np.float64)


def _relative_difference(maps: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute map difference, as a share of the largest reference map value."""
    return float(np.abs(maps - reference).max() / max(float(np.abs(reference).max()), 1e-12))


def parity_report(
    candidate: InspectionModel,
    reference: InspectionModel,
    images: list[np.ndarray],
    labels: np.ndarray | None,
    torch_bf16: InspectionModel | None = None,
) -> ParityReport:
    """Compare `candidate` (an export) with `reference` (torch at fp32) on `images`.

    `torch_bf16` (the same checkpoint under torch's bf16) sets the tolerance of a bf16 or int8
    candidate: it may be at most LOW_PRECISION_FACTOR times as far from fp32 as torch's own bf16.
    """
    reference_maps, reference_scores = _maps_and_scores(reference, images)
    maps, scores = _maps_and_scores(candidate, images)
    difference = _relative_difference(maps, reference_maps)
    bf16_difference = None
    tolerance = FP32_MAP_TOLERANCE
    if candidate.precision != "fp32":
        if torch_bf16 is None:
            raise ValueError("a bf16 or int8 export is judged against torch's own bf16: pass torch_bf16")
        bf16_difference = _relative_difference(_maps_and_scores(torch_bf16, images)[0], reference_maps)
        tolerance = max(LOW_PRECISION_FACTOR * bf16_difference, FP32_MAP_TOLERANCE)
    refused = []
    if not np.isfinite(maps).all():
        refused.append("its maps hold NaN or infinite values")
    elif difference > tolerance:
        refused.append(f"its largest map difference {difference:.2e} exceeds the tolerance {tolerance:.2e}")
    torch_auroc = export_auroc = None
    if labels is not None:
        torch_auroc = metrics.image_auroc(labels, reference_scores)
        export_auroc = metrics.image_auroc(labels, np.nan_to_num(scores, nan=-np.inf))
        if abs(export_auroc - torch_auroc) > AUROC_TOLERANCE:
            refused.append(f"its image AUROC {export_auroc:.4f} differs from torch's {torch_auroc:.4f} by more than {AUROC_TOLERANCE}")
    return ParityReport(
        runtime=candidate.runtime.name,
        precision=candidate.precision,
        n_images=len(images),
        n_defective=int(labels.sum()) if labels is not None else 0,
        map_difference=difference,
        map_tolerance=tolerance,
        torch_bf16_difference=bf16_difference,
        torch_auroc=torch_auroc,
        export_auroc=export_auroc,
        refused_because=refused,
    )


def write_model_files(network: TeacherStudent, export_format: str, precision: str, folder: Path, calibration_images: list[np.ndarray]) -> list[str]:
    """Convert `network` into `folder` in `export_format`; returns the names of the files written.

    int8 is quantised statically (ONNX Runtime's QDQ, per channel) with `calibration_images`.
    """
    height, width = network.recipe.input_shape
    module = AnomalyMapModule(network.cpu().float()).eval()
    onnx_file = folder / MODEL_FILE["onnx"]
    example = torch.zeros(2, 3, height, width)
    batch_dim = torch.export.Dim("batch", min=1, max=1024)
    try:
        torch.onnx.export(
            module, (example,), str(onnx_file), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch_dim},), opset_version=ONNX_OPSET, dynamo=True, external_data=False, verbose=False,
        )
    except Exception as error:  # the exporter's failures come in many types
        raise ExportError(f"torch could not export the network to ONNX: {type(error).__name__}: {error}") from error
    if precision == "int8":
        _quantise_int8(onnx_file, calibration_images, network.recipe)
    if export_format == "onnx":
        return [onnx_file.name]
    import openvino

    xml_file = folder / MODEL_FILE["openvino"]
    openvino.save_model(openvino.convert_model(str(onnx_file)), str(xml_file), compress_to_fp16=False)
    onnx_file.unlink()
    return [xml_file.name, xml_file.with_suffix(".bin").name]


def _quantise_int8(onnx_file: Path, images: list[np.ndarray], recipe: Recipe) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    height, width = recipe.input_shape

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            seen = [as_seen(image, recipe) for image in images]
            if recipe.pixel_scale is not None:  # the network sees tiles at the recipe's scale
                inputs = [tile for image in seen for tile in tiling.cut_tiles(tiling.scaled(image, recipe.pixel_scale), height, width)[0]]
            else:
                inputs = [fit_image(image, height, width).pixels for image in seen]
            self._batches = iter([{INPUT_NAME: to_network_input([pixels]).numpy()} for pixels in inputs])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    quantised = onnx_file.with_name("model.int8.onnx")
    quantize_static(
        str(onnx_file), str(quantised), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )
    quantised.replace(onnx_file)


def export_model(
    checkpoint: str | Path,
    export_format: str,
    precision: str,
    out: str | Path,
    check_dir: str | Path,
    max_check_images: int = DEFAULT_CHECK_IMAGES,
) -> ParityReport:
    """Write an export of `checkpoint` to the folder `out` if it passes the parity gate on the
    images of `check_dir`; raise ParityError with the figures (and write nothing) if not."""
    if export_format not in MODEL_FILE:
        raise ExportError(f"export format must be one of {sorted(MODEL_FILE)}, got {export_format!r}")
    if precision not in FORMAT_PRECISIONS[export_format]:
        hint = " (ONNX Runtime has no bf16 convolutions on the CPU: use --format openvino)" if precision == "bf16" else ""
        raise ExportError(f"an {export_format} export is written at {' or '.join(FORMAT_PRECISIONS[export_format])}, not {precision}{hint}")
    out = Path(out)
    if out.exists() and not is_export(out):
        raise ExportError(f"{out} exists and is not a lineguard export: choose another --out")
    payload = read_checkpoint(checkpoint)
    reference = model_from_payload(payload, checkpoint, device="cpu", precision="fp32")
    torch_bf16 = model_from_payload(payload, checkpoint, device="cpu", precision="bf16") if precision != "fp32" else None
    images, labels = check_set(check_dir, max_check_images)
    calibration_images = [image for i, image in enumerate(images) if labels is None or not labels[i]]

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        network = model_from_payload(payload, checkpoint, device="cpu", precision="fp32").network
        files = write_model_files(network, export_format, precision, staging, calibration_images)
        runtime = FORMAT_RUNTIME[export_format]
        maps_class = OnnxRuntimeMaps if runtime == ONNXRUNTIME else OpenVinoMaps
        candidate = InspectionModel(maps_class(staging / files[0], precision), reference.recipe, reference.calibration, payload["version"], payload["teacher_source"])
        report = parity_report(candidate, reference, images, labels, torch_bf16)
        if not report.passed:
            raise ParityError(f"export refused: {'; '.join(report.refused_because)} ({report.summary()})")
        manifest = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "version": f"{payload['version']}-{export_format}-{precision}",
            "checkpoint_version": payload["version"],
            "export_format": export_format,
            "runtime": runtime,
            "precision": precision,
            "files": {name: sha256_of(staging / name) for name in files},
            "input": {"name": INPUT_NAME, "shape": [None, 3, *reference.recipe.input_shape], "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
            "output": {"name": OUTPUT_NAME, "shape": [None, *reference.recipe.input_shape]},
            "parity": {**asdict(report), "check_set": str(Path(check_dir).resolve())},
            "image_reference": _reference_to_json(reference.image_reference),
            **{key: payload[key] for key in ("recipe", "calibration", "teacher_source", "random_teacher", "training_data", "metrics")},
            "library_versions": _export_library_versions(),
        }
        (staging / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _export_library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import openvino

    return {**library_versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__}
