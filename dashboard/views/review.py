"""Review queue: flagged parts newest first, reviewed one by one or in bulk, from the mouse or the keyboard.

The focused part is shown in detail beside the gallery; "defect confirmed" and "false alarm" save a
review through the store and the part leaves the queue. Filters are kept in the URL.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pandas as pd
import streamlit as st
from sqlalchemy.exc import SQLAlchemyError

from dashboard import auth, components, sources
from dashboard.queries import LineModelInfo, inspections_export
from dashboard.settings import DashboardSettings
from dashboard.windows import floor_time
from store import InspectionFilter, LinePrecision, StoredInspection, StoreError
from store.schema import CONFIRMED_REVIEW, FLAGGED_VERDICT

#: Parts per gallery page.
PAGE_SIZE = 12
#: Cards per gallery row.
GALLERY_COLUMNS = 3
#: Longer side of a gallery thumbnail, in pixels.
THUMBNAIL_SIDE = 320
#: Longer side of the detail view's images, in pixels.
DETAIL_SIDE = 768
#: Review verdict of a false alarm (the other verdict is store.schema.CONFIRMED_REVIEW).
FALSE_ALARM_REVIEW = "false_alarm"
#: How each review verdict reads on buttons and in messages.
VERDICT_LABELS = {CONFIRMED_REVIEW: "defect confirmed", FALSE_ALARM_REVIEW: "false alarm"}
#: Period filter: key -> (label, length back from now; None: any time). "dates" picks a date range.
PERIODS: dict[str, tuple[str, timedelta | None]] = {
    "any": ("any time", None),
    "hour": ("last hour", timedelta(hours=1)),
    "shift": ("last shift (8 h)", timedelta(hours=8)),
    "day": ("last day", timedelta(days=1)),
    "week": ("last 7 days", timedelta(days=7)),
    "dates": ("between dates", None),
}
#: The selectbox value that means "no filter" (no line or camera has an empty name).
ALL = ""

# Session-state keys.
REVIEWER_KEY = "reviewer"
FOCUS_KEY = "review_focus"
MESSAGE_KEY = "review_message"
PAGE_KEY = "review_page"
BULK_NOTE_KEY = "review_bulk_note"


def select_key(inspection_id: int) -> str:
    """Session-state key of a gallery card's "select" checkbox."""
    return f"review_select_{inspection_id}"


def note_key(inspection_id: int) -> str:
    """Session-state key of the note typed for one part."""
    return f"review_note_{inspection_id}"


@dataclass(frozen=True, slots=True)
class QueueView:
    """What the actions act on: the database, the reviewer and the ids on this gallery page, in order."""

    database_url: str
    reviewer: str
    ids: tuple[int, ...]


# --- actions (button callbacks: they run before the rerun, so the page shows their outcome) ---


def save(view: QueueView, inspection_ids: list[int], verdict: str, note: str | None) -> bool:
    """Save one review per id and leave a message for the page; True when all were saved (they leave the queue)."""
    try:
        saved = sources.save_reviews(view.database_url, inspection_ids, verdict, note or None, view.reviewer)
    except (StoreError, SQLAlchemyError) as error:
        st.session_state[MESSAGE_KEY] = ("error", f"Review not saved: {error}")
        return False
    st.session_state[MESSAGE_KEY] = ("success", f"{saved} part{'s' if saved != 1 else ''} marked {VERDICT_LABELS[verdict]}")
    return True


def review_focused(view: QueueView, inspection_id: int, verdict: str) -> None:
    """Review the focused part with its note, then focus the part after it."""
    if save(view, [inspection_id], verdict, st.session_state.get(note_key(inspection_id))):
        st.session_state[FOCUS_KEY] = neighbour(view.ids, inspection_id)


def review_selected(view: QueueView, verdict: str) -> None:
    """Review every selected part on this page with the bulk note, then clear the selection."""
    chosen = [inspection_id for inspection_id in view.ids if st.session_state.get(select_key(inspection_id))]
    if not save(view, chosen, verdict, st.session_state.get(BULK_NOTE_KEY)):
        return
    for inspection_id in chosen:
        st.session_state[select_key(inspection_id)] = False
    st.session_state[BULK_NOTE_KEY] = ""
    remaining = [inspection_id for inspection_id in view.ids if inspection_id not in chosen]
    if st.session_state.get(FOCUS_KEY) in chosen:
        st.session_state[FOCUS_KEY] = remaining[0] if remaining else None


