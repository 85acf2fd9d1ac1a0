"""The dashboard: a Streamlit app over the store (live figures, review queue, models).

``dashboard/app.py`` is the entrypoint (``lineguard dashboard`` runs it); pages live in
``dashboard/views`` (never ``pages``: see app.py). The app reads the store and Redis, and writes only reviews.
"""
