"""Training a student on good images only, then calibrating and saving it.

Memory does not grow with the data beyond the images themselves at the network's input size: the
teacher's features are computed per batch, never cached, and held-out images are read again from
disk when calibrating. Time is bounded by a budget of optimiser steps, not by epochs, so a folder of
3,000 parts takes as long to train as one of 300 (the loading aside).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from tqdm import tqdm

from model.augment import augmented_view, relit, tinted
from model.calibration import MIN_CALIBRATION_IMAGES, fit_calibration
from model.choices import Discrepancy
from model.checkpoint import save_checkpoint
from model.image_stats import THUMBNAIL_SIDE, image_reference
from model.devices import autocast, resolve_device, resolve_precision
from model.errors import DatasetError, InvalidImageError
from model.data_choices import choose_from_data
from model.geometry import fit_image, in_region, input_shape_for, region_box, to_network_input
from model.lighting import as_seen
from model.images import list_images, read_image, read_image_shape
from model import tiling
from model.global_branch import HIGH_QUANTILE, LOW_QUANTILE
from model.loss import discrepancy_map, distillation_loss, imitation_penalty
from model.recipe import Recipe, TrainingSettings
from model.scoring import InspectionModel, TeacherStudent, image_score
from model.synthetic import unrelated_image
from model.teacher import resolve_teacher_weights

log = logging.getLogger(__name__)
T = TypeVar("T")
MIN_TRAINING_IMAGES = 4
# Images decoded (at most) to measure how the lighting varies between good parts.
LIGHTING_SAMPLE_IMAGES = 64
# Held-out images are scored this many at a time when calibrating.
CALIBRATION_BATCH = 8
# Training images (at most) whose maps set the weights of the scales, and whose teacher features
# set the standardised discrepancy's channel statistics.
SCALE_STATISTICS_IMAGES = 64
# With the standardised discrepancy, no channel's spread is taken below this share of its tap's
# median spread.
FLOOR_OF_MEDIAN_SPREAD = 0.01
# With the global branch, good images held out (besides the calibration ones) whose maps set the
# quantiles that bring local and global maps to one scale: this share, within these bounds.
MAP_NORMALISATION_FRACTION = 0.08
MAP_NORMALISATION_IMAGES = (8, 32)
# With the unrelated-image penalty, a step also shows the student this many unrelated images per
# image of its batch (EfficientAD shows one ImageNet image per training image; half saves time here).
UNRELATED_PER_IMAGE = 0.5


@dataclass(frozen=True)
class TrainingResult:
    checkpoint: Path
    version: str
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


def find_good_images(folder: Path) -> tuple[list[Path], list[tuple[int, int]], list[str]]:
    """Image files of `folder` with their (height, width), and the names of files skipped."""
    candidates = sorted(p for p in folder.iterdir() if p.is_file())
    image_paths = set(list_images(folder))
    paths, shapes, skipped = [], [], []
    for path in candidates:
        if path in image_paths:
            try:
                shapes.append(read_image_shape(path))
                paths.append(path)
                continue
            except InvalidImageError as error:
                log.debug("skipping %s", error)
        skipped.append(path.name)
    if skipped:
        log.warning("skipped %d file(s) that are not readable images: %s", len(skipped), ", ".join(skipped[:10]))
    return paths, shapes, skipped


def split_calibration(count: int, settings: TrainingSettings, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, calibration). Calibration images are never trained on and choose nothing
    but the threshold, so their scores are those of parts the model has never seen."""
    wanted = int(round(count * settings.calibration_fraction))
    n_calibration = min(max(MIN_CALIBRATION_IMAGES, wanted), settings.max_calibration_images)
    if count - n_calibration < MIN_TRAINING_IMAGES:
        raise DatasetError(
            f"{count} good image(s) found; training needs at least {MIN_CALIBRATION_IMAGES + MIN_TRAINING_IMAGES}: "
            f"{MIN_CALIBRATION_IMAGES} held out to calibrate the threshold and {MIN_TRAINING_IMAGES} to train on"
        )
    order = rng.permutation(count)
    return np.sort(order[n_calibration:]), np.sort(order[:n_calibration])


