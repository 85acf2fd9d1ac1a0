"""The real dashboard in a real browser: headless Chromium over a populated store, a review clicked and saved.

Starts `lineguard dashboard`'s Streamlit command on a free localhost port and drives Debian's
chromium through its chromedriver (both installed by .ci/run). Leaves a screenshot of the review
page in test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from dashboard_fixtures import REDIS_TEST_URL, Populated, fill_queue, populated, redis_db  # noqa: F401
from redis import Redis

from lineguard.dashboard_command import streamlit_command
from store import inspection_detail, make_engine

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard.png"
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

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}); .ci/run installs them",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture
def dashboard_url(populated: Populated, redis_db: Redis, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """URL of a dashboard server over the populated store and the test Redis; stopped after the test."""
    fill_queue(redis_db, "dashboard-browser")
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": populated.database_url,
        "LINEGUARD_ARTIFACTS": str(populated.artifacts_root),
        "REDIS_URL": REDIS_TEST_URL,
        "LINEGUARD_QUEUE": "dashboard-browser",
        "LINEGUARD_ALARM_RATE": "0.2",
        "LINEGUARD_REVIEWER": "browser test",
    }
    environment.pop("LINEGUARD_DASHBOARD_PASSWORD", None)
    log = (tmp_path / "streamlit.log").open("wb")
    server = subprocess.Popen(streamlit_command("127.0.0.1", port), env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"dashboard exited with {server.returncode}: {(tmp_path / 'streamlit.log').read_text()}")
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
        log.close()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Folder the browser saves downloads to."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[object]:
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


def saved_review(database_url: str, inspection_id: int) -> tuple[str, str] | None:
    engine = make_engine(database_url)
    try:
        review = inspection_detail(engine, inspection_id).review
    finally:
        engine.dispose()
    return None if review is None else (review.verdict, review.reviewer)


def test_live_figures_gallery_and_a_saved_review_in_chromium(
    dashboard_url: str,
    browser,  # selenium WebDriver
    downloads: Path,
    populated: Populated,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    def texts(selector: str) -> list[str]:
        return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]

    browser.get(dashboard_url)
    # Live: the line tiles with their defect rates, and the queue health from Redis.
    tiles = wait_for(
        lambda: [text for text in texts('[data-testid="stMetric"]') if "defect rate" in text and "%" in text],
        WAIT_S,
        "the live figures",
    )
    assert any(text.startswith("line-a defect rate") for text in tiles)
    assert any(text.startswith("line-b defect rate") for text in tiles)
    wait_for(lambda: any("Workers alive\n1" in text for text in texts('[data-testid="stMetric"]')), WAIT_S, "workers alive")
    assert any("line-b / cam-2" in text for text in texts('[data-testid="stAlert"]'))

    browser.get(f"{dashboard_url}/review")
    first, second = populated.queue_ids[:2]
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')) >= 14, WAIT_S, "the gallery")
    assert f"Part {first}" in browser.find_element(By.CSS_SELECTOR, "h3").text
    browser.find_element(By.CSS_SELECTOR, ".st-key-review_confirm button").click()
    wait_for(lambda: saved_review(populated.database_url, first), WAIT_S, "the review to be saved")
    assert saved_review(populated.database_url, first) == ("confirmed", "browser test")
    # The next part is shown; the keyboard shortcut F marks it a false alarm.
    wait_for(lambda: f"Part {second}" in browser.find_element(By.CSS_SELECTOR, "h3").text, WAIT_S, "the next part")
    browser.find_element(By.TAG_NAME, "body").send_keys("f")
    wait_for(lambda: saved_review(populated.database_url, second), WAIT_S, "the keyboard review to be saved")
    assert saved_review(populated.database_url, second) == ("false_alarm", "browser test")
    wait_for(lambda: f"Part {populated.queue_ids[2]}" in browser.find_element(By.CSS_SELECTOR, "h3").text, WAIT_S, "the third part")
    time.sleep(1)  # let the thumbnails finish drawing
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    # The CSV export behind the queue: the parts still awaiting review.
    browser.find_element(By.CSS_SELECTOR, ".st-key-review_export button").click()
    exported = downloads / "review-queue.csv"
    wait_for(lambda: exported.is_file() and exported.stat().st_size > 0, WAIT_S, "the CSV export")
    rows = pd.read_csv(exported)
    assert list(rows["id"]) == list(populated.queue_ids[2:])
    assert set(rows["verdict"]) == {"defect"} and rows["review_verdict"].isna().all()
