"""Where the tests find the servers this machine runs.

`LINEGUARD_TEST_REDIS` names another Redis server (`redis://host:port`) so that several checkouts on
one machine can run their tests at once without flushing each other's databases.
"""

from __future__ import annotations

import os


def redis_test_url(database: int) -> str:
    """URL of the test Redis database with this index."""
    server = os.environ.get("LINEGUARD_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
    return f"{server}/{database}"
