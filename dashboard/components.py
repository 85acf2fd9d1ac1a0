"""Pieces every page uses: the random-teacher marks, times in the viewer's zone, number formats, CSV export."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from dashboard.queries import LineModelInfo

#: The mark put beside every result of a model trained with a random teacher.
RANDOM_TEACHER_MARK = "⚠ random teacher"
#: What the mark means, for tooltips and notices.
RANDOM_TEACHER_MEANING = (
    "trained with a random teacher (for tests and the demo): its scores and flags do not measure real defects"
)


def random_teacher_notice(line_models: Sequence[LineModelInfo]) -> None:
    """A warning naming every line whose active model was trained with a random teacher (nothing when none)."""
    marked = [info for info in line_models if info.random_teacher]
    if marked:
        lines = ", ".join(f"{info.line} ({info.model_version})" for info in marked)
        st.warning(f"{RANDOM_TEACHER_MARK}: the model of {lines} was {RANDOM_TEACHER_MEANING}.", icon="⚠️")


def viewer_timezone() -> tzinfo:
    """The browser's time zone when it told one, else UTC."""
    name = st.context.timezone
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_time(moment: datetime | None, zone: tzinfo) -> str:
    """``moment`` in ``zone`` to the second, with the zone's abbreviation; "-" for None."""
    if moment is None:
        return "-"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal; "-" when unknown."""
    return "-" if share is None or (isinstance(share, float) and math.isnan(share)) else f"{share:.1%}"


def seconds(value: float | None) -> str:
    """A duration in seconds, to the millisecond below 10 s; "-" when unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def csv_export(label: str, key: str, file_name: str, rows: Callable[[], pd.DataFrame], help_text: str) -> None:
    """A button that downloads ``rows()`` as CSV; the query runs only when the button is clicked."""

    def csv_bytes() -> bytes:
        return rows().to_csv(index=False).encode()

    st.download_button(
        label,
        data=csv_bytes,
        file_name=file_name,
        mime="text/csv",
        key=key,
        on_click="ignore",
        icon=":material/download:",
        help=help_text,
    )
