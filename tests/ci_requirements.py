"""What a test does when something it needs is not on this machine: skip here, fail in CI.

A developer's machine may lack a server, the ImageNet weights or Chromium; CI (``CI`` set) has all of
them, so a missing one there is a broken run, never a quietly skipped test.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def requirement_missing(reason: str) -> NoReturn:
    """Stop the test for want of `reason`: `pytest.fail` when ``CI`` is set, `pytest.skip` otherwise."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI has it, so this test must run)", pytrace=False)
    pytest.skip(reason)
