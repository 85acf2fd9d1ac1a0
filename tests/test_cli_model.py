import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lineguard.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_console_script_is_installed():
    result = subprocess.run([Path(sys.executable).parent / "lineguard", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "eval", "score"):
        assert command in result.stdout


def test_train_on_a_missing_folder_is_one_clear_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt"))
    assert code == 2
    assert "nowhere does not exist" in err and "Traceback" not in err


def test_train_on_an_empty_folder_says_how_many_images_are_needed(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(tmp_path), "--out", str(tmp_path / "m.pt"), "--teacher-weights", "random")
    assert code == 2 and "training needs at least 14" in err


def test_bad_settings_name_the_setting(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", str(tmp_path), "--out", str(tmp_path / "m.pt"), "--steps", "0")
    assert code == 2 and "steps" in err


def test_train_sets_the_image_score_local_tint_and_map_options_a_line_chooses(capsys, tmp_path, synthetic_category):
    from model.checkpoint import read_checkpoint

    out = tmp_path / "m.pt"
    code, _, err = run_cli(
        capsys, "train", str(synthetic_category), "--out", str(out), "--teacher-weights", "random", "--image-size", "64",
        "--student-width", "0.25", "--taps", "relu2_2,relu3_3", "--steps", "2", "--batch-size", "2", "--no-progress",
        "--topk-fraction", "0.01", "--local-tint", "0.2", "--scale-weighting", "score_spread", "--discrepancy", "standardised",
    )
    assert code == 0, err
    payload = read_checkpoint(out)
    recipe = payload["recipe"]
    assert recipe["topk_fraction"] == 0.01 and recipe["image_score"] == "topk_mean" and recipe["local_tint"] == 0.2
    assert recipe["scale_weighting"] == "score_spread" and recipe["discrepancy"] == "standardised"
    assert len(payload["training_data"]["scale_score_spreads"]) == 2


def test_a_share_of_no_pixels_names_the_setting(capsys, tmp_path, synthetic_category):
    code, _, err = run_cli(
        capsys, "train", str(synthetic_category), "--out", str(tmp_path / "m.pt"), "--teacher-weights", "random",
        "--topk-fraction", "0",
    )
    assert code == 2 and "topk_fraction" in err and not (tmp_path / "m.pt").exists()


def test_eval_refuses_a_file_that_is_not_a_checkpoint(capsys, tmp_path, synthetic_category):
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "eval", str(fake), str(synthetic_category), "--report", str(tmp_path / "r"))
    assert code == 2 and "is not a lineguard checkpoint" in err and "Traceback" not in err


def test_score_prints_json_lines_and_skips_unreadable_files(capsys, caplog, tmp_path, small_checkpoint, synthetic_category):
    folder = tmp_path / "images"
    folder.mkdir()
    good = cv2.imread(str(synthetic_category / "test" / "good" / "000.png"))
    cv2.imwrite(str(folder / "a.png"), good)
    cv2.imwrite(str(folder / "gray16.png"), (cv2.cvtColor(good, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    code, out, err = run_cli(capsys, "score", str(small_checkpoint), str(folder), "--heatmaps", str(tmp_path / "maps"), "--device", "cpu")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["a.png", "gray16.png"]
    for line in lines:
        assert 0.0 <= line["score"] <= 1.0 and isinstance(line["is_anomaly"], bool)
    assert "broken.jpg: not a decodable image" in caplog.text
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["a_heatmap.png", "gray16_heatmap.png"]


def test_score_of_only_bad_files_fails(capsys, tmp_path, small_checkpoint):
    (tmp_path / "x.png").write_bytes(b"")
    code, _, err = run_cli(capsys, "score", str(small_checkpoint), str(tmp_path / "x.png"), "--device", "cpu")
    assert code == 2 and "none of the given files" in err


@pytest.mark.parametrize("missing", ["nothing.png"])
def test_score_of_a_missing_path_is_an_error(capsys, tmp_path, small_checkpoint, missing):
    code, _, err = run_cli(capsys, "score", str(small_checkpoint), str(tmp_path / missing))
    assert code == 2 and "no such file or folder" in err


def test_eval_records_its_metrics_in_the_checkpoint(capsys, tmp_path, small_checkpoint, synthetic_category):
    import shutil

    from model.checkpoint import read_checkpoint

    checkpoint = tmp_path / "model.pt"
    shutil.copy(small_checkpoint, checkpoint)
    version = read_checkpoint(checkpoint)["version"]
    code, out, _ = run_cli(capsys, "eval", str(checkpoint), str(synthetic_category), "--report", str(tmp_path / "r"), "--device", "cpu", "--no-progress")
    assert code == 0
    printed = json.loads(out.splitlines()[-1])
    stored = read_checkpoint(checkpoint)
    assert stored["version"] == version
    assert stored["metrics"]["image_auroc"] == printed["image_auroc"]
    assert stored["metrics"]["evaluated_on"] == str(synthetic_category.resolve())