def load_training_images(paths: list[Path], recipe: Recipe, progress: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Decode each image and keep it as the network will see it (uint8, `lighting.as_seen`):
    fitted into the input shape, or with a pixel_scale scaled by it (tiles are cut from it when
    training). Also returns the images as captured (their region) for the drift reference: the
    images themselves, or with levelled lighting thumbnails of them before levelling."""
    height, width = recipe.input_shape
    images, captured, unreadable = [], [], []
    for path in tqdm(paths, desc="loading good images", unit="image", disable=not progress):
        try:
            image = read_image(path)
        except InvalidImageError as error:
            log.warning("skipping %s", error)
            unreadable.append(path.name)
            continue
        seen = as_seen(image, recipe)
        images.append(fit_image(seen, height, width).pixels if recipe.pixel_scale is None else tiling.scaled(seen, recipe.pixel_scale))
        if recipe.lighting != "as_captured":
            captured.append(cv2.resize(in_region(image, recipe.region), (THUMBNAIL_SIDE, THUMBNAIL_SIDE), interpolation=cv2.INTER_AREA))
    if len(images) < MIN_TRAINING_IMAGES:
        raise DatasetError(f"only {len(images)} training image(s) could be decoded; training needs at least {MIN_TRAINING_IMAGES}")
    return images, (captured or images), unreadable


def evenly_spaced(items: Sequence[T], count: int) -> Sequence[T]:
    """At most `count` of `items`, taken at an even step from the first."""
    return items[:: max(1, len(items) // count)][:count]


def decoded_regions(paths: list[Path], recipe: Recipe) -> list[np.ndarray]:
    """The images at `paths` that decode, each its region as captured (unreadable ones are left
    for `load_training_images` to report)."""
    images = []
    for path in paths:
        try:
            images.append(in_region(read_image(path), recipe.region))
        except InvalidImageError:
            continue
    return images


def calibration_scores(model: InspectionModel, paths: list[Path], progress: bool) -> tuple[np.ndarray, list[str]]:
    """Raw scores of held-out images through the one scoring path, read from disk a batch at a time."""
    scores, scored = [], []
    for start in tqdm(range(0, len(paths), CALIBRATION_BATCH), desc="calibrating", unit="batch", disable=not progress):
        images = []
        for path in paths[start : start + CALIBRATION_BATCH]:
            try:
                images.append(read_image(path))
                scored.append(path.name)
            except InvalidImageError as error:
                log.warning("skipping %s", error)
        scores.append(model.raw_scores(images))
    return np.concatenate(scores), scored


class ImageCycle:
    """Image indices drawn in shuffled passes over all images, one pass after another."""

    def __init__(self, count: int, rng: np.random.Generator) -> None:
        self._count, self._rng = count, rng
        self._pending: list[int] = []

    def take(self, n: int) -> list[int]:
        taken = []
        while len(taken) < n:
            if not self._pending:
                self._pending = self._rng.permutation(self._count).tolist()
            taken.append(self._pending.pop())
        return taken


def views_per_round(network: TeacherStudent, settings: TrainingSettings) -> int:
    """How many augmented views' teacher features a round keeps: as many as fit the memory budget
    (bf16) and the step budget needs, at least one batch; with no reuse, one batch (the teacher
    runs for every batch)."""
    if settings.feature_reuse == 1:
        return settings.batch_size
    needed = -(-settings.steps * settings.batch_size // settings.feature_reuse)
    height, width = network.recipe.input_shape
    positions = [(height // stride) * (width // stride) for stride in network.teacher.tap_strides]
    bytes_per_view = 2 * sum(c * p for c, p in zip(network.teacher.channels, positions))
    # The unrelated images' features share the round's memory.
    bytes_per_view *= 1.0 + (UNRELATED_PER_IMAGE if settings.unrelated_penalty > 0 else 0.0)
    return max(settings.batch_size, min(needed, int(settings.feature_memory_mb * 2**20 // bytes_per_view)))


def unrelated_batch_size(settings: TrainingSettings) -> int:
    """Unrelated images a step shows beside its batch of good views (0 without the penalty)."""
    return max(1, round(settings.batch_size * UNRELATED_PER_IMAGE)) if settings.unrelated_penalty > 0 else 0


def teacher_features(
    network: TeacherStudent, views: np.ndarray, batch_size: int, device: torch.device, precision: str
) -> list[torch.Tensor]:
    """(N,H,W,3) uint8 views -> per tap, the teacher's (N,C,h,w) targets on `device`, in bf16
    (half the memory; the loss compares in float32 anyway)."""
    chunks = []
    with torch.no_grad(), autocast(device, precision):
        for start in range(0, len(views), batch_size):
            inputs = to_network_input(list(views[start : start + batch_size]), device)
            chunks.append([f.to(torch.bfloat16) for f in network.teacher_targets(inputs)])
    return [torch.cat(per_tap) for per_tap in zip(*chunks)]


def training_view(image: np.ndarray, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """An augmented view of a training image at the input shape: the whole (fitted) image, or
    with a pixel_scale a tile cut from it at a random place; relit and tinted when the recipe says so."""
    if recipe.pixel_scale is not None:
        image = tiling.random_crop(image, *recipe.input_shape, rng)
    view = augmented_view(image, rng)
    if recipe.colour_jitter:
        view = relit(view, rng, recipe.colour_jitter)
    return tinted(view, rng, recipe.local_tint) if recipe.local_tint else view


def train_student(
    network: TeacherStudent,
    images: list[np.ndarray],
    settings: TrainingSettings,
    device: torch.device,
    precision: str,
    rng: np.random.Generator,
    progress: bool,
) -> list[float]:
    """`settings.steps` optimiser steps of the student on augmented views of `images`.

    Training runs in rounds: the teacher computes the features of a round's fresh augmented views
    (as many as `feature_memory_mb` holds), then the student trains on them for `feature_reuse`
    shuffled passes. The teacher's forward pass is two fifths of a step's work on a CPU, so reusing
    each view's features cuts training time while memory stays fixed whatever the data size.
    With `unrelated_penalty`, each round also draws generated images unlike the part
    (`model.synthetic.unrelated_image`), and each step adds the weighted `imitation_penalty` of a
    few of them. Returns the loss of every step.
    """
    student = network.student.train()
    autoencoder = network.autoencoder.train() if network.autoencoder is not None else None
    parameters = list(student.parameters()) + (list(autoencoder.parameters()) if autoencoder is not None else [])
    optimiser = torch.optim.Adam(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.steps)
    cycle = ImageCycle(len(images), rng)
    round_views = views_per_round(network, settings)
    per_step_unrelated = unrelated_batch_size(settings)
    round_unrelated = -(-round_views * per_step_unrelated // settings.batch_size)
    kind = network.recipe.discrepancy
    losses: list[float] = []
    bar = tqdm(total=settings.steps, desc="training", unit="step", disable=not progress)
    while len(losses) < settings.steps:
        views = np.stack([training_view(images[index], network.recipe, rng) for index in cycle.take(round_views)])
        features = teacher_features(network, views, settings.batch_size, device, precision)
        round_steps = min(settings.steps - len(losses), max(1, round_views * settings.feature_reuse // settings.batch_size))
        order = np.concatenate([rng.permutation(round_views) for _ in range(settings.feature_reuse + 1)])
        if per_step_unrelated:
            unrelated = np.stack([unrelated_image(network.recipe.input_shape, rng) for _ in range(round_unrelated)])
            unrelated_features = teacher_features(network, unrelated, settings.batch_size, device, precision)
            unrelated_order = np.concatenate([rng.permutation(round_unrelated) for _ in range(settings.feature_reuse + 1)])
        for step in range(round_steps):
            chosen = order[step * settings.batch_size : (step + 1) * settings.batch_size]
            targets = [f[torch.from_numpy(chosen).to(f.device)] for f in features]
            inputs = to_network_input(list(views[chosen]), device)
            with autocast(device, precision):
                predictions, global_prediction = student.predictions(inputs)
                loss = distillation_loss(targets, predictions, settings.hard_fraction, settings.hard_features, kind)
                if autoencoder is not None:
                    loss = loss + global_branch_loss(targets[-1], autoencoder(inputs), global_prediction, kind)
                if per_step_unrelated:
                    picked = unrelated_order[step * per_step_unrelated : (step + 1) * per_step_unrelated]
                    loss = loss + settings.unrelated_penalty * unrelated_penalty_term(
                        student, [f[torch.from_numpy(picked).to(f.device)] for f in unrelated_features], unrelated[picked], device
                    )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            bar.update()
            if len(losses) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
    bar.close()
    return losses


def unrelated_penalty_term(student, teacher_maps: list[torch.Tensor], images: np.ndarray, device: torch.device) -> torch.Tensor:
    """The student's `imitation_penalty` on unrelated images. Their pass runs with BatchNorm in
    eval mode: its running statistics are those of good parts, which scoring uses, and must not
    be mixed with those of images no line will show."""
    student.eval()
    try:
        return imitation_penalty(teacher_maps, student(to_network_input(list(images), device)))
    finally:
        student.train()


def global_branch_loss(
    teacher_deepest: torch.Tensor, reconstruction: torch.Tensor, global_prediction: torch.Tensor, kind: Discrepancy
) -> torch.Tensor:
    """The autoencoder learns the teacher's deepest targets (twice the discrepancy per position);
    the student's global head learns the autoencoder's output, which it must not move (so it is detached)."""
    reconstruction_loss = 2.0 * discrepancy_map(teacher_deepest, reconstruction, kind).mean()
    head_loss = 2.0 * discrepancy_map(reconstruction.detach(), global_prediction, kind).mean()
    return reconstruction_loss + head_loss


def fit_map_quantiles(network: TeacherStudent, paths: list[Path], device: torch.device, precision: str, progress: bool) -> list[list[float]]:
    """Set the network's map quantiles from held-out good images (read from disk, fitted into the
    input as scoring does): per map, local and global, the LOW_QUANTILE and HIGH_QUANTILE of all
    pixels' values. Returns them."""
    network.eval()
    height, width = network.recipe.input_shape
    local_values, global_values = [], []
    with torch.inference_mode(), autocast(device, precision):
        for start in tqdm(range(0, len(paths), CALIBRATION_BATCH), desc="normalising maps", unit="batch", disable=not progress):
            fitted = []
            for path in paths[start : start + CALIBRATION_BATCH]:
                try:
                    fitted.append(fit_image(as_seen(read_image(path), network.recipe), height, width))
                except InvalidImageError as error:
                    log.warning("skipping %s", error)
            if not fitted:
                continue
            local, global_map = network.local_and_global_maps(to_network_input([f.pixels for f in fitted]).to(device))
            for index, placed in enumerate(fitted):
                local_values.append(local[index, : placed.content_height, : placed.content_width].flatten().cpu().numpy())
                global_values.append(global_map[index, : placed.content_height, : placed.content_width].flatten().cpu().numpy())
    if not local_values:
        raise DatasetError("none of the images held out to normalise the maps could be decoded")
    quantiles = [np.quantile(np.concatenate(values), [LOW_QUANTILE, HIGH_QUANTILE]).tolist() for values in (local_values, global_values)]
    network.map_quantiles.copy_(torch.tensor(quantiles, dtype=network.map_quantiles.dtype))
    return quantiles


