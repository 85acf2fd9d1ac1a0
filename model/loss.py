"""Distillation loss and the per-position discrepancy it is built from."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def discrepancy_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) x2 -> (B,h,w): half the squared distance of channel-normalised features, 1 - cos.

    Computed in float32 whatever the autocast precision: normalisation of 512 bf16 channels
    loses too much to rank small defects.
    """
    teacher = F.normalize(teacher.float(), dim=1)
    student = F.normalize(student.float(), dim=1)
    return 0.5 * (teacher - student).pow(2).sum(dim=1)


def distillation_loss(teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the mean squared distance of normalised features (2 - 2 cos per position)."""
    return sum(2.0 * discrepancy_map(t, s).mean() for t, s in zip(teacher_maps, student_maps))
