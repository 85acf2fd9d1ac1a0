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


#: Run a command without the capabilities that let root read and write any file, so that a file of
#: mode 000 is as unreadable to it as to anyone else (CI runs as root).
_DROP_FILE_CAPABILITIES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def bound_by_file_modes(command: list[str]) -> list[str]:
    """`command`, run so that file permissions bind it even as root (see `_DROP_FILE_CAPABILITIES`)."""
    return _DROP_FILE_CAPABILITIES + command if os.geteuid() == 0 else command
