"""Distillation loss and the per-position discrepancy it is built from."""

from __future__ import annotations

import torch

# A position where either feature vector is zero counts as orthogonal (1 - cos = 1), not as 0/0.
NORM_EPSILON = 1e-12


def discrepancy_map(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B,C,h,w) x2 -> (B,h,w): half the squared distance of channel-normalised features, 1 - cos.

    Computed in float32 whatever the autocast precision: normalisation of 512 bf16 channels
    loses too much to rank small defects.
    """
    teacher, student = teacher.float(), student.float()
    # The cosine from one dot product and two norms: no normalised copies of the (large, shallow)
    # feature maps, which made this the slowest step of scoring after the networks.
    norms = torch.linalg.vector_norm(teacher, dim=1) * torch.linalg.vector_norm(student, dim=1)
    return 1.0 - (teacher * student).sum(dim=1) / norms.clamp_min(NORM_EPSILON)


def distillation_loss(teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor], hard_fraction: float = 1.0) -> torch.Tensor:
    """Sum over scales of the mean squared distance of normalised features (2 - 2 cos per position),
    over the `hard_fraction` of positions of the batch where it is largest (1.0: all of them)."""
    total = 0.0
    for t, s in zip(teacher_maps, student_maps):
        distances = 2.0 * discrepancy_map(t, s).flatten()
        if hard_fraction < 1.0:
            distances = distances.topk(max(1, int(distances.numel() * hard_fraction))).values
        total = total + distances.mean()
    return total
