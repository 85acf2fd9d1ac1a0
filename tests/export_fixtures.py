"""An ONNX export of the small test model, written once per run (import the fixture to use it)."""

from __future__ import annotations

from pathlib import Path

import pytest

# Enough images for the gate to see both kinds of test part, few enough to keep the fixture quick.
CHECK_IMAGES = 10


@pytest.fixture(scope="session")
def small_onnx_export(tmp_path_factory, small_checkpoint, synthetic_category) -> Path:
    from model.export import export_model

    out = tmp_path_factory.mktemp("export") / "small-onnx"
    export_model(small_checkpoint, "onnx", "fp32", out, synthetic_category, CHECK_IMAGES)
    return out
