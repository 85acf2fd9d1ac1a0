"""Models: every registered version with its evaluation metrics and calibration, and which line uses which."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components, sources
from dashboard.queries import inspections_export
from dashboard.settings import DashboardSettings
from store import InspectionFilter, ModelInfo

#: Metrics shown as columns of the models table, in this order (those of ``lineguard eval``).
METRIC_COLUMNS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")
#: Calibration fields shown as columns of the models table.
CALIBRATION_COLUMNS = ("threshold", "false_reject_rate", "n_images")


def model_table(models: list[ModelInfo], lines_by_model: Mapping[str, list[str]]) -> pd.DataFrame:
    """One row per model: version, age, teacher (marked when random), metrics, calibration, lines using it."""
    zone = components.viewer_timezone()
    rows = []
    for model in models:
        metrics = model.metrics or {}
        rows.append(
            {
                "version": model.version,
                "registered": components.local_time(model.created_at, zone),
                "teacher": components.RANDOM_TEACHER_MARK if model.random_teacher else model.teacher_source,
                "active on": ", ".join(lines_by_model.get(model.version, [])),
                **{name: _number(metrics.get(name)) for name in METRIC_COLUMNS},
                **{f"calibration {name}": _number(model.calibration.get(name)) for name in CALIBRATION_COLUMNS},
            }
        )
    return pd.DataFrame(rows)


def model_detail(model: ModelInfo, lines: list[str], settings: DashboardSettings) -> None:
    """Everything stored about one model, and an export of the inspections it scored."""
    st.subheader(model.version)
    if model.random_teacher:
        st.warning(f"{components.RANDOM_TEACHER_MARK}: this model was {components.RANDOM_TEACHER_MEANING}.", icon="⚠️")
    st.caption(
        f"checkpoint {model.checkpoint_path} · teacher {model.teacher_source} · "
        f"active on {', '.join(lines) if lines else 'no line'}"
    )
    metrics_column, calibration_column = st.columns(2)
    with metrics_column:
        st.markdown("**Evaluation metrics**")
        if model.metrics:
            st.json(model.metrics)
        else:
            st.caption("not evaluated")
    with calibration_column:
        st.markdown("**Calibration**")
        st.json(model.calibration)
    recipe_column, data_column = st.columns(2)
    with recipe_column:
        st.markdown("**Recipe**")
        st.json(model.recipe, expanded=False)
    with data_column:
        st.markdown("**Training data**")
        st.json(model.training_data, expanded=False)
    engine = sources.engine(settings.services.database_url)
    components.csv_export(
        f"Inspections scored by {model.version} (CSV)",
        key="models_export",
        file_name=f"inspections-{model.version}.csv",
        rows=lambda: inspections_export(engine, InspectionFilter(), model_version=model.version),
        help_text="the newest inspections this model scored, with their reviews",
    )


def main() -> None:
    settings = DashboardSettings.from_environment()
    database_url = settings.services.database_url
    st.title("Models")
    models = sources.models(database_url)
    if not models:
        st.info("No model is registered yet.")
        return
    lines_by_model: dict[str, list[str]] = {}
    for info in sources.line_models(database_url):
        lines_by_model.setdefault(info.model_version, []).append(info.line)
    st.dataframe(model_table(models, lines_by_model), hide_index=True, key="models_table")
    by_version = {model.version: model for model in models}
    chosen = st.selectbox(
        "Model",
        list(by_version),
        format_func=lambda version: f"{version} ({components.RANDOM_TEACHER_MARK})"
        if by_version[version].random_teacher
        else version,
        key="models_version",
        bind="query-params",
    )
    model_detail(by_version[chosen], lines_by_model.get(chosen, []), settings)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


main()
