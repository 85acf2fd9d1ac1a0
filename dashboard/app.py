"""The dashboard's entrypoint: settings, the optional password, a database check, then the pages.

Run by ``lineguard dashboard`` (``streamlit run dashboard/app.py``). Each page is a script in
``dashboard/pages``; Streamlit reruns this file, then the chosen page, on every interaction.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dashboard import auth, components, sources
from dashboard.errors import SettingsError
from dashboard.settings import DashboardSettings
from store import StoreError, head_revision, schema_revision

PAGES = Path(__file__).resolve().parent / "pages"


def database_problem(database_url: str) -> str | None:
    """Why the store at ``database_url`` cannot be shown, or None when it can.

    The dashboard never creates or migrates the schema (it only writes reviews); the worker does.
    """
    where = f"Store at {shown_url(database_url)}"
    try:
        revision = schema_revision(sources.engine(database_url))
    except (SQLAlchemyError, StoreError) as error:
        return f"{where}: cannot open the database: {error}"
    if revision is None:
        return (
            f"{where}: the database has no lineguard tables yet; a worker creates them when it first starts, "
            "and so does `lineguard db upgrade`."
        )
    if revision != head_revision():
        return f"{where}: the schema is at revision {revision}, this dashboard expects {head_revision()}."
    return None


def shown_url(database_url: str) -> str:
    """``database_url`` with its password hidden, fit to be shown on a page."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable URL)"


def main() -> None:
    st.set_page_config(page_title="lineguard", page_icon=":material/precision_manufacturing:", layout="wide")
    try:
        settings = DashboardSettings.from_environment()
    except SettingsError as error:
        st.error(str(error))
        st.stop()
    if not auth.signed_in(settings.password):
        st.stop()
    navigation = st.navigation(
        [
            st.Page(PAGES / "live.py", title="Live", icon=":material/monitoring:", default=True),
            st.Page(PAGES / "review.py", title="Review queue", icon=":material/fact_check:"),
            st.Page(PAGES / "models.py", title="Models", icon=":material/model_training:"),
        ]
    )
    problem = database_problem(settings.services.database_url)
    if problem is not None:
        st.error(problem)
        st.stop()
    components.random_teacher_notice(sources.line_models(settings.services.database_url))
    navigation.run()


main()
