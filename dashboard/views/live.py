"""Live: defect rates per line and camera, throughput, latency, queue health and active models.

The figures sit in a fragment that reruns every LINEGUARD_DASHBOARD_REFRESH_S seconds on its own,
so the controls above it (window, grouping, alarm level; kept in the URL) keep their state.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import components, figures, sources
from dashboard.health import QueueHealth
from dashboard.queries import LineModelInfo, inspections_export
from dashboard.settings import DashboardSettings
from dashboard.windows import WINDOWS, Window, floor_time, window_by_key
from store import InspectionFilter, LostFrames, OutboxDepth

#: Background of a table row whose rate crossed the alarm level.
ALARM_ROW_STYLE = "background-color: rgba(255, 75, 75, 0.25)"
#: Seconds after which waiting verdicts are shown as a warning: the relay or its sink is not keeping up.
OUTBOX_LATE_S = 10
#: Line tiles per row.
TILES_PER_ROW = 4


def line_tiles(per_line: pd.DataFrame, alarms: pd.Series, line_models: dict[str, LineModelInfo], window: Window) -> None:
    """One bordered tile per line: defect rate (marked when alarmed), throughput, latency, model."""
    for start in range(0, len(per_line), TILES_PER_ROW):
        for column, (index, row) in zip(
            st.columns(TILES_PER_ROW), per_line.iloc[start : start + TILES_PER_ROW].iterrows(), strict=False
        ):
            model = line_models.get(row["line"])
            with column.container(border=True):
                if alarms[index]:
                    st.badge("ALARM", icon=":material/warning:", color="red")
                st.metric(
                    f"{row['line']} defect rate, {window.label}",
                    components.percent(row["defect_rate"]),
                    help="defects per scored frame; frames that could not be scored are left out",
                )
                st.caption(
                    f"{row['frames_per_s_now']:.2f} frames/s in the last minute, {row['frames_per_s']:.2f} on average · latency {components.seconds(row['mean_latency_s'])} "
                    f"(max {components.seconds(row['max_latency_s'])}) · {int(row['errors'])} errors"
                )
                st.caption(f"model {model.model_version}" if model is not None else "no active model")
                if model is not None and model.random_teacher:
                    st.badge(components.RANDOM_TEACHER_MARK, color="orange", help=components.RANDOM_TEACHER_MEANING)


def figures_table(per_stream: pd.DataFrame, alarms: pd.Series, line_models: dict[str, LineModelInfo]) -> None:
    """Current figures per line and camera, with the line's model; alarmed rows are tinted."""
    shown = pd.DataFrame(
        {
            "line": per_stream["line"],
            "camera": per_stream["camera"],
            "frames": per_stream["frames"],
            "defects": per_stream["defects"],
            "errors": per_stream["errors"],
            "defect rate": per_stream["defect_rate"].map(components.percent),
            "frames/s, last minute": per_stream["frames_per_s_now"],
            "frames/s, window": per_stream["frames_per_s"],
            "mean latency": per_stream["mean_latency_s"].map(components.seconds),
            "max latency": per_stream["max_latency_s"].map(components.seconds),
            "alarm": alarms.map({True: "ALARM", False: ""}),
            "model": per_stream["line"].map(lambda line: model_label(line_models.get(line))),
        }
    )
    styled = shown.style.apply(lambda row: [ALARM_ROW_STYLE if alarms[row.name] else ""] * len(row), axis=1)
    st.dataframe(
        styled,
        hide_index=True,
        key="live_figures_table",
        column_config={
            "frames/s, last minute": st.column_config.NumberColumn(format="%.2f"),
            "frames/s, window": st.column_config.NumberColumn(format="%.2f", help="average over the whole window"),
        },
    )


def model_label(model: LineModelInfo | None) -> str:
    """The model's version, marked when it was trained with a random teacher."""
    if model is None:
        return "-"
    return f"{model.model_version} ({components.RANDOM_TEACHER_MARK})" if model.random_teacher else model.model_version


