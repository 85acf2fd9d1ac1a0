"""The named choices of a recipe and of running a model, in one torch-free module: the recipe's
fields are typed with them, and the command line offers them without importing torch."""

from __future__ import annotations

from typing import Literal, get_args

Backbone = Literal["vgg16", "vgg19"]
Lighting = Literal["as_captured", "levelled"]
ImageScore = Literal["topk_mean", "max"]
# How the student's prediction is compared with the teacher's features at each position (model/loss.py).
Discrepancy = Literal["cosine", "standardised"]
# How the taps' maps are weighted before they are summed (model/training.py `fit_scale_weights`).
ScaleWeighting = Literal["map_mean", "score_spread"]
Precision = Literal["auto", "fp32", "bf16"]


def options(choice: object) -> list[str]:
    """The values of one of the Literal choices above, for an argument parser."""
    return list(get_args(choice))
