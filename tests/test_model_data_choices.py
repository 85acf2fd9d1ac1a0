"""What training chooses from the good images where the recipe leaves it unsaid (model/data_choices.py)."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from model.checkpoint import read_checkpoint
from model.data_choices import VARIED_LIGHTING, choose_from_data, tile_pixel_scale
from model.lighting import lighting_spread
from model.recipe import Recipe, TrainingSettings
from model.synthetic import TILE_LIGHTINGS, good_tile, write_category
from model.training import train

SMALL = {"image_size": 64, "student_width": 0.125, "taps": ["relu2_2"]}


def grain(rng: np.random.Generator, height: int = 120, width: int = 160) -> np.ndarray:
    return np.clip(120 + 12 * rng.standard_normal((height, width, 1)), 0, 255).repeat(3, axis=2).astype(np.float32)


def test_lighting_spread_is_how_far_the_lamp_differs_part_to_part():
    rng = np.random.default_rng(0)
    steady = [grain(rng).astype(np.uint8) for _ in range(8)]
    xs = np.linspace(-0.5, 0.5, 160, dtype=np.float32)[None, :, None]
    six_lamps = [np.clip(grain(rng) * gain * (1 + gx * xs), 0, 255).astype(np.uint8) for gain, gx, _ in TILE_LIGHTINGS]
    assert lighting_spread(steady) < 0.02
    assert lighting_spread(six_lamps) > VARIED_LIGHTING
    # Also whatever the images' sizes: the surfaces are compared on one grid.
    assert lighting_spread([good_tile((120 + 40 * k, 300 - 30 * k), rng) for k in range(6)]) > VARIED_LIGHTING


def test_a_black_plate_around_the_part_is_not_taken_for_the_lamp():
    rng = np.random.default_rng(1)
    parts = []
    for index in range(8):  # the same bright part on a plate at 0 or at 8 of 255: both too dark to measure light by
        image = np.full((128, 128, 3), 8.0 * (index % 2), dtype=np.float32)
        image[32:96, 32:96] = grain(rng, 64, 64)
        parts.append(image.astype(np.uint8))
    assert lighting_spread(parts) < 0.05


def test_chosen_tiles_are_native_unless_the_images_are_large():
    assert tile_pixel_scale([(240, 300), (388, 617), (235, 109)], 256) == 1.0
    large = tile_pixel_scale([(3000, 4000)] * 3, 256)
    assert 0.2 < large < 0.25  # a 4000x3000 image at 0.22 is about 16 tiles of 192 px of new area each way
    assert tile_pixel_scale([(3000, 4000)] * 3, 512) == pytest.approx(2 * large, abs=0.002)


def test_only_what_the_recipe_leaves_unsaid_is_chosen():
    varied = [(64, 64), (64, 128), (128, 64)]  # a texture cut to different sizes and shapes
    chosen, measured = choose_from_data(Recipe(**SMALL), varied, lambda: [])
    assert chosen.pixel_scale == 1.0 and measured["chosen"] == {"pixel_scale": 1.0}
    assert measured["scale_spread"] == 2.0 and measured["shape_spread"] == 4.0
    # One shape at several resolutions is one view from several cameras: fitted whole, as it is.
    assert choose_from_data(Recipe(**SMALL), [(64, 64), (128, 128), (192, 192)], lambda: [])[0].pixel_scale is None
    said, measured = choose_from_data(Recipe(**SMALL, pixel_scale=None, lighting="as_captured"), varied, lambda: [])
    assert said.pixel_scale is None and measured["chosen"] == {} and "lighting_spread" not in measured
    # A recipe read back from a checkpoint has every field given: a retraining keeps it as it was.
    stored = Recipe.model_validate(Recipe(**SMALL).model_dump())
    assert choose_from_data(stored, varied, lambda: [])[0] == stored
    # The global branch sees whole images: tiles are not chosen for it.
    assert choose_from_data(Recipe(**SMALL, global_branch=True, lighting="as_captured"), varied, lambda: [])[0].pixel_scale is None


def test_training_a_texture_of_varied_sizes_and_lightings_chooses_tiles_and_levelling(tmp_path, caplog):
    write_category(tmp_path / "tile", n_train=16, n_test_good=1, n_test_defective=3, size=0, seed=2, kind="tile")
    caplog.set_level(logging.INFO, logger="model.data_choices")
    settings = TrainingSettings(steps=1, batch_size=4, device="cpu")
    # At 128 px the tiles' images (110-620 by 235-390 px) are within 16 tiles at native pixels.
    train(tmp_path / "tile", tmp_path / "chosen.pt", Recipe(**{**SMALL, "image_size": 128}), settings, "random", progress=False)
    payload = read_checkpoint(tmp_path / "chosen.pt")
    assert payload["recipe"]["pixel_scale"] == 1.0 and payload["recipe"]["lighting"] == "levelled"
    choices = payload["training_data"]["data_choices"]
    assert choices["scale_spread"] >= 1.5 and choices["lighting_spread"] >= VARIED_LIGHTING
    assert "tiles at pixel scale 1.000" in caplog.text and "levelling each image's lighting" in caplog.text

    caplog.clear()
    whole = Recipe(**{**SMALL, "image_size": 128}, pixel_scale=None, lighting="as_captured")
    train(tmp_path / "tile", tmp_path / "whole.pt", whole, settings, "random", progress=False)
    payload = read_checkpoint(tmp_path / "whole.pt")
    assert payload["recipe"]["pixel_scale"] is None and payload["recipe"]["lighting"] == "as_captured"
    assert "differ in size" in caplog.text and "--pixel-scale 1.0" in caplog.text


def test_parts_of_one_size_under_one_lamp_keep_the_default(tmp_path, synthetic_category):
    train(synthetic_category, tmp_path / "m.pt", Recipe(**SMALL), TrainingSettings(steps=1, batch_size=4, device="cpu"), "random", progress=False)
    payload = read_checkpoint(tmp_path / "m.pt")
    assert payload["recipe"]["pixel_scale"] is None and payload["recipe"]["lighting"] == "as_captured"
    assert payload["training_data"]["data_choices"]["chosen"] == {}


def test_train_pixel_scale_whole_fits_images_whole(capsys, tmp_path):
    from lineguard.cli import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "good"
    folder.mkdir()
    for index in range(16):  # a texture cut at widths 1x to 3x apart
        cv2.imwrite(str(folder / f"{index:02d}.png"), rng.integers(0, 256, size=(64, 64 * (1 + index % 3), 3), dtype=np.uint8))
    common = ["--teacher-weights", "random", "--image-size", "64", "--student-width", "0.125", "--taps", "relu2_2", "--steps", "1", "--no-progress"]
    assert main(["train", str(folder), "--out", str(tmp_path / "whole.pt"), "--pixel-scale", "whole", *common]) == 0
    assert main(["train", str(folder), "--out", str(tmp_path / "chosen.pt"), *common]) == 0
    assert read_checkpoint(tmp_path / "whole.pt")["recipe"]["pixel_scale"] is None
    assert read_checkpoint(tmp_path / "chosen.pt")["recipe"]["pixel_scale"] == 1.0
    with pytest.raises(SystemExit):
        main(["train", str(folder), "--out", str(tmp_path / "x.pt"), "--pixel-scale", "native", *common])
    assert "'whole'" in capsys.readouterr().err