def move_focus(view: QueueView, step: int) -> None:
    """Focus the part ``step`` places after (or before) the focused one, within this page."""
    current = st.session_state.get(FOCUS_KEY)
    index = view.ids.index(current) if current in view.ids else 0
    st.session_state[FOCUS_KEY] = view.ids[min(max(index + step, 0), len(view.ids) - 1)]


def focus(inspection_id: int) -> None:
    """Show ``inspection_id`` in the detail view."""
    st.session_state[FOCUS_KEY] = inspection_id


def toggle_selected(inspection_id: int) -> None:
    """Select the part, or unselect it when it was selected."""
    st.session_state[select_key(inspection_id)] = not st.session_state.get(select_key(inspection_id), False)


def select_all(view: QueueView, selected: bool) -> None:
    """Select (or unselect) every part on this page."""
    for inspection_id in view.ids:
        st.session_state[select_key(inspection_id)] = selected


def neighbour(ids: tuple[int, ...], inspection_id: int) -> int | None:
    """The id after ``inspection_id`` in ``ids``, else the one before it, else None."""
    if inspection_id not in ids:
        return ids[0] if ids else None
    index = ids.index(inspection_id)
    if index + 1 < len(ids):
        return ids[index + 1]
    return ids[index - 1] if index > 0 else None


# --- page parts ---


def precision_figures(precisions: list[LinePrecision], line_models: list[LineModelInfo]) -> None:
    """Per line: flags, reviews, precision of the flags (confirmed / reviewed) and parts awaiting review."""
    random_lines = {info.line for info in line_models if info.random_teacher}
    waiting = sum(entry.unreviewed for entry in precisions)
    reviewed = sum(entry.reviewed for entry in precisions)
    confirmed = sum(entry.confirmed for entry in precisions)
    waiting_column, precision_column, table_column = st.columns([1, 1, 4])
    waiting_column.metric("Awaiting review", f"{waiting:,}")
    precision_column.metric(
        "Precision of flags", components.percent(confirmed / reviewed if reviewed else None), help="confirmed / reviewed, all lines"
    )
    if precisions:
        table_column.dataframe(
            pd.DataFrame(
                {
                    "line": [
                        f"{entry.line} ({components.RANDOM_TEACHER_MARK})" if entry.line in random_lines else entry.line
                        for entry in precisions
                    ],
                    "flagged": [entry.flagged for entry in precisions],
                    "reviewed": [entry.reviewed for entry in precisions],
                    "confirmed": [entry.confirmed for entry in precisions],
                    "precision": [components.percent(entry.precision) for entry in precisions],
                    "awaiting review": [entry.unreviewed for entry in precisions],
                }
            ),
            hide_index=True,
            key="review_precision_table",
        )


def chosen_filters(streams: list[tuple[str, str]], zone: tzinfo) -> tuple[InspectionFilter, str]:
    """The filter widgets (line, camera, period, score); the InspectionFilter they make and a text of the choices.

    The text changes only when the user changes a filter (not when "now" moves a period along).
    """
    lines = sorted({line for line, _ in streams})
    line_column, camera_column, period_column, score_column = st.columns([2, 2, 3, 3], vertical_alignment="bottom")
    with line_column:
        line = st.selectbox(
            "Line", [ALL, *lines], format_func=lambda name: name or "All lines", key="review_line", bind="query-params"
        )
    cameras = sorted({camera for stream_line, camera in streams if line == ALL or stream_line == line})
    with camera_column:
        camera = st.selectbox(
            "Camera", [ALL, *cameras], format_func=lambda name: name or "All cameras", key="review_camera", bind="query-params"
        )
    with period_column:
        period = st.selectbox(
            "Finished", list(PERIODS), format_func=lambda key: PERIODS[key][0], key="review_period", bind="query-params"
        )
        since, until = period_bounds(period, zone)
    with score_column:
        low, high = st.slider(
            "Score", 0.0, 1.0, (0.0, 1.0), step=0.01, key="review_score", bind="query-params",
            help="normalised score: 0.5 at the model's threshold",
        )
    filters = InspectionFilter(
        line=line or None,
        camera=camera or None,
        since=since,
        until=until,
        min_score=low if low > 0.0 else None,
        max_score=high if high < 1.0 else None,
    )
    return filters, repr((line, camera, period, st.session_state.get("review_dates"), low, high))


