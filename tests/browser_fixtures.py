"""A real browser on a real dashboard server: headless Debian chromium driven through its chromedriver
(both installed by .ci/run; a test fails, not skips, without them under CI) and `lineguard dashboard`'s
Streamlit command on a free localhost port."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ci_requirements import requirement_missing

from lineguard.dashboard_command import streamlit_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Seconds the server, a page or a saved review may take to appear.
STARTUP_TIMEOUT_S = 60
WAIT_S = 30
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,2000",
)


def require_chromium() -> None:
    """Fail (under CI) or skip unless Debian's chromium and its chromedriver are installed."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        requirement_missing(f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def poll(condition: Callable[[], object], timeout_s: float) -> object:
    """``condition()``'s first truthy result within ``timeout_s``, else None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    return None


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    result = poll(condition, timeout_s)
    if not result:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
    return result


@contextmanager
def dashboard_server(environment: dict[str, str], port: int, log_path: Path) -> Iterator[str]:
    """A `lineguard dashboard` server process on localhost:``port``, healthy; yields its URL, stopped after."""
    with log_path.open("ab") as log:
        server = subprocess.Popen(streamlit_command("127.0.0.1", port), env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"dashboard exited with {server.returncode}: {log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, STARTUP_TIMEOUT_S, "the dashboard server")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def chromium(downloads: Path) -> Iterator[object]:
    """A fresh headless Chromium (new empty profile) driven by selenium, saving downloads to ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    with tempfile.TemporaryDirectory(prefix="lineguard-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()
