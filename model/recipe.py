"""Everything needed to rebuild and train a model, as typed, bounded settings.

`Recipe` is stored in every checkpoint (it defines the network, its input and its scores);
`TrainingSettings` only governs how a checkpoint is produced.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.choices import Backbone, Discrepancy, ImageScore, Lighting, Precision, ScaleWeighting
from model.teacher import tap_indices, tap_stride

DEFAULT_FALSE_REJECT_RATE = 0.01


class Recipe(BaseModel):
    """The network, the shape of its input and the way its maps become scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: Backbone = Field("vgg16", description="ImageNet VGG used as the frozen teacher")
    taps: list[str] = Field(
        default_factory=lambda: ["relu2_2", "relu3_3", "relu4_3"],
        description="teacher layers whose features the student learns to reproduce",
    )
    image_size: int = Field(
        256, ge=32, le=1024, description="the network input has about image_size² pixels, in the training images' aspect ratio"
    )
    input_shape: tuple[int, int] | None = Field(
        None, description="(height, width) of the network input; set by training from the training images"
    )
    student_width: float = Field(0.5, gt=0.0, le=1.0, description="student channels as a fraction of VGG's")
    normalise_scales: bool = Field(
        True, description="divide each scale's map by its mean on good training images before summing"
    )
    scale_weighting: ScaleWeighting = Field(
        "map_mean",
        description="with normalise_scales: map_mean, each scale's map in units of its mean on good training images; "
        "score_spread, also each scale weighted by the inverse spread of the image scores it gives those images, so a "
        "scale whose good parts' scores vary more counts less",
    )
    discrepancy: Discrepancy = Field(
        "cosine",
        description="cosine: 1 - cos of teacher and student features per position (the article's); standardised: each "
        "teacher channel standardised by its mean and spread on the good training images, and half the mean squared "
        "difference of the student from it (EfficientAD's)",
    )
    blur_sigma: float = Field(4.0, ge=0.0, le=32.0, description="Gaussian blur of the anomaly map, input pixels")
    global_branch: bool = Field(
        False,
        description="add the global branch (model/global_branch.py) for what is missing or out of place; needs input_shape to build",
    )
    pixel_scale: float | None = Field(
        None,
        gt=0.0,
        le=4.0,
        description="None: each image fitted whole into the input; a factor: images scaled by it and scored in tiles of "
        "the input shape (image_size square), maps stitched back (model/tiling.py), for textures and varied image sizes",
    )
    region: tuple[float, float, float, float] | None = Field(
        None,
        description="(top, left, bottom, right) of the part's fixed place in the camera's view, as fractions of the frame's "
        "height and width: only this region is seen, trained on and scored (its map is 0 elsewhere); None: the whole frame",
    )
    lighting: Lighting = Field(
        "as_captured",
        description="levelled: each image divided by its own smooth illumination (model/lighting.py), for textures and "
        "surfaces under varying light; as_captured: as the camera saw it",
    )
    colour_jitter: float = Field(
        0.0,
        ge=0.0,
        le=0.3,
        description="training only: each view relit, its exposure and each colour channel's gain drawn from 1 ± this "
        "(model/augment.py `relit`), for lines whose lamp drifts in brightness or colour; 0: off",
    )
    local_tint: float = Field(
        0.0,
        ge=0.0,
        le=0.3,
        description="training only: each view given one smooth colour cast, each channel's gain at its centre drawn from "
        "1 ± this, fading over 15-40% of the image (model/augment.py `tinted`), for a material whose colour varies in "
        "places; 0: off",
    )
    image_score: ImageScore = Field("topk_mean", description="how a map becomes one score")
    topk_fraction: float = Field(0.05, gt=0.0, le=1.0, description="share of map pixels averaged by topk_mean")

    @property
    def stride(self) -> int:
        """Input pixels per position of the deepest tap."""
        return tap_stride(self.backbone, self.taps)

    @model_validator(mode="after")
    def _taps_exist_in_backbone(self) -> "Recipe":
        tap_indices(self.backbone, self.taps)
        return self

    @model_validator(mode="after")
    def _region_is_a_box_in_the_frame(self) -> "Recipe":
        if self.region is not None:
            top, left, bottom, right = self.region
            if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
                raise ValueError(f"region {self.region} must be (top, left, bottom, right) with 0 <= top < bottom <= 1 and 0 <= left < right <= 1")
        return self

    @model_validator(mode="after")
    def _global_branch_sees_whole_images(self) -> "Recipe":
        if self.global_branch and self.pixel_scale is not None:
            raise ValueError("the global branch sees a whole image; it does not combine with tiles (pixel_scale)")
        return self

    @model_validator(mode="after")
    def _input_shape_fits_the_network(self) -> "Recipe":
        if self.input_shape is not None and any(side < self.stride or side % self.stride for side in self.input_shape):
            raise ValueError(f"input_shape {self.input_shape} must be positive multiples of the taps' stride {self.stride}")
        return self


class TrainingSettings(BaseModel):
    """How a student is trained and calibrated; not needed to use the result."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(1000, ge=1, le=1_000_000, description="optimiser steps; bounds training time whatever the data size")
    batch_size: int = Field(8, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate, cosine-annealed over the steps")
    weight_decay: float = Field(1e-5, ge=0.0, le=0.1)
    hard_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="share of a batch's positions, the worst reproduced, that the loss averages"
    )
    hard_features: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="share of a batch's single features (channel x position), the worst reproduced, that the loss averages "
        "(EfficientAD's hard-feature loss keeps 0.001); 1.0: all. Not with hard_fraction",
    )
    unrelated_penalty: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="weight of the penalty on the student reproducing the teacher on generated images unlike the part "
        "(model.synthetic.unrelated_image; EfficientAD's penalty, weight 1 there); 0: none",
    )
    feature_reuse: int = Field(
        4, ge=1, le=64, description="passes of the student over each round of teacher features; 1: fresh features every step"
    )
    feature_memory_mb: int = Field(1024, ge=64, description="memory for one round of teacher features (bf16)")
    calibration_fraction: float = Field(
        0.2, gt=0.0, lt=0.9, description="share of the good images held out, never trained on, to set the threshold"
    )
    max_calibration_images: int = Field(250, ge=1, description="at most this many held-out images; the rest train")
    false_reject_rate: float = Field(
        DEFAULT_FALSE_REJECT_RATE, gt=0.0, lt=0.5, description="expected share of good parts flagged"
    )
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Precision = Field("auto", description="auto: bf16 where the device supports it")

    @model_validator(mode="after")
    def _one_hard_loss(self) -> "TrainingSettings":
        if self.hard_fraction < 1.0 and self.hard_features < 1.0:
            raise ValueError("hard_fraction (positions) and hard_features (single features) are two hard losses: set one")
        return self