def period_bounds(period: str, zone: tzinfo) -> tuple[datetime | None, datetime | None]:
    """``(since, until)`` of the chosen period; "between dates" asks for the dates (whole days in ``zone``)."""
    if period == "dates":
        today = datetime.now(zone).date()
        chosen = st.date_input("Between", (today - timedelta(days=7), today), key="review_dates")
        if not isinstance(chosen, tuple) or len(chosen) != 2:
            return None, None  # the second date is not picked yet
        first, last = chosen
        return _start_of(first, zone), _start_of(last + timedelta(days=1), zone)
    length = PERIODS[period][1]
    if length is None:
        return None, None
    return floor_time(datetime.now(UTC), sources.REVIEW_TTL_S) - length, None


def _start_of(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)


def current_page(total: int, choices: str) -> int:
    """The gallery page widget; a new widget (back to page 1) whenever the filter choices change.

    Streamlit keeps the page while it exists and falls back to page 1 when the queue shrank below it.
    """
    pages = max(1, math.ceil(total / PAGE_SIZE))
    digest = hashlib.sha256(choices.encode()).hexdigest()[:16]
    return st.pagination(pages, key=f"{PAGE_KEY}_{digest}")


def bulk_bar(view: QueueView) -> None:
    """Select all / none, a note, and the two verdicts for every selected part on this page."""
    selected = sum(1 for inspection_id in view.ids if st.session_state.get(select_key(inspection_id)))
    blocked = not view.reviewer or selected == 0
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.button("Select all", key="review_select_all", on_click=select_all, args=(view, True), shortcut="A")
        st.button("Select none", key="review_select_none", on_click=select_all, args=(view, False))
        st.text_input("Note for the selected", key=BULK_NOTE_KEY, placeholder="optional", width=220)
        st.button(
            f"Defect confirmed ({selected})", key="review_bulk_confirm", on_click=review_selected,
            args=(view, CONFIRMED_REVIEW), disabled=blocked, shortcut="Shift+D",
        )
        st.button(
            f"False alarm ({selected})", key="review_bulk_false_alarm", on_click=review_selected,
            args=(view, FALSE_ALARM_REVIEW), disabled=blocked, shortcut="Shift+F",
        )


def gallery(parts: list[StoredInspection], artifacts_url: str, focused: int, zone: tzinfo) -> None:
    """The page's parts as cards: heatmap overlay, score, where and when; select and open."""
    for start in range(0, len(parts), GALLERY_COLUMNS):
        for column, part in zip(st.columns(GALLERY_COLUMNS), parts[start : start + GALLERY_COLUMNS], strict=False):
            record = part.record
            with column.container(border=True, key=f"review_card_{part.id}"):
                picture = record.heatmap_key or record.image_key
                thumbnail = sources.artifact_image(artifacts_url, picture, THUMBNAIL_SIDE) if picture else None
                if thumbnail is None:
                    st.caption("no image stored")
                else:
                    st.image(thumbnail, width="stretch", alt=f"heatmap overlay of part {part.id}")
                st.markdown(f"**score {record.score:.3f}** · {record.line} / {record.camera}")
                st.caption(components.local_time(record.finished_at, zone))
                if record.random_teacher:
                    st.badge(components.RANDOM_TEACHER_MARK, color="orange", help=components.RANDOM_TEACHER_MEANING)
                with st.container(horizontal=True, vertical_alignment="center"):
                    st.checkbox("Select", key=select_key(part.id))
                    st.button(
                        "Shown" if part.id == focused else "Open",
                        key=f"review_open_{part.id}",
                        on_click=focus,
                        args=(part.id,),
                        type="primary" if part.id == focused else "secondary",
                    )