def trend_charts(points: pd.DataFrame, alarm_rate: float) -> None:
    """Defect rate (with the alarm level as a rule), frames/s and mean latency over the window."""
    base = alt.Chart(points).encode(
        x=alt.X("start:T", title=None, axis=alt.Axis(format="%H:%M")),
        color=alt.Color("series:N", title=None),
        tooltip=["series", alt.Tooltip("start:T", format="%H:%M:%S"), "frames", alt.Tooltip("defect_rate:Q", format=".1%")],
    )
    rate = base.mark_line(point=True).encode(y=alt.Y("defect_rate:Q", title="defect rate", axis=alt.Axis(format="%")))
    alarm_rule = alt.Chart(pd.DataFrame({"alarm": [alarm_rate]})).mark_rule(color="red", strokeDash=[6, 4]).encode(y="alarm:Q")
    rate_tab, throughput_tab, latency_tab = st.tabs(["Defect rate", "Frames/s", "Latency"])
    with rate_tab:
        st.altair_chart(rate + alarm_rule, width="stretch")
    with throughput_tab:
        st.altair_chart(base.mark_line().encode(y=alt.Y("frames_per_s:Q", title="frames/s")), width="stretch")
    with latency_tab:
        st.altair_chart(
            base.mark_line().encode(y=alt.Y("mean_latency_s:Q", title="capture-to-result latency (s)")), width="stretch"
        )


def queue_panel(health: QueueHealth, lost: list[LostFrames], outbox: OutboxDepth | None) -> None:
    """Queue depth, drops, frames lost with Redis (from the store), workers alive and the outbox of
    verdicts (None: no sink configured); a warning instead of the Redis figures when Redis cannot be read."""
    st.subheader("Queue and workers")
    if outbox is not None:
        age = "" if outbox.oldest_age_s is None else f", the oldest {components.seconds(outbox.oldest_age_s)} old"
        text = f"Verdicts and alarms waiting to leave for the line: {outbox.messages:,}{age}"
        if outbox.messages and outbox.oldest_age_s is not None and outbox.oldest_age_s > OUTBOX_LATE_S:
            st.warning(text + " (is the broker or the relay down?)", icon=":material/outbox:")
        else:
            st.caption(text)
    if lost:
        st.warning(
            "Frames lost with Redis (sent, then gone from the queue without a row): "
            + ", ".join(f"{each.line} / {each.camera}: {each.lost:,}" for each in lost),
            icon=":material/report:",
        )
    if health.error is not None:
        st.warning(f"Redis cannot be read, so queue figures are missing: {health.error}")
        return
    dropped_share = health.dropped / (health.published + health.dropped) if health.published + health.dropped else None
    depth, running, failed, published, dropped, workers = st.columns(6)
    depth.metric("Jobs waiting", health.queued_jobs, help=f"micro-batches in queue {health.queue!r}")
    running.metric("Jobs running", health.started_jobs)
    failed.metric("Jobs failed", health.failed_jobs)
    published.metric("Frames published", f"{health.published:,}")
    dropped.metric("Frames dropped", f"{health.dropped:,}", help=f"{components.percent(dropped_share)} of all frames offered")
    workers.metric("Workers alive", sum(worker.alive for worker in health.workers), help="heartbeat within the last minute")
    streams_column, workers_column = st.columns(2)
    if health.streams:
        streams_column.dataframe(pd.DataFrame([asdict(stream) for stream in health.streams]), hide_index=True)
    zone = components.viewer_timezone()
    if health.workers:
        workers_column.dataframe(
            pd.DataFrame(
                {
                    "worker": [worker.name for worker in health.workers],
                    "state": [worker.state for worker in health.workers],
                    "last heartbeat": [components.local_time(worker.last_heartbeat, zone) for worker in health.workers],
                }
            ),
            hide_index=True,
        )


def models_panel(line_models: list[LineModelInfo]) -> None:
    """The model each line scores with now."""
    st.subheader("Active models")
    if not line_models:
        st.info("No line has an active model yet.")
        return
    zone = components.viewer_timezone()
    st.dataframe(
        pd.DataFrame(
            {
                "line": [info.line for info in line_models],
                "model": [info.model_version for info in line_models],
                "since": [components.local_time(info.activated_at, zone) for info in line_models],
                "teacher": [
                    components.RANDOM_TEACHER_MARK if info.random_teacher else info.teacher_source for info in line_models
                ],
            }
        ),
        hide_index=True,
    )


