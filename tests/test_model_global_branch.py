"""The global branch (model/global_branch.py), its place in the network, training and checkpoint,
and the generated categories made to measure it (boards and tiles, model/synthetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, read_checkpoint
from model.geometry import to_network_input
from model.global_branch import GlobalAutoencoder, normalised
from model.recipe import Recipe, TrainingSettings
from model.scoring import TeacherStudent
from model.synthetic import BOARD_DEFECT_KINDS, TILE_DEFECT_KINDS, defective_board, good_tile, tile_shape, write_category
from model.training import train


@pytest.mark.parametrize("input_shape", [(64, 64), (128, 512), (136, 64)])
def test_autoencoder_reconstructs_the_deepest_taps_shape(input_shape):
    autoencoder = GlobalAutoencoder(input_shape, out_channels=256, stride=4)
    out = autoencoder(torch.zeros(2, 3, *input_shape))
    assert out.shape == (2, 256, input_shape[0] // 4, input_shape[1] // 4)


def test_quantile_normalisation_puts_low_at_zero_and_high_at_a_tenth():
    maps = torch.tensor([2.0, 3.0, 4.0])
    assert normalised(maps, torch.tensor([2.0, 4.0])).tolist() == pytest.approx([0.0, 0.05, 0.1])


def test_global_branch_adds_its_normalised_map_to_the_local_one():
    torch.manual_seed(0)
    recipe = Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125, global_branch=True)
    network = TeacherStudent(recipe).eval()
    network.map_quantiles.copy_(torch.tensor([[0.1, 0.3], [0.2, 0.6]]))
    batch = to_network_input([np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)])
    with torch.inference_mode():
        local, global_map = network.local_and_global_maps(batch)
        combined = network(batch)
    assert global_map is not None and global_map.shape == local.shape == combined.shape == (2, 64, 64)
    expected = 0.1 * (local - 0.1) / 0.2 + 0.1 * (global_map - 0.2) / 0.4
    assert torch.allclose(combined, expected, atol=1e-5)


def test_without_the_branch_the_map_is_the_local_map_alone():
    torch.manual_seed(0)
    network = TeacherStudent(Recipe(input_shape=(64, 64), taps=["relu2_2", "relu3_3"], student_width=0.125)).eval()
    assert network.autoencoder is None and network.student.global_head is None
    batch = to_network_input([np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)])
    with torch.inference_mode():
        local, global_map = network.local_and_global_maps(batch)
        assert global_map is None and torch.equal(network(batch), local)


def test_branch_needs_the_input_shape_it_is_built_for():
    with pytest.raises(ValueError, match="input_shape"):
        TeacherStudent(Recipe(taps=["relu2_2", "relu3_3"], student_width=0.125, global_branch=True), initialise=False)


@pytest.fixture(scope="module")
def board_category(tmp_path_factory):
    root = tmp_path_factory.mktemp("boards")
    write_category(root, n_train=30, n_test_good=2, n_test_defective=4, size=256, seed=5, kind="board")
    return root


def test_training_with_the_branch_normalises_maps_on_images_it_never_trained_on(board_category, tmp_path, teacher_weights):
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2", "relu3_3"], global_branch=True)
    settings = TrainingSettings(steps=12, batch_size=4, device="cpu", seed=0)
    train(board_category, tmp_path / "board.pt", recipe, settings, str(teacher_weights), progress=False)
    payload = read_checkpoint(tmp_path / "board.pt")
    data = payload["training_data"]
    assert payload["format_version"] == 3 and payload["recipe"]["global_branch"] is True
    assert len(data["map_normalisation_images"]) == 8
    assert not set(data["map_normalisation_images"]) & set(data["calibration_images"])
    assert data["n_train"] == 30 - 8 - len(data["calibration_images"])
    low_high = np.array(data["map_quantiles"])
    assert (low_high[:, 1] > low_high[:, 0]).all()

    model = load_checkpoint(tmp_path / "board.pt", device="cpu", precision="fp32")
    assert np.allclose(model.network.map_quantiles.numpy(), low_high)
    image, _ = defective_board(256, np.random.default_rng(0), "missing")
    first, second = model.score_images([image]), model.score_images([image])
    assert first[0].anomaly_map.shape == (256, 256) and first[0].raw_score == second[0].raw_score


def test_a_version_2_checkpoint_still_loads_and_scores_alike(small_checkpoint, tmp_path):
    payload = read_checkpoint(small_checkpoint)
    payload["format_version"] = 2
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    image = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    now = load_checkpoint(small_checkpoint, device="cpu", precision="fp32").score_images([image])[0]
    before = load_checkpoint(old, device="cpu", precision="fp32").score_images([image])[0]
    assert before.raw_score == now.raw_score


@pytest.mark.parametrize("kind", BOARD_DEFECT_KINDS)
def test_each_board_defect_changes_the_board_where_its_mask_is(kind):
    good, _ = defective_board(256, np.random.default_rng(4), None)
    bad, mask = defective_board(256, np.random.default_rng(4), kind)
    changed = np.abs(good.astype(int) - bad.astype(int)).sum(axis=2) > 30
    assert mask.any() and changed.any()
    assert changed[mask].sum() / changed.sum() > 0.95  # the defect is inside its mask


def test_generated_tiles_vary_in_size_and_defects_are_written_per_type(tmp_path):
    rng = np.random.default_rng(0)
    shapes = {tile_shape(rng) for _ in range(20)}
    assert len(shapes) == 20 and all(235 <= h <= 390 and 110 <= w <= 620 for h, w in shapes)
    assert good_tile((240, 300), rng).shape == (240, 300, 3)
    write_category(tmp_path, n_train=1, n_test_good=1, n_test_defective=6, size=0, seed=1, kind="tile")
    for defect_type in TILE_DEFECT_KINDS:
        assert len(list((tmp_path / "test" / defect_type).iterdir())) == 2
        assert len(list((tmp_path / "ground_truth" / defect_type).iterdir())) == 2
