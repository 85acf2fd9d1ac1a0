"""Putting a trained checkpoint into the store, where workers and the dashboard find it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from model.checkpoint import read_checkpoint
from model.export import is_export, read_export
from store.artifacts import ArtifactStore, key_part
from store.records import activate_model, register_model
from store.registry import UNKNOWN_ACTOR

#: The pictures of an evaluation report (`lineguard eval --report DIR`) a person looks at, by title.
REPORT_PICTURES = {"ROC curves": "roc_curves.png", "Score histogram": "score_histogram.png"}


def register_checkpoint(
    engine: Engine,
    checkpoint: Path,
    activate_on_line: str | None = None,
    *,
    by: str = UNKNOWN_ACTOR,
    reason: str | None = None,
    artifacts: ArtifactStore | None = None,
    report: Path | None = None,
) -> dict[str, Any]:
    """Register the model in `checkpoint`, a checkpoint file or an export folder (and make it
    `activate_on_line`'s model, recorded as `by`'s activation for `reason`); returns its contents.
    Registering the same file twice updates the same version. An export is a version of its own
    (`<checkpoint version>-<format>-<precision>`).

    The evaluation report is `report` or the folder `lineguard eval` recorded in the checkpoint's
    metrics; with `artifacts`, its pictures (ROC curves, score histogram) are copied there, under
    the version, and their keys recorded in the metrics (`report_pictures`), so that a dashboard
    that cannot read this machine's folders shows them."""
    path = Path(checkpoint).expanduser().resolve()
    contents = read_export(path) if is_export(path) else read_checkpoint(path)
    contents["metrics"] = _with_report(contents["metrics"], contents["version"], report, artifacts)
    register_model(
        engine,
        version=contents["version"],
        checkpoint_path=str(path),
        recipe=contents["recipe"],
        calibration=contents["calibration"],
        metrics=contents["metrics"],
        teacher_source=contents["teacher_source"],
        random_teacher=contents["random_teacher"],
        training_data=contents["training_data"],
    )
    if activate_on_line:
        activate_model(engine, activate_on_line, contents["version"], by=by, reason=reason)
    return contents


def _with_report(metrics: dict[str, Any] | None, version: str, report: Path | None, artifacts: ArtifactStore | None) -> dict[str, Any] | None:
    """``metrics`` with the report's folder (``report``) and the keys of its pictures in ``artifacts``
    (``report_pictures``, title -> key). A given report without recorded metrics lends its metrics.json."""
    if report is not None:
        report = Path(report).expanduser().resolve()
        if not report.is_dir():
            raise FileNotFoundError(f"{report}: no such report folder (`lineguard eval MODEL CATEGORY --report DIR` writes one)")
        if not metrics and (report / "metrics.json").is_file():
            metrics = json.loads((report / "metrics.json").read_text())
        metrics = {**(metrics or {}), "report": str(report)}
    folder = (metrics or {}).get("report")
    if artifacts is None or not isinstance(folder, str):
        return metrics
    pictures = {}
    for title, name in REPORT_PICTURES.items():
        picture = Path(folder) / name
        if picture.is_file():
            key = f"models/{key_part(version)}/report/{name}"
            artifacts.put(key, picture.read_bytes())
            pictures[title] = key
    return {**metrics, "report_pictures": pictures}
