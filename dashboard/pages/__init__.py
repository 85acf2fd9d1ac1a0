"""The dashboard's pages: Streamlit scripts run by ``dashboard/app.py``'s navigation, not imported."""