def split_map_normalisation(train_idx: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, map normalisation) indices: the global branch's quantiles come from good images that
    neither trained the networks nor calibrate the threshold."""
    low, high = MAP_NORMALISATION_IMAGES
    wanted = min(max(low, int(round(count * MAP_NORMALISATION_FRACTION))), high)
    if len(train_idx) - wanted < MIN_TRAINING_IMAGES:
        raise DatasetError(
            f"{count} good image(s) found; the global branch needs {wanted} more held out to normalise its maps, "
            f"beside the calibration images and {MIN_TRAINING_IMAGES} to train on"
        )
    order = rng.permutation(train_idx)
    return np.sort(order[wanted:]), np.sort(order[:wanted])


def statistics_sample(images: list[np.ndarray]) -> list[np.ndarray]:
    """The fixed sample of training images from which statistics of good parts are taken: the same
    sample every time, whatever the step."""
    return list(evenly_spaced(images, SCALE_STATISTICS_IMAGES))


def statistics_inputs(recipe: Recipe, images: list[np.ndarray]) -> list[np.ndarray]:
    """The statistics sample at the input shape (with a pixel_scale, a tile of each image)."""
    chosen = statistics_sample(images)
    if recipe.pixel_scale is not None:
        rng = np.random.default_rng(0)
        chosen = [tiling.random_crop(image, *recipe.input_shape, rng) for image in chosen]
    return chosen


def fit_feature_statistics(network: TeacherStudent, images: list[np.ndarray], device: torch.device, precision: str) -> None:
    """For the standardised discrepancy: set each teacher channel's mean and spread over every
    position of a sample of good training images. A spread is taken at least FLOOR_OF_MEDIAN_SPREAD
    of its tap's median, so a channel all but silent on good parts cannot blow up the map."""
    chosen = statistics_inputs(network.recipe, images)
    taps = len(network.teacher.channels)
    sums, squares, counts = [0.0] * taps, [0.0] * taps, [0] * taps
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(chosen), CALIBRATION_BATCH):
            for index, features in enumerate(network.teacher(to_network_input(chosen[start : start + CALIBRATION_BATCH], device))):
                features = features.double().cpu()
                sums[index] = sums[index] + features.sum(dim=(0, 2, 3))
                squares[index] = squares[index] + features.square().sum(dim=(0, 2, 3))
                counts[index] += features[:, 0].numel()
    means, spreads = [], []
    for total, square, count in zip(sums, squares, counts):
        mean = total / count
        spread = (square / count - mean.square()).clamp_min(0.0).sqrt()
        means.append(mean)
        spreads.append(spread.clamp_min(FLOOR_OF_MEDIAN_SPREAD * float(spread.median())))
    network.feature_statistics.copy_(torch.stack([torch.cat(means), torch.cat(spreads)]).to(network.feature_statistics))


