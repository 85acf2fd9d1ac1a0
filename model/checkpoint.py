"""One self-contained checkpoint file per model.

It holds plain types and tensors only, so it loads with `weights_only=True`: the format marker and
version, the recipe, every weight (the teacher's too, so a worker on another machine needs nothing
but this file), the calibration, the teacher's source, a summary of the
training data, metrics when known, and the library versions that made it.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch
import torchvision

from model.calibration import Calibration
from model.image_stats import ImageReference
from model.devices import resolve_device, resolve_precision
from model.errors import CheckpointError, CheckpointReadError
from model.recipe import Recipe
from model.scoring import InspectionModel, TeacherStudent

CHECKPOINT_FORMAT = "lineguard-checkpoint"
# 2: any input shape (recipe.input_shape), step-budget training, calibration on never-trained images.
# 3: the recipe's optional global branch (its autoencoder, the student's global head and the map
#    quantiles in the state). A version-2 checkpoint has none and loads as it is.
CHECKPOINT_FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (2, 3)


def library_versions() -> dict[str, str]:
    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "numpy": str(np.__version__)}


def plain(value: Any) -> Any:
    """JSON-safe copy of metadata: numpy scalars become Python numbers, paths strings. Keeps the
    checkpoint loadable with `weights_only=True` and its metadata storable as JSON in the store."""

    def convert(item: Any) -> Any:
        if isinstance(item, np.generic):
            return item.item()
        if isinstance(item, Path):
            return str(item)
        raise TypeError(f"checkpoint metadata cannot hold {type(item).__name__}")

    return json.loads(json.dumps(value, default=convert))


def model_version(network: TeacherStudent) -> str:
    """A content hash of the recipe and the learnt state: same model, same version, on any machine."""
    digest = hashlib.sha256(network.recipe.model_dump_json().encode())
    for key, tensor in sorted(network.state_dict().items()):
        if not key.startswith("teacher."):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return f"ts-{digest.hexdigest()[:12]}"


#: Separates a model's weights version from its calibration's digest in a recalibrated version.
RECALIBRATED_SEPARATOR = "-cal-"


def weights_version(version: str) -> str:
    """The version of the weights under `version`: itself, or what a recalibration started from.
    Models of one weights version give every image the same raw score."""
    return version.split(RECALIBRATED_SEPARATOR, 1)[0]


def save_recalibrated(
    source: str | Path, calibration: Calibration, recalibration: dict[str, Any], out: str | Path | None = None
) -> tuple[str, Path]:
    """Copy checkpoint `source` with a new calibration to `out` (default: `<version>.pt` beside the
    source); returns the new version and the file.

    The weights stay, so the version is the weights version plus a digest of the calibration
    (`weights_version` gives the first part back); `recalibration` (what the calibration rests on)
    is kept in the training data summary.
    """
    payload = read_checkpoint(source)
    calibration_document = plain(calibration.to_dict())
    digest = hashlib.sha256(json.dumps(calibration_document, sort_keys=True).encode()).hexdigest()[:8]
    payload["version"] = f"{weights_version(payload['version'])}{RECALIBRATED_SEPARATOR}{digest}"
    payload["calibration"] = calibration_document
    payload["training_data"] = {**payload["training_data"], "recalibration": plain(recalibration)}
    target = Path(out) if out is not None else Path(source).with_name(f"{payload['version']}.pt")
    _write_atomically(target, payload)
    return payload["version"], target


def save_checkpoint(
    path: str | Path,
    network: TeacherStudent,
    calibration: Calibration,
    teacher_source: str,
    training_data: dict[str, Any],
    metrics: dict[str, float] | None = None,
    image_reference: ImageReference | None = None,
) -> str:
    """Write the checkpoint atomically; returns the model version.

    `image_reference` (the training images' statistics, for drift alarms) is kept when given."""
    path = Path(path)
    version = model_version(network)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "version": version,
        "recipe": json.loads(network.recipe.model_dump_json()),
        "state_dict": {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()},
        "calibration": plain(calibration.to_dict()),
        "teacher_source": teacher_source,
        "random_teacher": teacher_source.startswith("random"),
        "training_data": plain(training_data),
        "metrics": plain(metrics),
        "library_versions": library_versions(),
    }
    if image_reference is not None:
        payload["image_reference"] = image_reference.to_checkpoint()
    _write_atomically(path, payload)
    return version


def record_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Store evaluation metrics in an existing checkpoint, so that registering it in the store
    carries them to the dashboard. The model's version does not change: it hashes weights only."""
    payload = read_checkpoint(path)
    payload["metrics"] = plain(metrics)
    _write_atomically(Path(path), payload)


def _write_atomically(path: Path, payload: dict[str, Any]) -> None:
    """A reader never sees half a checkpoint: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(buffer.getvalue())
    temporary.replace(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, checked to be a lineguard checkpoint of a supported version."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        raise CheckpointReadError(f"{path} could not be read: {error}") from error
    except Exception as error:  # pickle, zip and torch errors alike mean "not ours"
        raise CheckpointError(f"{path} is not a lineguard checkpoint (unreadable as one: {type(error).__name__})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a lineguard checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    found = payload.get("format_version")
    if found not in READABLE_FORMAT_VERSIONS:
        raise CheckpointError(
            f"{path} is a lineguard checkpoint of format version {found}; this lineguard reads versions "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}. Retrain the model or use a matching lineguard."
        )
    return payload


def load_checkpoint(path: str | Path, device: str = "auto", precision: str = "auto") -> InspectionModel:
    """A ready-to-score model from a checkpoint file."""
    return model_from_payload(read_checkpoint(path), path, device, precision)


def model_from_payload(payload: dict[str, Any], path: str | Path, device: str = "auto", precision: str = "auto") -> InspectionModel:
    """A ready-to-score model from the contents `read_checkpoint` returned for `path`."""
    try:
        recipe = Recipe.model_validate(payload["recipe"])
        calibration = Calibration.from_dict(payload["calibration"])
        network = TeacherStudent(recipe, initialise=False)  # every weight is loaded next
        network.load_state_dict(payload["state_dict"], strict=True)
        # Checkpoints saved before drift alarms have no reference: their frames' images are not compared.
        reference = ImageReference.from_checkpoint(payload["image_reference"]) if "image_reference" in payload else None
    except (KeyError, TypeError, RuntimeError, pydantic.ValidationError) as error:
        raise CheckpointError(f"{path} is a damaged or incompatible lineguard checkpoint: {error}") from error
    torch_device = resolve_device(device)
    return InspectionModel.from_network(
        network,
        calibration,
        payload["version"],
        payload["teacher_source"],
        torch_device,
        resolve_precision(precision, torch_device),
        image_reference=reference,
    )
