"""Exports: the parity gate (passed and refused), the folder's checks, and scoring an export like a checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from export_fixtures import CHECK_IMAGES, small_onnx_export  # noqa: F401 - fixture
from onnx import numpy_helper

from lineguard.cli import main
from model import export as export_module
from model.checkpoint import load_checkpoint
from model.errors import ExportError, ParityError
from model.export import EXPORT_MANIFEST, FP32_MAP_TOLERANCE, load_model, read_export
from model.images import list_images, read_image


@pytest.fixture(scope="module")
def test_images(synthetic_category):
    return [read_image(path) for path in sorted((synthetic_category / "test").rglob("*.png"))]


def test_an_export_carries_the_checkpoint_and_the_parity_figures(small_onnx_export, small_checkpoint):  # noqa: F811
    manifest = read_export(small_onnx_export)
    torch_model = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    assert manifest["version"] == f"{torch_model.version}-onnx-fp32" and manifest["checkpoint_version"] == torch_model.version
    assert manifest["recipe"]["input_shape"] == list(torch_model.recipe.input_shape)
    assert manifest["input"]["shape"] == [None, 3, *torch_model.recipe.input_shape]
    assert manifest["calibration"]["threshold"] == pytest.approx(torch_model.calibration.threshold)
    parity = manifest["parity"]
    assert parity["n_images"] == CHECK_IMAGES and parity["n_defective"] > 0
    assert parity["map_difference"] <= FP32_MAP_TOLERANCE and parity["refused_because"] == []
    assert abs(parity["export_auroc"] - parity["torch_auroc"]) <= 0.002
    assert sorted(path.name for path in small_onnx_export.iterdir()) == [EXPORT_MANIFEST, "model.onnx"]
    # Drift alarms compare frames with the training images' statistics: the export keeps them.
    reference = load_model(small_onnx_export).image_reference
    assert reference.means == pytest.approx(torch_model.image_reference.means)
    assert np.allclose(reference.luma, torch_model.image_reference.luma)


@pytest.mark.parametrize("runtime", ["auto", "openvino"])
def test_an_export_scores_like_its_checkpoint(small_onnx_export, small_checkpoint, test_images, runtime):  # noqa: F811
    torch_model = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")
    exported = load_model(small_onnx_export, runtime=runtime)
    assert exported.runtime.name == ("onnxruntime" if runtime == "auto" else "openvino")
    expected, got = torch_model.score_images(test_images), exported.score_images(test_images)
    largest = max(float(np.abs(result.anomaly_map).max()) for result in expected)
    for want, have in zip(expected, got):
        assert have.anomaly_map.shape == want.anomaly_map.shape
        assert np.abs(have.anomaly_map - want.anomaly_map).max() <= FP32_MAP_TOLERANCE * largest
        assert have.raw_score == pytest.approx(want.raw_score, rel=1e-3) and have.is_anomaly == want.is_anomaly


def test_a_mis_converted_export_is_refused_and_nothing_is_written(monkeypatch, small_checkpoint, synthetic_category, tmp_path):
    convert = export_module.write_model_files

    def convert_then_damage(network, export_format, precision, folder, calibration_images):
        files = convert(network, export_format, precision, folder, calibration_images)
        # A conversion that got one weight tensor wrong (noise of 20% of its spread), as a
        # faulty exporter might. (Scaling it would not do: the maps compare directions of features.)
        graph = onnx.load(str(folder / files[0]))
        weights = max(graph.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
        values = numpy_helper.to_array(weights)
        damaged = values + 0.2 * values.std() * np.random.default_rng(0).standard_normal(values.shape)
        weights.CopyFrom(numpy_helper.from_array(damaged.astype(np.float32), weights.name))
        onnx.save(graph, str(folder / files[0]))
        return files

    monkeypatch.setattr(export_module, "write_model_files", convert_then_damage)
    out = tmp_path / "refused"
    with pytest.raises(ParityError, match=r"export refused: its largest map difference .* exceeds the tolerance 1.00e-03"):
        export_module.export_model(small_checkpoint, "onnx", "fp32", out, synthetic_category, CHECK_IMAGES)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_model_file_changed_after_the_gate_is_refused(small_onnx_export, tmp_path):  # noqa: F811
    copy = tmp_path / "copy"
    shutil.copytree(small_onnx_export, copy)
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="not the file that passed the parity gate"):
        load_model(copy)
    (copy / "model.onnx").unlink()
    with pytest.raises(ExportError, match="model file model.onnx is missing"):
        load_model(copy)
    manifest = json.loads((small_onnx_export / EXPORT_MANIFEST).read_text())
    (copy / EXPORT_MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ExportError, match="format version 99"):
        load_model(copy)


def test_runtime_device_and_precision_that_do_not_fit_are_refused_clearly(small_onnx_export, small_checkpoint, synthetic_category, tmp_path):  # noqa: F811
    with pytest.raises(ExportError, match="is an export: torch runs checkpoints"):
        load_model(small_onnx_export, runtime="torch")
    with pytest.raises(ExportError, match="is a checkpoint, which torch runs"):
        load_model(small_checkpoint, runtime="onnxruntime")
    with pytest.raises(ExportError, match="exports run on the CPU"):
        load_model(small_onnx_export, device="cuda")
    with pytest.raises(ExportError, match="passed the parity gate at fp32, not bf16"):
        load_model(small_onnx_export, precision="bf16")
    with pytest.raises(ExportError, match="no bf16 convolutions"):
        export_module.export_model(small_checkpoint, "onnx", "bf16", tmp_path / "x", synthetic_category)
    not_an_export = tmp_path / "occupied"
    not_an_export.mkdir()
    (not_an_export / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="exists and is not a lineguard export"):
        export_module.export_model(small_checkpoint, "onnx", "fp32", not_an_export, synthetic_category)


def test_score_command_takes_an_export_folder(small_onnx_export, small_checkpoint, synthetic_category, capsys):  # noqa: F811
    images = [str(path) for path in list_images(synthetic_category / "test" / "defective")[:3]]
    assert main(["score", str(small_onnx_export), *images]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["score", str(small_checkpoint), "--device", "cpu", "--precision", "fp32", *images]) == 0
    checkpoint = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["path"] for row in exported] == images
    for mine, theirs in zip(exported, checkpoint):
        assert mine["raw_score"] == pytest.approx(theirs["raw_score"], rel=1e-3) and mine["is_anomaly"] == theirs["is_anomaly"]
    assert main(["score", str(small_checkpoint), "--runtime", "openvino", *images]) == 2
    assert "write a openvino model with `lineguard export` first" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        {"global_branch": True},
        {"pixel_scale": 0.5, "image_score": "max"},
        {"region": (0.1, 0.2, 0.9, 1.0), "lighting": "levelled"},
        {"discrepancy": "standardised", "scale_weighting": "score_spread"},
    ],
    ids=["global-branch", "tiles", "region-lighting", "standardised-spread"],
)
def test_the_global_branch_and_tiles_export_through_the_gate_and_score_like_their_checkpoint(options, teacher_weights, tmp_path):
    """Issue 16's options of the recipe, whichever becomes the default: the branch and the teacher's
    feature statistics (a standardised discrepancy) lie inside the exported network; tiles, the
    region and levelled lighting are done by the one scoring path around it."""
    from model.recipe import Recipe, TrainingSettings
    from model.synthetic import write_category
    from model.training import train

    kind = "board" if "global_branch" in options else "tile"
    write_category(tmp_path / kind, n_train=30, n_test_good=2, n_test_defective=4, size=0 if kind == "tile" else 128, seed=5, kind=kind)
    recipe = Recipe(image_size=64, student_width=0.125, taps=["relu2_2", "relu3_3"], **options)
    train(tmp_path / kind, tmp_path / "model.pt", recipe, TrainingSettings(steps=6, batch_size=4, device="cpu", seed=0), str(teacher_weights), progress=False)

    report = export_module.export_model(tmp_path / "model.pt", "onnx", "fp32", tmp_path / "export", tmp_path / kind)
    assert report.passed and report.map_difference <= FP32_MAP_TOLERANCE

    torch_model = load_checkpoint(tmp_path / "model.pt", device="cpu", precision="fp32")
    exported = load_model(tmp_path / "export")
    images = [read_image(path) for path in sorted((tmp_path / kind / "test").rglob("*.png"))]
    for want, have in zip(torch_model.score_images(images), exported.score_images(images)):
        assert have.anomaly_map.shape == want.anomaly_map.shape
        assert have.raw_score == pytest.approx(want.raw_score, rel=1e-3) and have.is_anomaly == want.is_anomaly