def live_figures(settings: DashboardSettings, window: Window, per_camera: bool, alarm_rate: float) -> None:
    """Everything that refreshes: alarms, line tiles, the figures table, trends, queue, models."""
    database_url = settings.services.database_url
    now = floor_time(datetime.now(UTC), sources.LIVE_TTL_S)
    start = window.start(now)
    buckets = figures.bucket_frame(sources.window_buckets(database_url, window, now))
    line_models = {info.line: info for info in sources.line_models(database_url)}
    zone = components.viewer_timezone()
    st.caption(
        f"{window.label}: from {components.local_time(start, zone)} to {components.local_time(now, zone)}; "
        f"refreshes every {settings.refresh_s:g} s"
    )
    for alarm in sources.alarms(database_url):
        st.error(
            f"{alarm.line} / {alarm.camera}: drift alarm since {components.local_time(alarm.since, zone)}: {alarm.reason}",
            icon=":material/center_focus_weak:",
        )
    if buckets.empty:
        st.info(f"No inspections finished in the {window.label}.")
    else:
        window_seconds = (now - start).total_seconds()
        present = sources.present_counts(database_url, now)
        per_line = figures.with_present_rate(
            figures.current_figures(buckets, window_seconds, per_camera=False), present, sources.PRESENT_S, per_camera=False
        )
        per_stream = figures.with_present_rate(
            figures.current_figures(buckets, window_seconds, per_camera=True), present, sources.PRESENT_S, per_camera=True
        )
        line_alarms = figures.alarmed(per_line, alarm_rate, settings.alarm_min_frames)
        stream_alarms = figures.alarmed(per_stream, alarm_rate, settings.alarm_min_frames)
        for _, row in per_stream[stream_alarms].iterrows():
            st.error(
                f"{row['line']} / {row['camera']}: defect rate {components.percent(row['defect_rate'])} "
                f"in the {window.label}, at or above the alarm level of {components.percent(alarm_rate)}",
                icon=":material/notifications_active:",
            )
        line_tiles(per_line, line_alarms, line_models, window)
        figures_table(per_stream, stream_alarms, line_models)
        trend_charts(figures.trend(buckets, window.bucket_seconds, per_camera), alarm_rate)
    sinks = settings.services.outbox_sinks
    queue_panel(
        sources.health(settings.services.redis_url, settings.services.queue_name),
        sources.lost_frames(database_url),
        sources.outbox(database_url, sinks) if sinks else None,
    )
    models_panel(list(line_models.values()))


def main() -> None:
    settings = DashboardSettings.from_environment()
    st.title("Live")
    window_column, grouping_column, alarm_column = st.columns([3, 2, 2], vertical_alignment="bottom")
    with window_column:
        window_key = st.segmented_control(
            "Window",
            [window.key for window in WINDOWS],
            format_func=lambda key: window_by_key(key).label,
            default="hour",
            required=True,
            key="live_window",
            bind="query-params",
        )
    with grouping_column:
        per_camera = st.toggle("Trend per camera", key="live_per_camera", bind="query-params")
    with alarm_column:
        alarm_percent = st.number_input(
            "Alarm level (% defects)",
            min_value=0.1,
            max_value=100.0,
            value=round(settings.alarm_rate * 100, 3),
            step=0.5,
            key="live_alarm_percent",
            bind="query-params",
            help=f"a line or camera stands out at this rate or above, over at least {settings.alarm_min_frames} scored frames",
        )
    window = window_by_key(window_key)
    st.fragment(live_figures, run_every=settings.refresh_s)(settings, window, per_camera, alarm_percent / 100)
    since = window.start(datetime.now(UTC))
    engine = sources.engine(settings.services.database_url)
    components.csv_export(
        f"Inspections of the {window.label} (CSV)",
        key="live_export",
        file_name=f"inspections-{window.key}.csv",
        rows=lambda: inspections_export(engine, InspectionFilter(since=since)),
        help_text="every inspection finished in the window, newest first, with its review",
    )


main()
