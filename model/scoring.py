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
from model.geometry import FittedImage, fit_image, map_to_image, to_network_input
from model.image_stats import ImageReference
from model.loss import discrepancy_map
from model.recipe import Recipe
from model.runtimes import MapRuntime, TorchMaps
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
    """Frozen teacher, trained student and the map they disagree on. Knows nothing of calibration.

    Fully convolutional: it takes an input of any height and width that are multiples of the
    recipe's stride; `InspectionModel` decides the shape.
    """

    def __init__(self, recipe: Recipe) -> None:
        super().__init__()
        self.recipe = recipe
        self.teacher = Teacher(recipe.backbone, list(recipe.taps))
        self.student = Student(self.teacher, recipe.student_width)
        blur = gaussian_kernel(recipe.blur_sigma) if recipe.blur_sigma > 0 else torch.ones(1)
        self.register_buffer("blur_kernel", blur, persistent=False)
        # Each scale's map is divided by its mean on good parts (set after training), so that every
        # scale counts in units of its own normal discrepancy; ones until then.
        self.register_buffer("scale_weights", torch.ones(len(recipe.taps)))

    def scale_maps(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) normalised input -> per tap, 1 - cos upsampled to (B,H,W), float32."""
        teacher_maps, student_maps = self.teacher(batch), self.student(batch)
        # Maps stay float32 under any autocast: bf16 would quantise the small differences that rank parts.
        with torch.autocast(batch.device.type, enabled=False):
            return [
                F.interpolate(discrepancy_map(t, s).unsqueeze(1), size=batch.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
                for t, s in zip(teacher_maps, student_maps)
            ]

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised input -> (B,H,W) float32 anomaly maps: scales weighted and summed, then blurred."""
        maps = torch.stack(self.scale_maps(batch))
        with torch.autocast(batch.device.type, enabled=False):
            total = (maps * self.scale_weights.view(-1, 1, 1, 1)).sum(dim=0)
            return self.blur(total)

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """(B,H,W) -> the same, smoothed by the recipe's Gaussian (reflecting at the borders)."""
        kernel = self.blur_kernel
        if kernel.numel() == 1:
            return maps
        radius = kernel.numel() // 2
        padded = F.pad(maps.unsqueeze(1), (radius, radius, radius, radius), mode="reflect")
        blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
        return F.conv2d(blurred, kernel.view(1, 1, -1, 1)).squeeze(1)



def image_score(recipe: Recipe, anomaly_map: torch.Tensor) -> torch.Tensor:
    """(h,w) map of one image's own pixels -> its raw image score, as the recipe says."""
    flat = anomaly_map.flatten()
    if recipe.image_score == "max":
        return flat.amax()
    k = max(1, int(round(flat.numel() * recipe.topk_fraction)))
    return flat.topk(k).values.mean()


class InspectionModel:
    """A trained model ready to score images on one device at one precision.

    `calibration` is None only while training calibrates it: the raw scores calibration uses
    come from this same class, so they are the scores the worker computes.
    """

    def __init__(
        self,
        runtime: MapRuntime,
        recipe: Recipe,
        calibration: Calibration | None,
        version: str,
        teacher_source: str,
        image_reference: ImageReference | None = None,
    ) -> None:
        if recipe.input_shape is None:
            raise ValueError("the recipe has no input_shape: the model has not been trained")
        self.runtime = runtime
        self.recipe = recipe
        self.calibration = calibration
        self.version = version
        self.teacher_source = teacher_source
        self.image_reference = image_reference  # the training images' statistics (drift alarms), if saved

    @classmethod
    def from_network(
        cls,
        network: TeacherStudent,
        calibration: Calibration | None,
        version: str,
        teacher_source: str,
        device: torch.device,
        precision: str,
        image_reference: ImageReference | None = None,
    ) -> "InspectionModel":
        """A model whose maps torch computes with `network` on `device` at `precision`."""
        return cls(TorchMaps(network, device, precision), network.recipe, calibration, version, teacher_source, image_reference)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    @property
    def network(self) -> TeacherStudent:
        """The torch network, for tools that look inside it (benchmarks, tests); exports have none."""
        if not isinstance(self.runtime, TorchMaps):
            raise ValueError(f"model {self.version} runs on {self.runtime.name}: it has no torch network")
        return self.runtime.network

    @property
    def random_teacher(self) -> bool:
        return self.teacher_source.startswith("random")

    def prepare(self, images: list[np.ndarray]) -> tuple[torch.Tensor, list[FittedImage]]:
        """(H,W,3) uint8 RGB images of any shapes -> the network's input batch on this model's
        device, and where each image lies in it."""
        height, width = self.recipe.input_shape
        fitted = [fit_image(image, height, width) for image in images]
        return to_network_input([f.pixels for f in fitted], self.device), fitted

    @torch.inference_mode()
    def maps_and_scores(self, batch: torch.Tensor, fitted: list[FittedImage]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input batch -> (anomaly maps (B,h,w) over the input, raw image scores (B,)), float32.
        A score covers the image's own pixels only, never the filling around them."""
        maps = self.runtime.anomaly_maps(batch)
        scores = [image_score(self.recipe, m[: f.content_height, : f.content_width]) for m, f in zip(maps, fitted)]
        return maps, torch.stack(scores)

    def raw_scores(self, images: list[np.ndarray]) -> np.ndarray:
        """(N,) float64 raw scores of images, exactly those `score_images` gives them."""
        if not images:
            return np.zeros(0)
        return self.maps_and_scores(*self.prepare(images))[1].cpu().numpy().astype(np.float64)

    def score_images(self, images: list[np.ndarray]) -> list[ImageScore]:
        """Score (H,W,3) uint8 RGB images in one forward pass; maps come back at each image's size."""
        if self.calibration is None:
            raise ValueError("this model is not calibrated yet")
        if not images:
            return []
        batch, fitted = self.prepare(images)
        maps, raw_scores = self.maps_and_scores(batch, fitted)
        maps = maps.cpu().numpy()
        normalised = self.calibration.normalise(raw_scores.cpu().numpy())
        results = []
        for image, placed, raw_map, raw_score, score in zip(images, fitted, maps, raw_scores.tolist(), normalised):
            results.append(
                ImageScore(
                    raw_score=float(raw_score),
                    score=float(score),
                    is_anomaly=bool(raw_score > self.calibration.threshold),
                    anomaly_map=map_to_image(raw_map, placed, image.shape[0], image.shape[1]),
                )
            )
        return results
