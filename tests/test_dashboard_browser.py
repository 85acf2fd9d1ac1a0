"""The real dashboard in a real browser: headless Chromium over a populated store, a review clicked and saved.

The server and the browser are browser_fixtures'. Leaves a screenshot of the review page in
test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from browser_fixtures import WAIT_S, chromium, dashboard_server, free_port, poll, require_chromium, wait_for
from dashboard_fixtures import REDIS_TEST_URL, Populated, fill_queue, populated, redis_db  # noqa: F401
from redis import Redis

from store import inspection_detail, make_engine

SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard.png"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    require_chromium()


def dashboard_environment(populated: Populated, queue_name: str, password: str | None = None) -> dict[str, str]:  # noqa: F811
    """The environment of a dashboard over the populated store and the test Redis, with or without a password."""
    environment = {
        **os.environ,
        "DATABASE_URL": populated.database_url,
        "LINEGUARD_ARTIFACTS": str(populated.artifacts_root),
        "REDIS_URL": REDIS_TEST_URL,
        "LINEGUARD_QUEUE": queue_name,
        "LINEGUARD_ALARM_RATE": "0.2",
        "LINEGUARD_REVIEWER": "browser test",
    }
    environment.pop("LINEGUARD_DASHBOARD_PASSWORD", None)
    if password is not None:
        environment["LINEGUARD_DASHBOARD_PASSWORD"] = password
    return environment


@pytest.fixture
def dashboard_url(populated: Populated, redis_db: Redis, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """URL of a dashboard server over the populated store and the test Redis; stopped after the test."""
    fill_queue(redis_db, "dashboard-browser")
    environment = dashboard_environment(populated, "dashboard-browser")
    with dashboard_server(environment, free_port(), tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    """Folder the browser saves downloads to."""
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(downloads: Path) -> Iterator[object]:
    with chromium(downloads) as driver:
        yield driver


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


#: Every URL a visitor can open first: the default page by its two names and each other page.
PAGE_URLS = ("/", "/live", "/review", "/models")
PASSWORD = "correct horse battery staple"


def page_state(driver) -> dict[str, object]:  # selenium WebDriver
    """What the open page shows: whether its script run finished, the sign-in form, and any line data."""
    from selenium.webdriver.common.by import By

    def count(selector: str) -> int:
        return len(driver.find_elements(By.CSS_SELECTOR, selector))

    text = driver.find_element(By.TAG_NAME, "body").text
    # Names and values that only the store holds: lines, cameras, model versions, parts, scores.
    data_words = [word for word in ("line-a", "line-b", "cam-1", "ts-imagenet-1", "ts-random-1", "Part ", "score", "defect rate") if word in text]
    return {
        "idle": count('[data-testid="stApp"][data-test-script-state="notRunning"]') == 1,
        "password_field": count('input[type="password"]') == 1,
        "data_words": data_words,
        "images": count('[data-testid="stImage"], [data-testid="stMain"] img'),
        "review_buttons": count(".st-key-review_confirm, .st-key-review_false_alarm"),
        "metrics": count('[data-testid="stMetric"]'),
        "tables": count('[data-testid="stDataFrame"], [data-testid="stTable"]'),
    }


def shows_data(state: dict[str, object]) -> bool:
    return bool(state["data_words"] or state["images"] or state["review_buttons"] or state["metrics"] or state["tables"])


def page_content_shown(driver, path: str) -> bool:  # selenium WebDriver
    """Whether the page of ``path`` shows what it is for (after signing in)."""
    from selenium.webdriver.common.by import By

    text = driver.find_element(By.TAG_NAME, "body").text
    if path == "/review":
        return len(driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')) >= 12 and "Part " in text
    if path == "/models":
        return "good parts" in text and any(version in text for version in ("ts-imagenet-1", "ts-random-1"))
    return "line-a defect rate" in text


def sign_in(driver, password: str) -> None:  # selenium WebDriver
    """Type ``password`` into the sign-in form and submit it, once the field takes keys."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        ElementNotInteractableException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def typed() -> bool:
        try:
            # /live is no page of its own (Live is the default page, at /): Streamlit says "Page not
            # found" in a dialog over the sign-in form, and shows the default page once signed in.
            for close in driver.find_elements(By.CSS_SELECTOR, '[role="dialog"] button[aria-label="Close"]'):
                close.click()
            field = driver.find_element(By.CSS_SELECTOR, 'input[type="password"]')
            field.clear()
            field.send_keys(password)
            field.send_keys(Keys.ENTER)  # submits the sign-in form
        except (ElementClickInterceptedException, ElementNotInteractableException, StaleElementReferenceException):
            return False  # the form is still being drawn or was redrawn
        return True

    wait_for(typed, WAIT_S, "the password field to take keys")


def test_every_page_url_opened_first_asks_for_the_password_even_after_a_restart(
    populated: Populated, redis_db: Redis, tmp_path: Path, downloads: Path  # noqa: F811
) -> None:
    """Each page URL is the first one a fresh server sees (a restart before each), then every URL again in
    fresh browsers of a server where someone has signed in: none shows line data before the password."""
    fill_queue(redis_db, "dashboard-gate")
    environment = dashboard_environment(populated, "dashboard-gate", password=PASSWORD)
    port = free_port()
    opened: list[str] = []
    shown_without_password: list[str] = []
    not_shown_with_password: list[str] = []

    def open_first(url: str, path: str) -> None:
        with chromium(downloads) as driver:
            driver.get(url + path)
            state = wait_for(
                lambda: (lambda now: now if now["idle"] and (now["password_field"] or shows_data(now)) else None)(page_state(driver)),
                WAIT_S,
                f"{path} to finish its first run",
            )
            opened.append(path)
            if shows_data(state) or not state["password_field"]:
                shown_without_password.append(f"{path}: {state}")
                return
            sign_in(driver, PASSWORD)
            if not poll(lambda: page_content_shown(driver, path), WAIT_S):
                not_shown_with_password.append(path)

    for path in PAGE_URLS:
        with dashboard_server(environment, port, tmp_path / "streamlit.log") as url:  # a restart before each
            open_first(url, path)
    with dashboard_server(environment, port, tmp_path / "streamlit.log") as url:
        open_first(url, "/")  # someone signs in on this server...
        for path in PAGE_URLS:  # ...and the next visitors still have to
            open_first(url, path)

    print(
        f"pages shown without the password: {len(shown_without_password)} of {len(opened)} opened; "
        f"not shown after it: {len(not_shown_with_password)}"
    )
    assert len(opened) == 2 * len(PAGE_URLS) + 1
    assert shown_without_password == [], f"{len(shown_without_password)} of {len(opened)} pages shown without the password"
    assert not_shown_with_password == [], f"pages that did not show their content after the password: {not_shown_with_password}"