def detail_view(view: QueueView, part: StoredInspection, artifacts_url: str, zone: tzinfo) -> None:
    """The focused part: image and heatmap, score, threshold, model, times; the review actions."""
    record = part.record
    st.subheader(f"Part {part.id}")
    if record.random_teacher:
        st.warning(f"{components.RANDOM_TEACHER_MARK}: scored by a model {components.RANDOM_TEACHER_MEANING}.", icon="⚠️")
    image_column, heatmap_column = st.columns(2)
    for column, key, caption in ((image_column, record.image_key, "image"), (heatmap_column, record.heatmap_key, "heatmap overlay")):
        picture = sources.artifact_image(artifacts_url, key, DETAIL_SIDE) if key else None
        if picture is None:
            column.caption(f"no {caption} stored")
        else:
            column.image(picture, caption=caption, width="stretch")
    latency = (record.finished_at - record.captured_at).total_seconds()
    facts = {
        "score (0.5 = threshold)": f"{record.score:.3f}" if record.score is not None else "-",
        "raw score / threshold": f"{record.raw_score:.4g} / {record.threshold:.4g}"
        if record.raw_score is not None and record.threshold is not None
        else "-",
        "model": f"{record.model_version or '-'}{' (' + components.RANDOM_TEACHER_MARK + ')' if record.random_teacher else ''}",
        "line / camera": f"{record.line} / {record.camera}",
        "source": record.source,
        "origin": record.origin or "-",
        "frame": record.frame_id,
        "captured": components.local_time(record.captured_at, zone),
        "queued": components.local_time(record.enqueued_at, zone),
        "scoring started": components.local_time(record.started_at, zone),
        "finished": components.local_time(record.finished_at, zone),
        "capture to result": components.seconds(latency),
        "worker": record.worker or "-",
    }
    st.table(pd.DataFrame({"value": list(facts.values())}, index=list(facts)))
    if part.review is not None:
        st.info(
            f"Already reviewed: {VERDICT_LABELS[part.review.verdict]} by {part.review.reviewer} at "
            f"{components.local_time(part.review.reviewed_at, zone)}" + (f" ({part.review.note})" if part.review.note else "")
        )
    st.text_input("Note (optional)", key=note_key(part.id), placeholder="what you saw")
    blocked = not view.reviewer
    with st.container(horizontal=True):
        st.button(
            "Defect confirmed", key="review_confirm", type="primary", on_click=review_focused,
            args=(view, part.id, CONFIRMED_REVIEW), disabled=blocked, shortcut="D",
        )
        st.button(
            "False alarm", key="review_false_alarm", on_click=review_focused,
            args=(view, part.id, FALSE_ALARM_REVIEW), disabled=blocked, shortcut="F",
        )
        st.button("Previous", key="review_previous", on_click=move_focus, args=(view, -1), shortcut="K")
        st.button("Next", key="review_next", on_click=move_focus, args=(view, 1), shortcut="J")
        st.button("Select", key="review_toggle", on_click=toggle_selected, args=(part.id,), shortcut="X")
    if blocked:
        st.caption("Enter your name as reviewer in the sidebar to review.")
    st.caption(
        "Keys: J / K next / previous · D defect confirmed · F false alarm · X select · A select all · "
        "Shift+D / Shift+F for all selected. Tab and Enter reach every button too."
    )


def show_message() -> None:
    """The outcome of the last action, once."""
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message is None:
        return
    kind, text = message
    if kind == "error":
        st.error(text)
    else:
        st.toast(text, icon=":material/check_circle:")


def main() -> None:
    settings = DashboardSettings.from_environment()
    database_url = settings.services.database_url
    artifacts_url = settings.services.artifacts_url
    zone = components.viewer_timezone()
    reviewer = auth.signed_in_user()
    if reviewer is not None:
        st.sidebar.caption(f"Reviewing as **{reviewer}** (signed in)")
    else:
        reviewer = st.sidebar.text_input(
            "Reviewer", value=settings.reviewer, key=REVIEWER_KEY, max_chars=128, persist_state="session",
            help="saved with every review",
        ).strip()
    st.title("Review queue")
    show_message()
    precision_figures(sources.precision(database_url), sources.line_models(database_url))
    filters, choices = chosen_filters(sources.streams(database_url), zone)
    total = sources.queue_size(database_url, filters)
    components.csv_export(
        f"Flagged parts awaiting review (CSV, {total:,})",
        key="review_export",
        file_name="review-queue.csv",
        rows=lambda: inspections_export(
            sources.engine(database_url),
            replace(filters, verdict=FLAGGED_VERDICT),
            unreviewed_only=True,
        ),
        help_text="the flagged, unreviewed inspections matching the filters, newest first",
    )
    if total == 0:
        st.success("Nothing awaits review with these filters.")
        return
    page = current_page(total, choices)
    parts = sources.queue_page(database_url, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    view = QueueView(database_url, reviewer, tuple(part.id for part in parts))
    if st.session_state.get(FOCUS_KEY) not in view.ids:
        st.session_state[FOCUS_KEY] = view.ids[0] if view.ids else None
    focused = st.session_state[FOCUS_KEY]
    st.caption(f"{total:,} flagged parts await review, newest first; page {page} of {math.ceil(total / PAGE_SIZE)}")
    gallery_column, detail_column = st.columns([3, 2], gap="large")
    with gallery_column:
        bulk_bar(view)
        gallery(parts, artifacts_url, focused, zone)
    with detail_column, st.container(border=True):
        if focused is not None:
            detail_view(view, sources.detail(database_url, focused), artifacts_url, zone)


main()
