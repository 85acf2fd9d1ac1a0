"""Everything needed to rebuild and train a model, as typed, bounded settings.

`Recipe` is stored in every checkpoint (it defines the network and its scores);
`TrainingSettings` only governs how a checkpoint is produced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.images import IMAGENET_MEAN, IMAGENET_STD
from model.teacher import tap_indices

DEFAULT_FALSE_REJECT_RATE = 0.01


class Recipe(BaseModel):
    """The network and the way its maps become scores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: Literal["vgg16", "vgg19"] = Field("vgg16", description="ImageNet VGG used as the frozen teacher")
    taps: list[str] = Field(
        default_factory=lambda: ["relu2_2", "relu3_3", "relu4_3"],
        description="teacher layers whose features the student learns to reproduce",
    )
    image_size: int = Field(256, ge=32, le=1024, description="side of the square network input, pixels")
    student_width: float = Field(0.5, gt=0.0, le=1.0, description="student channels as a fraction of VGG's")
    blur_sigma: float = Field(4.0, ge=0.0, le=32.0, description="Gaussian blur of the anomaly map, input pixels")
    image_score: Literal["max", "topk_mean"] = Field("topk_mean", description="how a map becomes one score")
    topk_fraction: float = Field(0.05, gt=0.0, le=1.0, description="share of map pixels averaged by topk_mean")
    normalisation_mean: tuple[float, float, float] = IMAGENET_MEAN
    normalisation_std: tuple[float, float, float] = IMAGENET_STD

    @model_validator(mode="after")
    def _taps_exist_in_backbone(self) -> "Recipe":
        tap_indices(self.backbone, self.taps)
        return self


class TrainingSettings(BaseModel):
    """How a student is trained and calibrated; not needed to use the result."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(100, ge=1, le=10_000, description="passes over the training images")
    batch_size: int = Field(8, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0, description="Adam learning rate")
    weight_decay: float = Field(1e-5, ge=0.0, le=0.1)
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9, description="good images held out for selection and calibration")
    augment_views: int = Field(8, ge=1, le=64, description="fixed augmented views per training image, teacher features cached")
    validate_every: int = Field(5, ge=1, description="epochs between validations for checkpoint selection")
    false_reject_rate: float = Field(
        DEFAULT_FALSE_REJECT_RATE, gt=0.0, lt=0.5, description="expected share of good parts flagged"
    )
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 where the device supports it")
