"""Per-image lighting levelled (model/lighting.py): gain and gradients out, fine detail kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint
from model.lighting import LEVEL, as_seen, levelled
from model.recipe import Recipe, TrainingSettings
from model.scoring import InspectionModel, TeacherStudent
from model.synthetic import write_category
from model.training import train


def texture(height: int = 180, width: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    grain = 120 + 12 * rng.standard_normal((height, width)).astype(np.float32)
    image = np.repeat(grain[..., None], 3, axis=2)
    image[80:84, 40:260] *= 0.7  # a faint crack, 30% darker
    return image


def lit(image: np.ndarray, gain: float, gradient: float) -> np.ndarray:
    xs = np.linspace(-1, 1, image.shape[1], dtype=np.float32)
    return np.clip(image * gain * (1 + gradient * xs)[None, :, None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("gain", "gradient"), [(0.7, 0.1), (1.25, -0.2), (0.8, 0.25)])
def test_gain_and_gradient_are_levelled_out(gain, gradient):
    reference = levelled(lit(texture(), 1.0, 0.0)).astype(np.float32)
    other = levelled(lit(texture(), gain, gradient)).astype(np.float32)
    raw_difference = np.abs(lit(texture(), gain, gradient).astype(np.float32) - lit(texture(), 1.0, 0.0)).mean()
    assert np.abs(other - reference).mean() < 0.1 * raw_difference
    assert abs(float(other.mean()) - LEVEL) < 3.0


def test_the_crack_keeps_its_relative_contrast():
    out = levelled(lit(texture(), 0.7, 0.2)).astype(np.float32)
    crack, around = out[80:84, 60:240].mean(), out[70:78, 60:240].mean()
    assert crack / around == pytest.approx(0.7, abs=0.04)


def test_as_captured_is_the_default_and_changes_nothing():
    image = lit(texture(), 0.8, 0.2)
    assert Recipe().lighting == "as_captured"
    assert as_seen(image, Recipe()) is image
    assert not np.array_equal(as_seen(image, Recipe(lighting="levelled")), image)


def test_scoring_levels_each_frame_so_a_lamp_change_barely_moves_the_score():
    torch.manual_seed(0)
    recipe = Recipe(input_shape=(64, 96), taps=["relu2_2", "relu3_3"], student_width=0.125, lighting="levelled")
    model = InspectionModel.from_network(TeacherStudent(recipe), fit_calibration(np.linspace(0, 1, 10), 0.01), "t", "random", torch.device("cpu"), "fp32")
    plain, brighter = model.raw_scores([lit(texture(), 1.0, 0.0), lit(texture(), 1.2, 0.0)])
    assert brighter == pytest.approx(plain, rel=0.02)


def test_training_with_levelled_lighting_keeps_the_drift_reference_as_captured(tmp_path, teacher_weights):
    write_category(tmp_path / "tile", n_train=16, n_test_good=1, n_test_defective=3, size=0, seed=2, kind="tile")
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2", "relu3_3"], lighting="levelled")
    train(tmp_path / "tile", tmp_path / "tile.pt", recipe, TrainingSettings(steps=4, batch_size=4, device="cpu"), str(teacher_weights), progress=False)
    model = load_checkpoint(tmp_path / "tile.pt", device="cpu", precision="fp32")
    assert model.recipe.lighting == "levelled"
    # The tiles' six lightings spread their brightness; levelled images would all sit at LEVEL.
    assert model.image_reference.spreads["brightness"] > 5.0
