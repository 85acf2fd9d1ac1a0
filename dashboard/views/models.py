"""Models: every registered version with its figures and calibration in words; per line, the candidate
beside the active model, promote and roll back, and the history of changes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import components, sources
from dashboard.queries import inspections_export
from dashboard.settings import DashboardSettings
from store import InspectionFilter, ModelInfo, StoreError
from wire.comparisons import comparison_key

#: Metrics shown as columns of the models table, in this order (those of ``lineguard eval``).
METRIC_COLUMNS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")
#: What the models table says for a metric a model has no figure of.
NOT_EVALUATED = "not evaluated"
#: Calibration fields shown as columns of the models table.
CALIBRATION_COLUMNS = ("threshold", "false_reject_rate", "n_images")
#: Most pictures shown per kind of verdict change, and their side in pixels.
COMPARISON_PICTURES = 6
THUMBNAIL_SIDE = 240


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
                **{name: _metric_text(metrics.get(name)) for name in METRIC_COLUMNS},
                **{f"calibration {name}": _number(model.calibration.get(name)) for name in CALIBRATION_COLUMNS},
            }
        )
    return pd.DataFrame(rows)


#: Evaluation metrics shown as figures, with the label a person reads.
METRIC_LABELS = {"image_auroc": "Image AUROC", "pixel_auroc": "Pixel AUROC", "aupro": "AUPRO", "image_f1_max": "Best image F1"}
#: What training may choose from its images (model/data_choices.py), as a person names it.
CHOSEN_WORDS = {"pixel_scale": "tiles", "lighting": "levelling"}


def calibration_sentence(model: ModelInfo) -> str:
    """The calibration as a person says it: how many good parts it flags, and what the threshold rests on."""
    calibration = model.calibration
    rate = calibration.get("false_reject_rate")
    threshold = calibration.get("threshold")
    flags = f"Flags about {rate:.1%} of good parts" if isinstance(rate, int | float) else "Flags an unstated share of good parts"
    recalibration = (model.training_data or {}).get("recalibration")
    if isinstance(recalibration, dict):
        when = _day(recalibration.get("recalibrated_at"))
        rests_on = f"threshold {threshold:.4g} from {recalibration.get('parts')} parts of line {recalibration.get('line')}, recalibrated {when}"
    else:
        rests_on = f"threshold {threshold:.4g} from {calibration.get('n_images')} held-out training images"
    return f"{flags}; {rests_on}."


def seeing_sentence(model: ModelInfo) -> str:
    """How the model looks at a frame, in words, and what training chose from its images
    (model/data_choices.py)."""
    recipe = model.recipe or {}
    chosen = ((model.training_data or {}).get("data_choices") or {}).get("chosen") or {}
    shape = recipe.get("input_shape")
    if recipe.get("pixel_scale") is None:
        seen = f"Sees each frame whole, fitted into {shape[1]}x{shape[0]} px" if shape else "Sees each frame whole"
    else:
        side = shape[0] if shape else recipe.get("image_size")
        scale = recipe["pixel_scale"]
        seen = f"Sees frames in tiles of {side} px at " + ("their own pixels" if scale == 1 else f"{scale:g}x their pixels")
    if recipe.get("region"):
        seen += ", within the part's region"
    if recipe.get("lighting") == "levelled":
        seen += ", each one's lighting levelled"
    named = [CHOSEN_WORDS[field] for field in chosen if field in CHOSEN_WORDS]
    if named:
        seen += f" ({' and '.join(named)} chosen from the training images)"
    return seen + "."


def model_detail(model: ModelInfo, lines: list[str], settings: DashboardSettings) -> None:
    """One model for a person: figures, the calibration in words, what it was trained on, an export."""
    st.subheader(model.version)
    if model.random_teacher:
        st.warning(f"{components.RANDOM_TEACHER_MARK}: this model was {components.RANDOM_TEACHER_MEANING}.", icon="⚠️")
    st.caption(
        f"checkpoint {model.checkpoint_path} · teacher {model.teacher_source} · "
        f"active on {', '.join(lines) if lines else 'no line'}"
    )
    st.markdown(calibration_sentence(model))
    st.markdown(seeing_sentence(model))
    metrics = model.metrics or {}
    shown = [(label, metrics[name]) for name, label in METRIC_LABELS.items() if _number(metrics.get(name)) is not None]
    if shown:
        for column, (label, value) in zip(st.columns(len(shown)), shown):
            column.metric(label, f"{value:.3f}")
        if metrics.get("evaluated_on"):
            st.caption(f"evaluated on {metrics['evaluated_on']}")
        report_pictures(metrics, settings.services.artifacts_url)
    else:
        st.caption("not evaluated (`lineguard eval MODEL.pt CATEGORY --report DIR`, then `lineguard models add`)")
    training = model.training_data or {}
    trained_on = training.get("folder") or training.get("root")
    if trained_on:
        st.caption(f"trained on {trained_on}" + (f" ({training['images']} images)" if training.get("images") else ""))
    engine = sources.engine(settings.services.database_url)
    components.csv_export(
        f"Inspections scored by {model.version} (CSV)",
        key="models_export",
        file_name=f"inspections-{model.version}.csv",
        rows=lambda: inspections_export(engine, InspectionFilter(), model_version=model.version),
        help_text="the newest inspections this model scored, with their reviews",
    )


def report_pictures(metrics: Mapping[str, Any], artifacts_url: str) -> None:
    """The evaluation report's pictures (ROC curves, score histogram) side by side, as registration
    copied them to the artifact store (`lineguard models add`)."""
    keys = metrics.get("report_pictures")
    pictures = []
    for title, key in (keys.items() if isinstance(keys, dict) else ()):
        picture = sources.artifact_image(artifacts_url, str(key), None)
        if picture is not None:
            pictures.append((title, picture))
    if pictures:
        for column, (title, picture) in zip(st.columns(len(pictures)), pictures):
            column.image(picture, caption=title)
    elif metrics.get("report"):
        st.caption(
            f"evaluation report in {metrics['report']}; its pictures are not in the artifact store "
            "(`lineguard models add MODEL --report DIR` puts them there)"
        )


def line_panel(model: ModelInfo, active_by_line: Mapping[str, str], settings: DashboardSettings) -> None:
    """For one line: the candidate beside the line's model (from `lineguard models compare`), promote
    and roll back as one action each, and the line's history of model changes."""
    if not active_by_line:
        return
    st.subheader("On a line")
    line = st.selectbox("Line", sorted(active_by_line), key="models_line")
    active = active_by_line[line]
    database_url, artifacts_url = settings.services.database_url, settings.services.artifacts_url
    comparison = sources.artifact_json(artifacts_url, comparison_key(line, model.version)) if model.version != active else None
    if comparison:
        comparison_view(comparison, artifacts_url)
    elif model.version != active:
        st.caption(f"No comparison with {active} yet: `lineguard models compare {model.version} --line {line}`.")
    by = st.text_input("Decided by", value=settings.reviewer, key="models_by", max_chars=128)
    reason = st.text_input("Why", key="models_reason", max_chars=500)
    promote_column, rollback_column = st.columns(2)
    promote = promote_column.button(
        f"Promote {model.version} on {line}", key="models_promote", disabled=model.version == active or not by.strip(), type="primary"
    )
    rollback = rollback_column.button(f"Roll back {line}", key="models_rollback", disabled=not by.strip())
    if promote or rollback:
        try:
            change = sources.change_line_model(database_url, line, model.version if promote else None, by, reason or None)
        except (StoreError, ValueError) as error:
            st.error(str(error))
        else:
            st.success(f"{line} now scores with {change.model_version}; running workers switch within seconds.")
    shadow_view(line, artifacts_url, database_url)
    retraining_view(line, by, settings)
    history = sources.activations(database_url, line)
    if history:
        zone = components.viewer_timezone()
        st.markdown("**Model changes on this line**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "when": components.local_time(change.activated_at, zone),
                        "to": change.model_version,
                        "from": change.previous_version or "",
                        "by": change.activated_by,
                        "why": change.reason or "",
                    }
                    for change in history
                ]
            ),
            hide_index=True,
            key="models_history",
        )


