"""Fixtures for tests of the learning loop (reviews, recalibration, model changes) that need a
registered checkpoint but never score with it: an untrained one, written in milliseconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.calibration import fit_calibration
from model.checkpoint import save_checkpoint
from model.recipe import Recipe
from model.scoring import TeacherStudent


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint with random weights, calibrated at 1% on scores around 3.0 (threshold about 3.5)."""
    import numpy as np

    path = tmp_path_factory.mktemp("untrained") / "model.pt"
    network = TeacherStudent(Recipe(image_size=64, student_width=0.25, taps=["relu2_2"], input_shape=(64, 64)))
    calibration = fit_calibration(np.random.default_rng(1).normal(3.0, 0.2, 20), 0.01)
    save_checkpoint(path, network, calibration, "random (tests)", {"folder": "/data/train/good", "images": 20})
    return path
