"""The one scoring path: images in, anomaly maps and calibrated scores out.

The worker, the evaluation and the benchmarks all call `InspectionModel.score_images` (or its
tensor-level parts), so they can never disagree about what a score is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.calibration import Calibration
from model.devices import autocast
from model.images import to_input_tensor
from model.loss import discrepancy_map
from model.recipe import Recipe
from model.student import Student
from model.teacher import Teacher


@dataclass(frozen=True)
class ImageScore:
    """The verdict on one image. `anomaly_map` is (H,W) float32 at the image's own size in raw
    units, like `raw_score`; `InspectionModel.calibration.normalise` maps both to 0..1."""

    raw_score: float
    score: float
    is_anomaly: bool
    anomaly_map: np.ndarray


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D Gaussian of width 2*ceil(4 sigma)+1, summing to one."""
    radius = max(int(math.ceil(4.0 * sigma)), 1)
    positions = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (positions / sigma) ** 2)
    return kernel / kernel.sum()


class TeacherStudent(nn.Module):
    """Frozen teacher, trained student and the map they disagree on. Knows nothing of calibration."""

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.teacher = Teacher(recipe.backbone, list(recipe.taps))
        self.student = Student(self.teacher, recipe.student_width)
        blur = gaussian_kernel(recipe.blur_sigma) if recipe.blur_sigma > 0 else torch.ones(1)
        self.register_buffer("blur_kernel", blur, persistent=False)

    def maps_from_features(self, teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor]) -> torch.Tensor:
        """Per-scale 1 - cos, upsampled to the input size, summed over scales, blurred -> (B,S,S) float32."""
        size = self.recipe.image_size
        total = None
        # Maps stay float32 under any autocast: bf16 would quantise the small differences that rank parts.
        with torch.autocast(teacher_maps[0].device.type, enabled=False):
            for t, s in zip(teacher_maps, student_maps):
                scale_map = discrepancy_map(t, s).unsqueeze(1)
                scale_map = F.interpolate(scale_map, size=(size, size), mode="bilinear", align_corners=False)
                total = scale_map if total is None else total + scale_map
            return self._blur(total).squeeze(1)

    def _blur(self, maps: torch.Tensor) -> torch.Tensor:
        kernel = self.blur_kernel
        if kernel.numel() == 1:
            return maps
        radius = kernel.numel() // 2
        padded = F.pad(maps, (radius, radius, radius, radius), mode="reflect")
        blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
        return F.conv2d(blurred, kernel.view(1, 1, -1, 1))

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) normalised input -> (B,S,S) float32 anomaly maps."""
        return self.maps_from_features(self.teacher(batch), self.student(batch))

    def image_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """(B,S,S) anomaly maps -> (B,) raw image scores, as the recipe says."""
        flat = maps.flatten(1)
        if self.recipe.image_score == "max":
            return flat.amax(dim=1)
        k = max(1, int(round(flat.shape[1] * self.recipe.topk_fraction)))
        return flat.topk(k, dim=1).values.mean(dim=1)


class InspectionModel:
    """A trained, calibrated model ready to score images on one device at one precision."""

    def __init__(
        self,
        network: TeacherStudent,
        calibration: Calibration,
        version: str,
        teacher_source: str,
        device: torch.device,
        precision: str,
    ) -> None:
        self.network = network.to(device).eval()
        self.calibration = calibration
        self.version = version
        self.teacher_source = teacher_source
        self.device = device
        self.precision = precision
        if device.type == "cpu":
            # oneDNN's convolutions are fastest in channels-last on CPU.
            self.network.to(memory_format=torch.channels_last)

    @property
    def recipe(self) -> Recipe:
        return self.network.recipe

    @property
    def random_teacher(self) -> bool:
        return self.teacher_source.startswith("random")

    def prepare(self, images: list[np.ndarray]) -> torch.Tensor:
        """(H,W,3) uint8 RGB images -> the network's input batch on this model's device."""
        batch = to_input_tensor(images, self.recipe.image_size).to(self.device)
        return batch.contiguous(memory_format=torch.channels_last) if self.device.type == "cpu" else batch

    @torch.inference_mode()
    def maps_and_scores(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,3,S,S) input -> (anomaly maps (B,S,S), raw image scores (B,)), both float32."""
        with autocast(self.device, self.precision):
            maps = self.network.anomaly_maps(batch)
        return maps, self.network.image_scores(maps)

    def score_images(self, images: list[np.ndarray]) -> list[ImageScore]:
        """Score (H,W,3) uint8 RGB images in one forward pass; maps come back at each image's size."""
        if not images:
            return []
        maps, raw_scores = self.maps_and_scores(self.prepare(images))
        maps = maps.cpu().numpy()
        normalised = self.calibration.normalise(raw_scores.cpu().numpy())
        results = []
        for image, raw_map, raw_score, score in zip(images, maps, raw_scores.tolist(), normalised):
            height, width = image.shape[:2]
            full_map = cv2.resize(raw_map, (width, height), interpolation=cv2.INTER_LINEAR)
            results.append(
                ImageScore(
                    raw_score=float(raw_score),
                    score=float(score),
                    is_anomaly=bool(raw_score > self.calibration.threshold),
                    anomaly_map=full_map,
                )
            )
        return results