def shadow_view(line: str, artifacts_url: str, database_url: str) -> None:
    """The line's shadow candidate (`lineguard models shadow`): agreement with the active model on
    live frames, and pictures of the latest parts where they disagree."""
    agreement = sources.shadow(database_url, line)
    if agreement is None:
        return
    st.markdown(f"**Shadow: {agreement.model_version}** (scores live frames, never gives the verdict)")
    if agreement.agreement is None:
        st.caption("No live frame scored by the shadow yet.")
        return
    st.metric("Agrees with the active model", f"{agreement.agreement:.0%}", help=f"on {agreement.frames} live frames")
    shown = agreement.disagreements[:COMPARISON_PICTURES]
    if shown:
        st.caption("Latest parts where they disagree")
        for column, verdict in zip(st.columns(len(shown)), shown):
            picture = sources.artifact_image(artifacts_url, verdict.image_key, THUMBNAIL_SIDE) if verdict.image_key else None
            if picture is not None:
                column.image(picture)
            column.caption(f"{verdict.frame_id}: shadow {'flags' if verdict.flagged else 'passes'}")


def retraining_view(line: str, by: str, settings: DashboardSettings) -> None:
    """Queue a retraining of the line (run by `lineguard worker --train`, never here) and show its progress."""
    redis_url = settings.services.redis_url
    steps = st.number_input(
        "Training steps", min_value=1, value=None, step=100, key="models_retrain_steps",
        help="optimiser steps of the retraining; empty: as `lineguard train` (1000)", placeholder="as lineguard train",
    )
    if st.button(f"Retrain on {line}'s parts", key="models_retrain", disabled=not by.strip()):
        job_id = sources.queue_retraining(redis_url, line, by, int(steps) if steps else None)
        st.success(f"Training job {job_id} queued; `lineguard worker --train` runs it.")
    jobs = sources.retrainings(redis_url, line)
    if jobs is None:
        st.caption("Training jobs unknown: Redis does not answer.")
    elif jobs:
        zone = components.viewer_timezone()
        st.markdown("**Retrainings of this line**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "queued": components.local_time(datetime.fromtimestamp(job.queued_at, UTC), zone),
                        "by": job.request.requested_by,
                        "state": job.state,
                        "progress": job.phase or job.error or (f"candidate {job.candidate}" if job.candidate else ""),
                    }
                    for job in jobs
                ]
            ),
            hide_index=True,
        )


