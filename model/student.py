"""The student: VGG's topology with BatchNorm and a residual attention block at each tap.

The student is built from the teacher's own layer list, so both always agree on where the taps
are and on their resolution. Its width is a fraction of VGG's: a 1x1 projection brings each tap to
the teacher's channel count, so a narrow student still predicts the teacher's full features.
"""

from __future__ import annotations

import torch
from torch import nn

from model.teacher import Teacher

ATTENTION_REDUCTION = 16
SPATIAL_KERNEL = 7


class ResidualAttention(nn.Module):
    """Channel gate then spatial gate, applied residually: F + F * A_c * A_s.

    The residual form keeps the student's features intact where attention is low and sharpens
    them where it is high, which is what lets it reproduce normal features closely.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // ATTENTION_REDUCTION, 4)
        self.channel_mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.spatial_conv = nn.Conv2d(2, 1, SPATIAL_KERNEL, padding=SPATIAL_KERNEL // 2)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled_avg = features.mean(dim=(2, 3), keepdim=True)
        pooled_max = features.amax(dim=(2, 3), keepdim=True)
        channel_gate = torch.sigmoid(self.channel_mlp(pooled_avg) + self.channel_mlp(pooled_max))
        gated = features * channel_gate
        spatial_in = torch.cat([gated.mean(dim=1, keepdim=True), gated.amax(dim=1, keepdim=True)], dim=1)
        spatial_gate = torch.sigmoid(self.spatial_conv(spatial_in))
        return features + gated * spatial_gate


def scaled_channels(channels: int, width: float) -> int:
    """VGG's channel count scaled by `width`, kept a multiple of 8 for fast kernels."""
    return max(8, int(round(channels * width / 8)) * 8)


class Student(nn.Module):
    """Randomly initialised VGG-shaped network that regresses the teacher's tapped features."""

    def __init__(self, teacher: Teacher, width: float, global_head: bool = False) -> None:
        super().__init__()
        if not 0.0 < width <= 1.0:
            raise ValueError(f"student width must be in (0, 1], got {width}")
        self.stages = nn.ModuleList()
        self.attention = nn.ModuleList()
        self.projections = nn.ModuleList()
        stage: list[nn.Module] = []
        in_channels = 3
        for index, layer in enumerate(teacher.features):
            if isinstance(layer, nn.Conv2d):
                out_channels = scaled_channels(layer.out_channels, width)
                stage += [
                    nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
                in_channels = out_channels
            elif isinstance(layer, nn.MaxPool2d):
                stage.append(nn.MaxPool2d(2, 2))
            if index in teacher.tap_indices:
                self.stages.append(nn.Sequential(*stage))
                self.attention.append(ResidualAttention(in_channels))
                stage = []
        for student_channels, teacher_channels in zip(self._tap_channels(), teacher.channels):
            self.projections.append(nn.Conv2d(student_channels, teacher_channels, 1))
        # With the global branch: a second projection of the deepest stage, predicting the
        # autoencoder's output (model.global_branch) from the student's local view.
        self.global_head = nn.Conv2d(self._tap_channels()[-1], teacher.channels[-1], 1) if global_head else None

    def _tap_channels(self) -> list[int]:
        return [block.channel_mlp[0].in_channels for block in self.attention]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B,3,H,W) normalised -> predictions of the teacher's maps, one per tap."""
        return self.predictions(images)[0]

    def predictions(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """images -> (predictions of the teacher's maps, one per tap; the global head's prediction
        of the autoencoder's output, or None without a global head), from one pass."""
        predictions = []
        features = images
        for stage, attention, projection in zip(self.stages, self.attention, self.projections):
            features = attention(stage(features))
            predictions.append(projection(features))
        return predictions, (self.global_head(features) if self.global_head is not None else None)
