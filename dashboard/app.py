"""The dashboard's entrypoint: settings, the optional sign-in, a database check, then the pages.

Run by ``lineguard dashboard`` (``streamlit run dashboard/app.py``). Each page is a script in
``dashboard/views``; Streamlit reruns this file, then the chosen page, on every interaction, so
this file is the one door to every page. The page scripts must never sit in a ``pages`` folder
beside this file: Streamlit would then run the one a URL names directly, without this file's gate.
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

VIEWS = Path(__file__).resolve().parent / "views"


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
        users = settings.user_hashes()
    except SettingsError as error:
        st.error(str(error))
        st.stop()
    signed_in = auth.signed_in(settings.password, users)
    # The navigation only names the pages (hidden until signed in), so that the page of the URL
    # opened first is the one shown after signing in; no page runs and nothing is read before the gate.
    navigation = st.navigation(
        [
            st.Page(VIEWS / "live.py", title="Live", icon=":material/monitoring:", default=True),
            st.Page(VIEWS / "review.py", title="Review queue", icon=":material/fact_check:"),
            st.Page(VIEWS / "models.py", title="Models", icon=":material/model_training:"),
        ],
        position="sidebar" if signed_in else "hidden",
    )
    if not signed_in:
        auth.sign_in_form(settings.password, users)
        st.stop()
    problem = database_problem(settings.services.database_url)
    if problem is not None:
        st.error(problem)
        st.stop()
    components.random_teacher_notice(sources.line_models(settings.services.database_url))
    navigation.run()


main()