def comparison_view(comparison: Mapping[str, Any], artifacts_url: str) -> None:
    """The active model and the candidate side by side, and pictures of the parts whose verdict changes."""
    st.markdown(f"**Compared on {comparison['parts']} of the line's parts (stored pictures)**")
    rows = {}
    for role in ("active", "candidate"):
        figures = comparison[role]
        rows[f"{role}: {figures['version']}"] = {
            "defects caught": f"{figures['defects_caught']} of {figures['defects']}",
            "false alarms on good parts": f"{figures['false_alarms']} of {figures['good_parts']}",
            "stated false-reject rate": f"{figures['stated_false_reject_rate']:.1%}",
            "ms per frame": f"{figures['ms_per_frame']:.1f}",
        }
    st.table(pd.DataFrame(rows))
    for label, changes in (("Now flagged by the candidate", comparison["now_flagged"]), ("Now passed by the candidate", comparison["now_passed"])):
        if not changes:
            continue
        st.markdown(f"**{label}** ({len(changes)})")
        shown = list(changes.items())[:COMPARISON_PICTURES]
        for column, (frame_id, kind) in zip(st.columns(len(shown)), shown):
            picture = sources.artifact_image(artifacts_url, comparison["image_keys"][frame_id], THUMBNAIL_SIDE)
            if picture is not None:
                column.image(picture)
            column.caption(f"{frame_id}: {kind}")


def main() -> None:
    settings = DashboardSettings.from_environment()
    database_url = settings.services.database_url
    st.title("Models")
    models = sources.models_with(database_url, st.query_params.get("models_version"))
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
    active_by_line = {line: version for version, lines in lines_by_model.items() for line in lines}
    line_panel(by_version[chosen], active_by_line, settings)


def _metric_text(value: Any) -> str:
    """A metric as the table shows it: three decimals (text, so that a missing one reads as words, not "None")."""
    number = _number(value)
    return NOT_EVALUATED if number is None else f"{number:.3f}"


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _day(iso_time: Any) -> str:
    """'3 Dec' from an ISO time; the text itself when it is not one."""
    try:
        return datetime.fromisoformat(str(iso_time)).strftime("%-d %b")
    except ValueError:
        return str(iso_time)


main()
