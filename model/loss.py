"""Distillation loss, the per-position discrepancy it is built from, and the penalty that keeps the
student from imitating the teacher on images unlike the part."""

from __future__ import annotations

import torch

from model.choices import Discrepancy

# A position where either feature vector is zero counts as orthogonal (1 - cos = 1), not as 0/0.
NORM_EPSILON = 1e-12


def discrepancy_map(teacher: torch.Tensor, student: torch.Tensor, kind: Discrepancy = "cosine") -> torch.Tensor:
    """(B,C,h,w) x2 -> (B,h,w): half the squared distance of the two features at each position.

    cosine: of the channel-normalised features, 1 - cos; only directions count. standardised: of
    the features as they are, per channel (mean over channels), for a teacher whose channels the
    caller has standardised (`TeacherStudent.teacher_targets`), so each channel counts in units
    of its own spread on good parts. Computed in float32 whatever the autocast precision:
    normalisation of 512 bf16 channels loses too much to rank small defects.
    """
    teacher, student = teacher.float(), student.float()
    if kind == "standardised":
        return 0.5 * (teacher - student).square().mean(dim=1)
    # The cosine from one dot product and two norms: no normalised copies of the (large, shallow)
    # feature maps, which made this the slowest step of scoring after the networks.
    norms = torch.linalg.vector_norm(teacher, dim=1) * torch.linalg.vector_norm(student, dim=1)
    return 1.0 - (teacher * student).sum(dim=1) / norms.clamp_min(NORM_EPSILON)


def feature_distances(teacher: torch.Tensor, student: torch.Tensor, kind: Discrepancy = "cosine") -> torch.Tensor:
    """(B,C,h,w) x2 -> (B,C,h,w) float32: per feature, the squared difference whose mean over
    channels is twice `discrepancy_map` (for cosine: of the channel-normalised vectors, times C)."""
    teacher, student = teacher.float(), student.float()
    if kind == "standardised":
        return (teacher - student).square()
    unit_teacher = teacher / torch.linalg.vector_norm(teacher, dim=1, keepdim=True).clamp_min(NORM_EPSILON)
    unit_student = student / torch.linalg.vector_norm(student, dim=1, keepdim=True).clamp_min(NORM_EPSILON)
    return teacher.shape[1] * (unit_teacher - unit_student).square()


def hardest_mean(values: torch.Tensor, share: float) -> torch.Tensor:
    """Mean of the largest `share` of `values` (all of them at 1.0)."""
    flat = values.flatten()
    if share >= 1.0:
        return flat.mean()
    return flat.topk(max(1, int(flat.numel() * share))).values.mean()


def distillation_loss(
    teacher_maps: list[torch.Tensor],
    student_maps: list[torch.Tensor],
    hard_fraction: float = 1.0,
    hard_features: float = 1.0,
    kind: Discrepancy = "cosine",
) -> torch.Tensor:
    """Sum over scales of the mean squared distance of the features (twice `discrepancy_map`:
    2 - 2 cos per position for cosine).

    `hard_fraction` < 1 averages only that share of the batch's positions where the distance is
    largest. `hard_features` < 1 is EfficientAD's hard-feature loss: it averages only that share of
    the batch's single features (channel x position), the worst reproduced, so a position counts
    through its hardest features and not its many easy ones (in units of `feature_distances`, so
    that 1.0 is the plain loss). Use one or the other.
    """
    total = 0.0
    for t, s in zip(teacher_maps, student_maps):
        if hard_features < 1.0:
            total = total + hardest_mean(feature_distances(t, s, kind), hard_features)
        else:
            total = total + hardest_mean(2.0 * discrepancy_map(t, s, kind), hard_fraction)
    return total


def imitation_penalty(teacher_maps: list[torch.Tensor], student_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the mean cosine of student and teacher, where positive, on images unlike
    the part: 0 when the student does not reproduce the teacher there, 1 per scale when it does.

    EfficientAD penalises its student's outputs on ImageNet images so that it cannot learn to
    reproduce the teacher everywhere, anomalies included. Its penalty shrinks the outputs; our
    maps compare directions (1 - cos), where size is invisible, so ours is on the direction.
    Negative cosines are not rewarded: unlike is enough, opposite is not asked for. It compares
    directions, so it is for the cosine discrepancy only (training refuses it with standardised).
    """
    total = 0.0
    for t, s in zip(teacher_maps, student_maps):
        total = total + (1.0 - discrepancy_map(t, s)).clamp_min(0.0).mean()
    return total