def tap_image_scores(network: TeacherStudent, images: list[np.ndarray], device: torch.device, precision: str) -> torch.Tensor:
    """(images, taps) float64: the score each tap's raw map alone gives each whole training image,
    blurred and scored as the recipe scores, over what the scoring path scores: the fitted input or,
    with a pixel_scale, every tile of the image stitched back. One crop would not stand for its image:
    a tiled texture's finest tap varies five times less from crop to crop than from image to image
    (docs/design.md), and weighting by the crops' spread let that tap drown the others."""
    recipe = network.recipe

    def blurred_tap_maps(tiles: list[np.ndarray]) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, precision):
            maps = network.scale_maps(to_network_input(tiles, device))
            return torch.stack([network.blur(m).float().cpu() for m in maps], dim=1)

    # A whole-image model's images are at the input shape already: one tile each, stitched as it is.
    per_image = tiling.tiled_maps(images, *recipe.input_shape, CALIBRATION_BATCH, blurred_tap_maps)
    return torch.tensor([[float(image_score(recipe, tap_map)) for tap_map in maps] for maps in per_image], dtype=torch.float64)


def fit_scale_weights(network: TeacherStudent, images: list[np.ndarray], device: torch.device, precision: str) -> dict[str, list[float]]:
    """Set the network's scale weights from a sample of good training images and return what they
    rest on: each scale's mean map and the spread (sd) of the image scores its map alone gives.

    map_mean: 1 / (taps x the scale's mean map), so a good part's map averages about 1 and no scale
    outweighs another by its units alone. score_spread: each of those also times a factor in
    inverse proportion to the scale's image-score spread in those units (the factors averaging 1),
    so a scale whose good parts' scores vary more, and would hide a defect among them, counts less.
    The student has seen these images, but its discrepancy on them is within 3% of that on
    held-out ones, scale for scale (docs/design.md), and held-out images stay for calibration."""
    network.eval()
    chosen = statistics_inputs(network.recipe, images)
    map_means = []
    with torch.inference_mode(), autocast(device, precision):
        for start in range(0, len(chosen), CALIBRATION_BATCH):
            maps = network.scale_maps(to_network_input(chosen[start : start + CALIBRATION_BATCH], device))
            map_means.append(torch.stack([m.double().mean(dim=(1, 2)) for m in maps], dim=1).cpu())
    means = torch.cat(map_means).mean(dim=0)
    # The blur is linear and a top-k mean or a maximum scales with its map, so the scores of raw
    # maps divided by the mean map are those of the mean-normalised maps.
    spreads = tap_image_scores(network, statistics_sample(images), device, precision).std(dim=0, unbiased=False) / means
    weights = 1.0 / (len(means) * means)
    if network.recipe.scale_weighting == "score_spread":
        factors = 1.0 / spreads.clamp_min(1e-12)
        weights = weights * factors * len(factors) / factors.sum()
    network.scale_weights.copy_(weights.to(network.scale_weights))
    return {"map_means": [float(m) for m in means], "score_spreads": [float(s) for s in spreads]}


