"""The one scoring path: images in, anomaly maps and calibrated scores out.

The worker, the evaluation and the benchmarks all call `InspectionModel.score_images` (or its
tensor-level parts), so they can never disagree about what a score is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.calibration import Calibration
from model import tiling
from model.geometry import FittedImage, content_of, fit_image, in_region, map_to_image, to_network_input
from model.lighting import as_seen
from model.global_branch import GlobalAutoencoder, normalised
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
    recipe's stride; `InspectionModel` decides the shape. With the recipe's global branch, the
    network is built for the recipe's input shape and its map adds the global branch's map to the
    local one (model/global_branch.py); its forward is then still the whole map.
    """

    def __init__(self, recipe: Recipe, initialise: bool = True) -> None:
        """`initialise` False: the teacher's layers are only built, not initialised (a second of CPU),
        for a network whose every weight is loaded next (a checkpoint's)."""
        super().__init__()
        self.recipe = recipe
        self.teacher = Teacher(recipe.backbone, list(recipe.taps), initialise)
        self.student = Student(self.teacher, recipe.student_width, global_head=recipe.global_branch)
        blur = gaussian_kernel(recipe.blur_sigma) if recipe.blur_sigma > 0 else torch.ones(1)
        self.register_buffer("blur_kernel", blur, persistent=False)
        # Each scale's map is divided by its mean on good parts (set after training), so that every
        # scale counts in units of its own normal discrepancy; ones until then.
        self.register_buffer("scale_weights", torch.ones(len(recipe.taps)))
        if recipe.discrepancy == "standardised":
            # Each teacher channel's (mean, spread) on good training images, the taps' channels
            # concatenated; set before training (model.training.fit_feature_statistics).
            channels = sum(self.teacher.channels)
            self.register_buffer("feature_statistics", torch.stack([torch.zeros(channels), torch.ones(channels)]))
        self.autoencoder: GlobalAutoencoder | None = None
        if recipe.global_branch:
            if recipe.input_shape is None:
                raise ValueError("the global branch is built for one input shape: the recipe has no input_shape")
            self.autoencoder = GlobalAutoencoder(recipe.input_shape, self.teacher.channels[-1], self.teacher.tap_strides[-1])
            # (local, global) x (low, high) quantiles of good blurred maps, set after training.
            self.register_buffer("map_quantiles", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised input -> (B,H,W) float32 anomaly maps: the module an exported
        runtime runs."""
        return self.anomaly_maps(batch)

    def teacher_targets(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) normalised input -> per tap, the teacher's features the student predicts: as
        they are, or with the standardised discrepancy each channel standardised."""
        features = self.teacher(batch)
        if self.recipe.discrepancy != "standardised":
            return features
        means, spreads = (part.split(self.teacher.channels) for part in self.feature_statistics)
        return [(f - m.view(1, -1, 1, 1).to(f.dtype)) / s.view(1, -1, 1, 1).to(f.dtype) for f, m, s in zip(features, means, spreads)]

    def _upsampled(self, maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)

    def component_maps(self, batch: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """(B,3,H,W) normalised input -> (per tap, the discrepancy upsampled to (B,H,W); the global map
        (B,H,W), or None without the global branch), float32, unblurred, from one pass."""
        teacher_maps = self.teacher_targets(batch)
        student_maps, global_prediction = self.student.predictions(batch)
        reconstruction = self.autoencoder(batch) if self.autoencoder is not None else None
        # Maps stay float32 under any autocast: bf16 would quantise the small differences that rank parts.
        with torch.autocast(batch.device.type, enabled=False):
            size = batch.shape[-2:]
            kind = self.recipe.discrepancy
            scales = [self._upsampled(discrepancy_map(t, s, kind), size) for t, s in zip(teacher_maps, student_maps)]
            if reconstruction is None:
                return scales, None
            return scales, self._upsampled(discrepancy_map(reconstruction, global_prediction, kind), size)

    def scale_maps(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """(B,3,H,W) normalised input -> per tap, the discrepancy upsampled to (B,H,W), float32."""
        return self.component_maps(batch)[0]

    def local_and_global_maps(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B,3,H,W) -> the blurred local map (scales weighted and summed) and the blurred global
        map (None without the branch), each in its own units: what the quantiles are fitted on."""
        scales, global_map = self.component_maps(batch)
        with torch.autocast(batch.device.type, enabled=False):
            local = (torch.stack(scales) * self.scale_weights.view(-1, 1, 1, 1)).sum(dim=0)
            return self.blur(local), (self.blur(global_map) if global_map is not None else None)

    def anomaly_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised input -> (B,H,W) float32 anomaly maps: scales weighted and summed,
        with the global branch each of local and global normalised and the two added; blurred."""
        local, global_map = self.local_and_global_maps(batch)
        if global_map is None:
            return local
        # The blur is linear and keeps constants, so normalising blurred maps is blurring the normalised sum.
        return normalised(local, self.map_quantiles[0]) + normalised(global_map, self.map_quantiles[1])

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """(B,H,W) -> the same, smoothed by the recipe's Gaussian (reflecting at the borders)."""
        return smoothed(maps, self.blur_kernel)


def smoothed(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(B,H,W) maps blurred by the separable 1-D `kernel` (reflecting at the borders); a kernel of
    one element leaves them as they are."""
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
        device, and where each image (as the recipe sees it: its region, its lighting) lies in it."""
        height, width = self.recipe.input_shape
        fitted = [fit_image(as_seen(image, self.recipe), height, width) for image in images]
        return to_network_input([f.pixels for f in fitted], self.device), fitted

    @torch.inference_mode()
    def maps_and_scores(self, batch: torch.Tensor, fitted: list[FittedImage]) -> tuple[torch.Tensor, torch.Tensor]:
        """Input batch -> (anomaly maps (B,h,w) over the input, raw image scores (B,)), float32.
        A score covers the image's own pixels only, never the filling around them."""
        maps = self.runtime.anomaly_maps(batch)
        scores = [image_score(self.recipe, content_of(m, f)) for m, f in zip(maps, fitted)]
        return maps, torch.stack(scores)

    # Tiles scored per forward pass when an image is cut into tiles: bounds the memory of one call.
    TILE_BATCH = 16

    @torch.inference_mode()
    def tiled_maps_and_scores(self, images: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """With the recipe's pixel_scale: each image scaled, cut into tiles of the input shape,
        the tiles' maps stitched back -> (per image, its map at the scaled size; raw scores (B,))."""
        scaled = [tiling.scaled(as_seen(image, self.recipe), self.recipe.pixel_scale) for image in images]
        maps = tiling.tiled_maps(
            scaled, *self.recipe.input_shape, self.TILE_BATCH, lambda tiles: self.runtime.anomaly_maps(to_network_input(tiles, self.device)).float().cpu()
        )
        return maps, torch.stack([image_score(self.recipe, m) for m in maps])

    def content_maps_and_scores(self, images: list[np.ndarray]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The one scoring path: (per image, its map over its own pixels (its region's, with the
        recipe's region) at the network's scale; raw image scores (B,)), whole images fitted into
        the input or, with a pixel_scale, in tiles."""
        if self.recipe.pixel_scale is not None:
            return self.tiled_maps_and_scores(images)
        batch, fitted = self.prepare(images)
        maps, scores = self.maps_and_scores(batch, fitted)
        return [content_of(m, f) for m, f in zip(maps, fitted)], scores

    def in_region(self, image: np.ndarray) -> np.ndarray:
        """The pixels of `image` inside the recipe's region (the whole image without one), as captured."""
        return in_region(image, self.recipe.region)

    def raw_scores(self, images: list[np.ndarray]) -> np.ndarray:
        """(N,) float64 raw scores of images, exactly those `score_images` gives them."""
        if not images:
            return np.zeros(0)
        return self.content_maps_and_scores(images)[1].cpu().numpy().astype(np.float64)

    def score_images(self, images: list[np.ndarray]) -> list[ImageScore]:
        """Score (H,W,3) uint8 RGB images in one forward pass; maps come back at each image's size."""
        if self.calibration is None:
            raise ValueError("this model is not calibrated yet")
        if not images:
            return []
        maps, raw_scores = self.content_maps_and_scores(images)
        return self._image_scores(maps, raw_scores, [image.shape[:2] for image in images])

    @property
    def scores_decoded_frames(self) -> bool:
        """Whether `score_decoded` can score frames decoded on this model's device: torch runs its
        maps there and the recipe fits whole frames into the input as captured (no tiles, region or
        levelled lighting, which `as_seen` applies on the host)."""
        recipe = self.recipe
        return isinstance(self.runtime, TorchMaps) and recipe.pixel_scale is None and recipe.region is None and recipe.lighting == "as_captured"

    @torch.inference_mode()
    def score_decoded(self, images: list[torch.Tensor]) -> list[ImageScore]:
        """Score (3,H,W) uint8 RGB frames already decoded on this model's device
        (`model.device_images.decode_on_device`), fitted into the input there, in one forward pass;
        otherwise exactly `score_images`."""
        if self.calibration is None:
            raise ValueError("this model is not calibrated yet")
        if not self.scores_decoded_frames:
            raise ValueError(f"model {self.version} scores host images only ({self.runtime.name}, pixel_scale {self.recipe.pixel_scale})")
        if not images:
            return []
        from model.device_images import batch_on_device  # torchvision's decoders: only where frames are decoded on the device

        batch, contents = batch_on_device(images, *self.recipe.input_shape)
        maps = self.runtime.anomaly_maps(batch)
        content_maps = [m[:height, :width] for m, (height, width) in zip(maps, contents)]
        raw_scores = torch.stack([image_score(self.recipe, m) for m in content_maps])
        return self._image_scores(content_maps, raw_scores, [tuple(image.shape[1:]) for image in images])

    def _image_scores(self, maps: list[torch.Tensor], raw_scores: torch.Tensor, shapes: list[tuple[int, int]]) -> list[ImageScore]:
        """Each image's verdict from its content map and raw score; maps back at each (height, width)."""
        normalised = self.calibration.normalise(raw_scores.float().cpu().numpy())
        results = []
        for (height, width), content_map, raw_score, score in zip(shapes, maps, raw_scores.tolist(), normalised):
            results.append(
                ImageScore(
                    raw_score=float(raw_score),
                    score=float(score),
                    is_anomaly=bool(raw_score > self.calibration.threshold),
                    anomaly_map=map_to_image(content_map.float().cpu().numpy(), height, width, self.recipe.region),
                )
            )
        return results
