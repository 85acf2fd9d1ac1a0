"""Training a student on good images only, then selecting, calibrating and saving it.

The teacher is frozen, so its features for a fixed set of augmented views of every training image
are computed once and cached; each epoch then runs only the student.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.augment import augmented_view
from model.calibration import fit_calibration
from model.checkpoint import save_checkpoint
from model.devices import autocast, resolve_device, resolve_precision
from model.errors import DatasetError, InvalidImageError
from model.images import list_images, read_image, to_input_tensor
from model.loss import distillation_loss
from model.recipe import Recipe, TrainingSettings
from model.scoring import TeacherStudent
from model.teacher import resolve_teacher_weights

log = logging.getLogger(__name__)
MIN_TRAINING_IMAGES = 4


@dataclass(frozen=True)
class TrainingResult:
    checkpoint: Path
    version: str
    best_epoch: int
    best_validation_score: float
    threshold: float
    seconds: float


def good_image_folder(data_dir: Path) -> tuple[Path, str]:
    """An MVTec-layout category trains on `train/good`; any other folder on its own images."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"training data folder {data_dir} does not exist or is not a folder")
    mvtec_good = data_dir / "train" / "good"
    if mvtec_good.is_dir():
        return mvtec_good, "mvtec"
    return data_dir, "folder"


def load_good_images(folder: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decode every image in `folder`; returns (images, their names, names of skipped files)."""
    candidates = sorted(p for p in folder.iterdir() if p.is_file())
    image_paths = set(list_images(folder))
    images, names, skipped = [], [], []
    for path in candidates:
        if path not in image_paths:
            skipped.append(path.name)
            continue
        try:
            images.append(read_image(path))
            names.append(path.name)
        except InvalidImageError as error:
            log.warning("skipping %s", error)
            skipped.append(path.name)
    if skipped:
        log.warning("skipped %d file(s) that are not readable images: %s", len(skipped), ", ".join(skipped[:10]))
    if len(images) < MIN_TRAINING_IMAGES:
        raise DatasetError(
            f"{folder} holds {len(images)} readable image(s); training needs at least {MIN_TRAINING_IMAGES} good images"
        )
    return images, names, skipped


def split_validation(count: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); at least two validation images for calibration."""
    order = rng.permutation(count)
    n_validation = min(max(2, int(round(count * fraction))), count - 2)
    return np.sort(order[n_validation:]), np.sort(order[:n_validation])


class FeatureCache:
    """Teacher features of many inputs, stored in bf16 on the CPU to halve memory."""

    def __init__(
        self, network: TeacherStudent, inputs: torch.Tensor, device: torch.device, precision: str, label: str, progress: bool
    ) -> None:
        self.inputs = inputs
        chunks: list[list[torch.Tensor]] = []
        batch = 8
        with torch.inference_mode(), autocast(device, precision):
            for start in tqdm(range(0, len(inputs), batch), desc=f"teacher features ({label})", unit="batch", disable=not progress):
                maps = network.teacher(inputs[start : start + batch].to(device))
                chunks.append([m.to("cpu", torch.bfloat16) for m in maps])
        self.features = [torch.cat(per_tap) for per_tap in zip(*chunks)]

    def __len__(self) -> int:
        return len(self.inputs)

    def batch(self, indices: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.inputs[indices].to(device), [f[indices].to(device).float() for f in self.features]


def _image_scores(network: TeacherStudent, cache: FeatureCache, device: torch.device, precision: str) -> torch.Tensor:
    """Raw image scores of every cached input, student in eval mode."""
    network.eval()
    scores = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(cache), 8):
            inputs, teacher_maps = cache.batch(torch.arange(start, min(start + 8, len(cache))), device)
            maps = network.maps_from_features(teacher_maps, network.student(inputs))
            scores.append(network.image_scores(maps).cpu())
    return torch.cat(scores)


def _train_epoch(
    network: TeacherStudent,
    cache: FeatureCache,
    order: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> float:
    """One pass of the student over the cached inputs in `order`; returns the mean loss."""
    network.student.train()
    losses = []
    for start in range(0, len(order), batch_size):
        inputs, teacher_maps = cache.batch(order[start : start + batch_size], device)
        with autocast(device, precision):
            loss = distillation_loss(teacher_maps, network.student(inputs))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def train(
    data_dir: str | Path,
    out_path: str | Path,
    recipe: Recipe,
    settings: TrainingSettings,
    teacher_weights: str | None,
    progress: bool = True,
) -> TrainingResult:
    """Train, select by validation, calibrate and save a checkpoint at `out_path`."""
    started = time.monotonic()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    folder, layout = good_image_folder(Path(data_dir))
    images, names, skipped = load_good_images(folder)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    train_idx, val_idx = split_validation(len(images), settings.validation_fraction, rng)

    weights = resolve_teacher_weights(recipe.backbone, teacher_weights, seed=settings.seed)
    if weights.is_random:
        log.warning("training against a RANDOM teacher: results are not comparable to an ImageNet teacher")
    network = TeacherStudent(recipe)
    network.teacher.load_weights(weights.state_dict, weights.source)
    network.to(device)

    size = recipe.image_size
    resized = [cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA) for image in images]
    views = []
    for index in train_idx:
        views.append(resized[index])
        views += [augmented_view(resized[index], rng) for _ in range(settings.augment_views - 1)]
    train_cache = FeatureCache(network, to_input_tensor(views, size), device, precision, "training views", progress)
    val_cache = FeatureCache(network, to_input_tensor([resized[i] for i in val_idx], size), device, precision, "validation", progress)

    optimiser = torch.optim.Adam(network.student.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs)
    best_score, best_epoch, best_state = float("inf"), 0, copy.deepcopy(network.student.state_dict())
    n_train = len(train_idx)
    bar = tqdm(range(1, settings.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        # One randomly chosen view of each training image per epoch.
        chosen = torch.from_numpy(rng.permutation(n_train) * settings.augment_views + rng.integers(0, settings.augment_views, n_train))
        loss = _train_epoch(network, train_cache, chosen, optimiser, settings.batch_size, device, precision)
        schedule.step()
        if epoch % settings.validate_every == 0 or epoch == settings.epochs:
            validation_score = float(_image_scores(network, val_cache, device, precision).mean())
            if validation_score < best_score:
                best_score, best_epoch = validation_score, epoch
                best_state = copy.deepcopy(network.student.state_dict())
            bar.set_postfix(loss=f"{loss:.4f}", val=f"{validation_score:.4f}", best=best_epoch)
        else:
            bar.set_postfix(loss=f"{loss:.4f}", best=best_epoch)
    bar.close()

    network.student.load_state_dict(best_state)
    calibration = fit_calibration(_image_scores(network, val_cache, device, precision).numpy(), settings.false_reject_rate)
    seconds = time.monotonic() - started
    training_data = {
        "folder": str(folder.resolve()),
        "layout": layout,
        "n_images": len(images),
        "n_train": int(len(train_idx)),
        "n_validation": int(len(val_idx)),
        "validation_images": [names[i] for i in val_idx],
        "skipped_files": skipped,
        "settings": settings.model_dump(),
        "best_epoch": best_epoch,
        "best_validation_score": best_score,
        "device": str(device),
        "precision": precision,
        "seconds": round(seconds, 1),
    }
    version = save_checkpoint(out_path, network.cpu(), calibration, weights.source, training_data)
    return TrainingResult(Path(out_path), version, best_epoch, best_score, calibration.threshold, seconds)