def train(
    data_dir: str | Path,
    out_path: str | Path,
    recipe: Recipe,
    settings: TrainingSettings,
    teacher_weights: str | None,
    progress: bool = True,
) -> TrainingResult:
    """Train for the step budget, calibrate on held-out good images and save a checkpoint at `out_path`."""
    if settings.unrelated_penalty > 0 and recipe.discrepancy != "cosine":
        raise ValueError("the unrelated-image penalty compares directions: it is for the cosine discrepancy only")
    started = time.monotonic()
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    folder, layout = good_image_folder(Path(data_dir))
    paths, shapes, skipped = find_good_images(folder)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    train_idx, calibration_idx = split_calibration(len(paths), settings, rng)
    normalisation_idx = np.zeros(0, dtype=np.int64)
    if recipe.global_branch:
        train_idx, normalisation_idx = split_map_normalisation(train_idx, len(paths), rng)
    seen_shapes = [(bottom - top, right - left) for (top, left, bottom, right) in (region_box(*shapes[i], recipe.region) for i in train_idx)]
    sample = [paths[i] for i in evenly_spaced(train_idx, LIGHTING_SAMPLE_IMAGES)]
    recipe, data_choices = choose_from_data(recipe, seen_shapes, lambda: decoded_regions(sample, recipe))
    # Tiles are square; a whole image (its region) is seen in the training images' median aspect ratio.
    input_shape = input_shape_for([(1, 1)] if recipe.pixel_scale is not None else seen_shapes, recipe.image_size, recipe.stride)
    recipe = Recipe.model_validate({**recipe.model_dump(), "input_shape": input_shape})

    weights = resolve_teacher_weights(recipe.backbone, teacher_weights, seed=settings.seed)
    if weights.is_random:
        log.warning("training against a RANDOM teacher: results are not comparable to an ImageNet teacher")
    network = TeacherStudent(recipe)
    network.teacher.load_weights(weights.state_dict, weights.source)
    network.to(device)

    images, captured, unreadable = load_training_images([paths[i] for i in train_idx], recipe, progress)
    if recipe.discrepancy == "standardised":
        fit_feature_statistics(network, images, device, precision)
    losses = train_student(network, images, settings, device, precision, rng, progress)
    scale_statistics = fit_scale_weights(network, images, device, precision) if recipe.normalise_scales else None
    reference = image_reference(captured)
    del images, captured
    map_quantiles = (
        fit_map_quantiles(network, [paths[i] for i in normalisation_idx], device, precision, progress) if recipe.global_branch else None
    )

    scorer = InspectionModel.from_network(network, None, "uncalibrated", weights.source, device, precision)
    scores, calibration_names = calibration_scores(scorer, [paths[i] for i in calibration_idx], progress)
    calibration = fit_calibration(scores, settings.false_reject_rate)
    seconds = time.monotonic() - started
    training_data = {
        "folder": str(folder.resolve()),
        "layout": layout,
        "n_images": len(paths),
        "n_train": len(train_idx) - len(unreadable),
        "n_calibration": len(calibration_names),
        "calibration_images": calibration_names,
        "calibration_scores": [float(score) for score in scores],
        "skipped_files": skipped + unreadable,
        "data_choices": data_choices,
        "settings": settings.model_dump(),
        "final_loss": float(np.mean(losses[-50:])),
        "scale_means": scale_statistics and scale_statistics["map_means"],
        "scale_score_spreads": scale_statistics and scale_statistics["score_spreads"],
        "map_normalisation_images": [paths[i].name for i in normalisation_idx],
        "map_quantiles": map_quantiles,
        "device": str(device),
        "precision": precision,
        "seconds": round(seconds, 1),
    }
    version = save_checkpoint(out_path, network.cpu(), calibration, weights.source, training_data, image_reference=reference)
    return TrainingResult(Path(out_path), version, calibration.threshold, seconds)
