"""Scoring at a constant pixel scale: tiles of the input shape, maps stitched back (model/tiling.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import tiling
from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.recipe import Recipe, TrainingSettings
from model.scoring import InspectionModel, TeacherStudent
from model.synthetic import write_category
from model.training import train


@pytest.mark.parametrize("length,tile", [(64, 64), (40, 64), (65, 64), (300, 64), (617, 256)])
def test_tiles_cover_the_image_and_overlap(length, tile):
    starts = tiling.tile_starts(length, tile)
    assert starts[0] == 0 and starts[-1] + tile >= length
    for left, right in zip(starts, starts[1:]):
        assert right - left <= tile * (1 - tiling.MIN_OVERLAP) + 1


def test_stitching_the_tiles_of_an_image_gives_the_image_back():
    image = np.random.default_rng(0).integers(0, 255, (150, 70, 3), dtype=np.uint8)
    tiles, boxes = tiling.cut_tiles(image, 64, 64)
    assert all(t.shape == (64, 64, 3) for t in tiles)
    back = tiling.stitched(torch.from_numpy(np.stack([t[..., 0] for t in tiles]).astype(np.float32)), boxes, 150, 70)
    assert np.array_equal(back.numpy(), image[..., 0].astype(np.float32))


def test_a_tiled_model_scores_images_of_any_size_at_their_own_scale():
    torch.manual_seed(0)
    recipe = Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, pixel_scale=1.0, image_score="max")
    model = InspectionModel.from_network(TeacherStudent(recipe), fit_calibration(np.linspace(0, 1, 10), 0.01), "t", "random", torch.device("cpu"), "fp32")
    rng = np.random.default_rng(1)
    small, large = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), rng.integers(0, 255, (200, 130, 3), dtype=np.uint8)
    results = model.score_images([small, large])
    assert [r.anomaly_map.shape for r in results] == [(40, 50), (200, 130)]
    # One image's score does not depend on the others in its call.
    assert results[1].raw_score == pytest.approx(model.raw_scores([large])[0], rel=1e-5)
    assert results[1].raw_score == pytest.approx(float(results[1].anomaly_map.max()), rel=1e-5)


def test_global_branch_and_tiles_are_refused_together():
    with pytest.raises(ValueError, match="tiles"):
        Recipe(pixel_scale=1.0, global_branch=True)


def test_training_in_tiles_keeps_the_pixel_scale(tmp_path, teacher_weights):
    write_category(tmp_path / "tile", n_train=16, n_test_good=1, n_test_defective=3, size=0, seed=2, kind="tile")
    # Half scale: a quarter of the tiles to calibrate on, the same path.
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2", "relu3_3"], pixel_scale=0.5, image_score="max")
    train(tmp_path / "tile", tmp_path / "tile.pt", recipe, TrainingSettings(steps=6, batch_size=4, device="cpu"), str(teacher_weights), progress=False)
    assert read_checkpoint(tmp_path / "tile.pt")["recipe"]["input_shape"] == [64, 64]
    model = load_checkpoint(tmp_path / "tile.pt", device="cpu", precision="fp32")
    image = np.full((300, 500, 3), 120, np.uint8)
    assert model.score_images([image])[0].anomaly_map.shape == (300, 500)
