"""A region of interest per model: the part's fixed place in the frame, the only pixels trained on and scored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.calibration import fit_calibration
from model.checkpoint import load_checkpoint, read_checkpoint
from model.geometry import in_region, input_shape_for, map_to_image, region_box
from model.recipe import Recipe, TrainingSettings
from model.scoring import InspectionModel, TeacherStudent
from model.synthetic import write_category
from model.training import train

REGION = (0.25, 0.5, 0.75, 1.0)  # the right half's middle rows


def model_with(recipe: Recipe) -> InspectionModel:
    torch.manual_seed(0)
    return InspectionModel.from_network(TeacherStudent(recipe), fit_calibration(np.linspace(0, 1, 10), 0.01), "t", "random", torch.device("cpu"), "fp32")


def test_region_box_in_pixels_and_never_empty():
    assert region_box(200, 400, None) == (0, 0, 200, 400)
    assert region_box(200, 400, REGION) == (50, 200, 150, 400)
    assert region_box(10, 10, (0.99, 0.99, 1.0, 1.0)) == (9, 9, 10, 10)
    assert in_region(np.zeros((200, 400, 3)), REGION).shape == (100, 200, 3)


@pytest.mark.parametrize("region", [(0.5, 0.0, 0.5, 1.0), (0.0, 0.6, 1.0, 0.2), (-0.1, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.2)])
def test_a_region_that_is_not_a_box_in_the_frame_is_refused(region):
    with pytest.raises(ValueError, match="region"):
        Recipe(region=region)


def test_the_map_is_zero_outside_the_region_and_the_frame_keeps_its_size():
    content = np.ones((32, 64), np.float32)
    full = map_to_image(content, 200, 400, REGION)
    assert full.shape == (200, 400)
    assert full[50:150, 200:].min() == 1.0 and full[:50].max() == 0.0 and full[:, :200].max() == 0.0


@pytest.mark.parametrize("pixel_scale", [None, 1.0])
def test_what_lies_outside_the_region_changes_no_score(pixel_scale):
    recipe = Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, region=REGION, pixel_scale=pixel_scale)
    model = model_with(recipe)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    scratched = frame.copy()
    scratched[:, :60] = 255  # outside: the left half
    inside = frame.copy()
    inside[40:90, 70:120] = 0  # inside the region
    plain, outside_changed, inside_changed = model.score_images([frame, scratched, inside])
    assert outside_changed.raw_score == pytest.approx(plain.raw_score, rel=1e-6)
    assert inside_changed.raw_score != pytest.approx(plain.raw_score, rel=1e-3)
    assert plain.anomaly_map.shape == (128, 128) and plain.anomaly_map[:, :64].max() == 0.0
    assert plain.anomaly_map[32:96, 64:].min() > 0.0


def test_training_with_a_region_sees_its_shape_and_the_worker_path_uses_it(tmp_path, teacher_weights):
    write_category(tmp_path / "board", n_train=16, n_test_good=1, n_test_defective=3, size=128, seed=2, kind="board")
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2", "relu3_3"], region=(0.0, 0.0, 0.5, 1.0))
    train(tmp_path / "board", tmp_path / "board.pt", recipe, TrainingSettings(steps=4, batch_size=4, device="cpu"), str(teacher_weights), progress=False)
    payload = read_checkpoint(tmp_path / "board.pt")
    # The upper half of a square frame is twice as wide as high: so is the input.
    assert payload["recipe"]["input_shape"] == list(input_shape_for([(64, 128)], 64, 4)) == [44, 92]
    assert payload["recipe"]["region"] == [0.0, 0.0, 0.5, 1.0]
    model = load_checkpoint(tmp_path / "board.pt", device="cpu", precision="fp32")
    frame = np.full((128, 128, 3), 90, np.uint8)
    result = model.score_images([frame])[0]
    assert result.anomaly_map.shape == (128, 128) and result.anomaly_map[64:].max() == 0.0
    # Calibration scored the held-out frames through the same region.
    assert model.raw_scores([frame])[0] == pytest.approx(result.raw_score)


def test_the_train_command_reads_a_region_and_names_a_bad_one():
    from lineguard.model_commands import _region

    assert _region("0.1, 0.2,0.9,0.8") == (0.1, 0.2, 0.9, 0.8)
    for bad in ("0.1,0.2,0.9", "a,b,c,d"):
        with pytest.raises(SystemExit, match="--region"):
            _region(bad)
