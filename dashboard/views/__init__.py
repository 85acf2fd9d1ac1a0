"""The dashboard's pages: Streamlit scripts run by ``dashboard/app.py``'s navigation, not imported.

Not named ``pages``: Streamlit runs a script of a ``pages`` folder beside the entrypoint directly
when the URL names it, past the password gate.
"""
