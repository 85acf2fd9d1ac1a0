"""Shared fixtures: the ImageNet teacher weights on hand and a small model trained once per run."""

from __future__ import annotations

from pathlib import Path

import pytest
from ci_requirements import requirement_missing

REPO_ROOT = Path(__file__).resolve().parents[1]
TEACHER_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "vgg16_imagenet_features.pth"
SMALL_IMAGE_SIZE = 128


@pytest.fixture(scope="session")
def teacher_weights() -> Path:
    if not TEACHER_WEIGHTS.is_file():
        requirement_missing(f"ImageNet teacher weights not found at {TEACHER_WEIGHTS} (../shared beside the checkout)")
    return TEACHER_WEIGHTS


@pytest.fixture(scope="session")
def synthetic_category(tmp_path_factory) -> Path:
    """An MVTec-layout category of generated parts: 24 good to train (10 of them calibrate), 4 good
    and 6 defective to test."""
    from model.synthetic import write_category

    root = tmp_path_factory.mktemp("synthetic_category")
    write_category(root, n_train=24, n_test_good=4, n_test_defective=6, size=SMALL_IMAGE_SIZE, seed=7)
    return root


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory, synthetic_category, teacher_weights) -> Path:
    """A narrow student trained briefly on the synthetic category with the ImageNet teacher."""
    from model.recipe import Recipe, TrainingSettings
    from model.training import train

    out = tmp_path_factory.mktemp("model") / "small.pt"
    recipe = Recipe(image_size=SMALL_IMAGE_SIZE, student_width=0.25, taps=["relu2_2", "relu3_3"])
    settings = TrainingSettings(steps=80, batch_size=4, device="cpu", seed=0)
    train(synthetic_category, out, recipe, settings, str(teacher_weights), progress=False)
    return out
