"""The learning loop end to end, on the real Redis and PostgreSQL, with the dashboard in a real browser.

A line runs (a `lineguard worker` process scoring published frames of generated parts with the small
model, its threshold too tight for the line: it flags good parts). In Chromium, a person marks the
flagged parts on the Review page, false alarms and defects by what they truly are. `models
recalibrate` makes a version at which those false alarms pass and the confirmed defects stay
flagged; activated, the running worker scores the same parts again that way. The person queues a
retraining on the Models page, a `lineguard worker --train` runs it; the candidate is compared
(`models compare`, shown side by side on the Models page), shadowed on live frames (agreement shown
on the Models page), promoted with the page's button and picked up by the running worker, then
rolled back with the page's button and the worker goes back to the earlier version.

The model is the suite's small one (trained once per run); the retraining is 3 steps: what it
learns is not judged here (bench/learning_loop.py measures that), only that it flows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from browser_fixtures import WAIT_S, chromium, dashboard_server, free_port, poll, require_chromium, wait_for
from line_fixtures import (
    LINE,
    line_redis,  # noqa: F401 - fixture
    line_settings,  # noqa: F401 - fixture
    make_frame,
    make_part,
    png,
    publish,
    start_lineguard,
    stop,
)
from redis import Redis
from store_fixtures import db_url, postgres_run_database  # noqa: F401 - fixtures

from lineguard.cli import main
from lineguard.registration import register_checkpoint
from lineguard.settings import Settings
from model.calibration import Calibration
from model.checkpoint import load_checkpoint, save_recalibrated
from store import inspections_frame, make_engine, upgrade
from store.records import active_model_for_line, get_model, shadow_agreement
from wire.training_jobs import training_jobs

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)]

GOOD_PARTS = 30
DEFECTIVE_PARTS = 3
#: Good parts the too-tight threshold flags (the highest-scoring ones).
TIGHT_FLAGS = 4
#: Stated false-reject rate of the recalibration: from 19 good parts on, its distribution-free
#: bound rests on them (1% would need 99, which take long to score on a CPU).
RECALIBRATED_RATE = "0.05"
#: Seconds a worker may take to start, load a model and score what was published (generous: a
#: loaded machine starts a Python process with torch in minutes).
LINE_WAIT_S = 300
REVIEWER = "Ana"
#: Seconds a page opened again is given to finish its script run before it is opened once more.
PAGE_DRAWN_S = 15
#: Seconds the elements of a finished run are given to show what is looked for before the page is
#: opened once more (what the page showed was read from a cache of a few seconds).
PAGE_SHOWN_S = 2
#: What the browser showed when the test failed.
SCREENSHOT = Path(__file__).resolve().parents[1] / "test-artifacts" / "learning-loop-failure.png"


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    require_chromium()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


class Line:
    """The line under test: its store, its queue and the truth about the parts it was sent."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.engine = make_engine(settings.database_url)
        self.redis = redis
        self.defective: dict[str, bool] = {}  # frame id -> truth
        self.images: dict[str, np.ndarray] = {}

    def send(self, images: list[tuple[np.ndarray, bool]]) -> list[str]:
        """Publish ``images`` (image, is defective) as frames of the line; returns their frame ids."""
        frames = [make_frame(png(image), f"part-{len(self.defective) + i}") for i, (image, _) in enumerate(images)]
        for frame, (image, defective) in zip(frames, images):
            self.defective[frame.frame_id] = defective
            self.images[frame.frame_id] = image
        publish(self.redis, frames, batch_size=8)
        return [frame.frame_id for frame in frames]

    def probe_until(self, condition: Callable[[str], bool], what: str) -> None:
        """Send one good part at a time, each once scored, until ``condition(its frame id)`` holds."""

        def probe() -> bool:
            [frame_id] = self.send([(good_part_image(), False)])
            self.scored([frame_id], what)
            return condition(frame_id)

        wait_for(probe, LINE_WAIT_S, what)

    def scores_with(self, version: str, what: str) -> None:
        """Wait until the running worker scores the line's frames with ``version``."""
        self.probe_until(lambda frame_id: self.rows([frame_id])["model_version"].iloc[0] == version, what)

    def rows(self, frame_ids: list[str]):  # noqa: ANN201 - pandas DataFrame
        rows = inspections_frame(self.engine)
        return rows[rows["frame_id"].isin(frame_ids)]

    def scored(self, frame_ids: list[str], what: str):  # noqa: ANN201 - pandas DataFrame
        """The rows of ``frame_ids`` once the worker has written all of them."""
        wait_for(lambda: len(self.rows(frame_ids)) == len(frame_ids), LINE_WAIT_S, what)
        return self.rows(frame_ids)


@pytest.fixture
def line(line_settings: Settings, line_redis: Redis) -> Iterator[Line]:  # noqa: F811
    engine = make_engine(line_settings.database_url)
    upgrade(engine)
    engine.dispose()
    line = Line(line_settings, line_redis)
    yield line
    line.engine.dispose()


@contextmanager
def screenshot_on_failure(browser) -> Iterator[None]:  # selenium WebDriver
    """Leave what the page showed in SCREENSHOT when the block fails."""
    try:
        yield
    except BaseException:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
        raise


PROBES = np.random.default_rng(99)


def good_part_image() -> np.ndarray:
    """A good part to probe the line with."""
    return make_part(PROBES, defective=False)


def tight_model(small_checkpoint: Path, parts: list[np.ndarray], folder: Path) -> Path:
    """The small model with a threshold that flags the TIGHT_FLAGS highest-scoring of ``parts`` (good
    ones): a line whose threshold was set too tight for its parts."""
    model = load_checkpoint(small_checkpoint, device="cpu", precision="fp32")  # as the worker below
    scores = np.sort([result.raw_score for result in model.score_images(parts)])
    threshold = float((scores[-TIGHT_FLAGS - 1] + scores[-TIGHT_FLAGS]) / 2)
    calibration = Calibration(threshold, float(np.median(scores)), 0.01, float(scores.mean()), float(scores.std()), len(scores))
    return save_recalibrated(small_checkpoint, calibration, {"test": "a threshold too tight for the line"}, folder / "tight.pt")[1]


def test_reviews_recalibration_retraining_comparison_shadow_promotion_and_rollback(
    line: Line, line_settings: Settings, small_checkpoint: Path, tmp_path: Path, capsys  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    rng = np.random.default_rng(12)
    good = [make_part(rng, defective=False) for _ in range(GOOD_PARTS)]
    defective = [make_part(rng, defective=True) for _ in range(DEFECTIVE_PARTS)]
    tight = register_checkpoint(line.engine, tight_model(small_checkpoint, good, tmp_path), LINE, by="setup")["version"]

    environment = {**os.environ, "LINEGUARD_REVIEWER": REVIEWER}
    environment.pop("LINEGUARD_DASHBOARD_PASSWORD", None)
    worker = start_lineguard(
        "worker", "--device", "cpu", "--precision", "fp32", "--batch-size", "8", "--model-refresh", "0.5", "--good-sample-every", "5",
        log_path=tmp_path / "worker.log",
    )
    try:
        with dashboard_server(environment, free_port(), tmp_path / "streamlit.log") as url, chromium(tmp_path) as browser, screenshot_on_failure(browser):

            def body() -> str:
                return browser.find_element(By.TAG_NAME, "body").text

            def idle() -> bool:
                """Whether the page's script run has finished (its elements are this run's)."""
                return bool(browser.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"]'))

            def shown_on(path: str, selector: str, text: str, what: str) -> str:
                """The text of the first ``selector`` element holding ``text`` on page ``path``, opened
                again until it shows (the page reads the store through a cache of a few seconds)."""

                def found() -> str | None:
                    return next((e.text for e in browser.find_elements(By.CSS_SELECTOR, selector) if text in e.text), None)

                def opened() -> str | None:
                    browser.get(url + path)  # a new page: its state is "initial" until its run starts
                    if not poll(idle, PAGE_DRAWN_S):
                        return None
                    return poll(found, PAGE_SHOWN_S)

                return wait_for(opened, 4 * WAIT_S, what)

            def click(key: str) -> None:
                """Click the button of ``key`` once the page's run has drawn it, enabled."""
                from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

                def clicked() -> bool:
                    if not idle():
                        return False
                    try:
                        buttons = browser.find_elements(By.CSS_SELECTOR, f".st-key-{key} button")
                        if not buttons or not buttons[0].is_enabled():
                            return False
                        buttons[0].click()
                    except (StaleElementReferenceException, WebDriverException):
                        return False
                    return True

                wait_for(clicked, WAIT_S, f"the button {key}")

            # --- A line runs: the tight threshold flags good parts besides the defects.
            order = rng.permutation(GOOD_PARTS + DEFECTIVE_PARTS)
            parts = [(good + defective)[i] for i in order]
            sent = line.send([(image, bool(i >= GOOD_PARTS)) for image, i in zip(parts, order)])
            rows = line.scored(sent, f"the worker to score {len(sent)} parts (log: {tmp_path / 'worker.log'})")
            flagged = rows[rows["verdict"] == "defect"]
            false_alarms = [f for f in flagged["frame_id"] if not line.defective[f]]
            defects = [f for f in flagged["frame_id"] if line.defective[f]]
            assert set(rows["model_version"]) == {tight}
            assert len(false_alarms) == TIGHT_FLAGS and len(defects) == DEFECTIVE_PARTS, (false_alarms, defects)

            # --- A person reviews every flagged part on the Review page.
            ids = dict(zip(flagged["id"].astype(int), flagged["frame_id"]))
            browser.get(f"{url}/review")

            def focused_part() -> int | None:
                """The part the page focuses once it is drawn and still awaits its review."""
                if not idle():
                    return None
                for heading in browser.find_elements(By.CSS_SELECTOR, "h3"):
                    if heading.text.startswith("Part ") and int(heading.text.split()[1]) not in done:
                        return int(heading.text.split()[1])
                return None

            done: set[int] = set()
            for _ in ids:
                inspection_id = wait_for(focused_part, WAIT_S, "the next part to review")
                frame_id = ids[inspection_id]
                click("review_confirm" if line.defective[frame_id] else "review_false_alarm")
                wait_for(
                    lambda: not line.rows([frame_id])["review_verdict"].isna().all(), WAIT_S, f"the review of part {inspection_id}"
                )
                done.add(inspection_id)
            reviews = line.rows(list(ids.values())).set_index("frame_id")
            assert {f: reviews.loc[f, "review_verdict"] for f in false_alarms} == {f: "false_alarm" for f in false_alarms}
            assert {f: reviews.loc[f, "review_verdict"] for f in defects} == {f: "confirmed" for f in defects}
            assert set(reviews["reviewer"]) == {REVIEWER}

            # --- Recalibration: those false alarms pass, the confirmed defects stay flagged.
            code, out = run(capsys, "models", "recalibrate", "--line", LINE, "--rate", RECALIBRATED_RATE, "--by", REVIEWER, "--activate")
            assert code == 0, out
            assert f"passed these false alarms ({len(false_alarms)})" in out and "still flagged these false alarms (0)" in out
            assert f"still flagged these confirmed defects ({len(defects)})" in out and "MISSED these confirmed defects (0)" in out
            recalibrated = active_model_for_line(line.engine, LINE)
            assert recalibrated != tight
            # The running worker picks it up: the same parts sent again are scored as the reviews said.
            line.scores_with(recalibrated, "the worker to score with the recalibrated model")
            again = line.send([(line.images[f], line.defective[f]) for f in false_alarms + defects])
            rescored = line.scored(again, "the reviewed parts sent again").set_index("frame_id")
            assert set(rescored["model_version"]) == {recalibrated}
            assert [rescored.loc[f, "verdict"] for f in again] == ["good"] * len(false_alarms) + ["defect"] * len(defects)

            # --- Retraining queued from the Models page, run by a training worker.
            browser.get(f"{url}/models?models_version={recalibrated}")
            steps = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, ".st-key-models_retrain_steps input"), WAIT_S, "the Models page")
            steps[0].send_keys("3", Keys.TAB)
            wait_for(lambda: "3" == browser.find_element(By.CSS_SELECTOR, ".st-key-models_retrain_steps input").get_attribute("value"),
                     WAIT_S, "the steps to be taken")
            click("models_retrain")
            [job] = wait_for(lambda: training_jobs(line.redis, LINE), WAIT_S, "the training job to be queued")
            assert (job.request.requested_by, job.request.steps, job.state) == (REVIEWER, 3, "queued")
            trainer = start_lineguard("worker", "--train", "--burst", "--device", "cpu", log_path=tmp_path / "trainer.log")
            assert trainer.wait(LINE_WAIT_S * 2) == 0, (tmp_path / "trainer.log").read_text()
            [job] = training_jobs(line.redis, LINE)
            assert job.state == "done" and job.candidate, (job.state, job.error)
            candidate = job.candidate
            assert active_model_for_line(line.engine, LINE) == recalibrated  # a candidate, not applied
            trained_on = get_model(line.engine, candidate).training_data
            assert trained_on["n_images"] > 24, trained_on  # the original images and the line's pictures

            # --- Compared: side by side on the Models page.
            code, out = run(capsys, "models", "compare", candidate, "--line", LINE, "--device", "cpu")
            assert code == 0, out
            table = shown_on(
                f"/models?models_version={candidate}", '[data-testid="stTable"]', "defects caught", "the comparison on the Models page"
            )
            assert f"active: {recalibrated}" in table and f"candidate: {candidate}" in table
            assert f"of {len(defects)}" in table  # defects caught by each, of the confirmed ones

            # --- Shadowed on live frames: agreement on the Models page.
            assert run(capsys, "models", "shadow", candidate, "--line", LINE, "--by", REVIEWER)[0] == 0
            line.probe_until(lambda _: shadow_agreement(line.engine, LINE, candidate).frames > 0, "the worker to start shadowing")
            shadowed = shadow_agreement(line.engine, LINE, candidate).frames
            live = line.send([(make_part(rng, defective=i % 4 == 0), i % 4 == 0) for i in range(8)])
            assert set(line.scored(live, "the live frames")["model_version"]) == {recalibrated}  # never the verdict
            wait_for(lambda: shadow_agreement(line.engine, LINE, candidate).frames >= shadowed + len(live), LINE_WAIT_S, "the shadow to score live frames")
            agreement = shadow_agreement(line.engine, LINE, candidate)
            shown = shown_on(
                f"/models?models_version={candidate}", '[data-testid="stMetric"]', "Agrees with the active model",
                "the shadow's agreement on the Models page",
            )
            assert f"{agreement.agreement:.0%}" in shown and f"Shadow: {candidate}" in body()

            # --- Promoted with the page's button; the running worker picks it up.
            browser.find_element(By.CSS_SELECTOR, ".st-key-models_reason input").send_keys("fewer false alarms", Keys.TAB)
            wait_for(lambda: browser.find_element(By.CSS_SELECTOR, ".st-key-models_reason input").get_attribute("value") == "fewer false alarms",
                     WAIT_S, "the reason to be typed")
            click("models_promote")
            wait_for(lambda: active_model_for_line(line.engine, LINE) == candidate, WAIT_S, "the promotion")
            wait_for(lambda: "now scores with" in body(), WAIT_S, "the promotion to be confirmed on the page")
            line.scores_with(candidate, "the worker to score with the promoted candidate")

            # --- Rolled back with the page's button; the running worker goes back.
            click("models_rollback")
            wait_for(lambda: active_model_for_line(line.engine, LINE) == recalibrated, WAIT_S, "the rollback")
            line.scores_with(recalibrated, "the worker to score with the earlier version again")
            code, out = run(capsys, "models", "history", "--line", LINE, "--json")
            history = [(row["model_version"], row["previous_version"], row["activated_by"]) for row in json.loads(out)]
            assert history[:3] == [(recalibrated, candidate, REVIEWER), (candidate, recalibrated, REVIEWER), (recalibrated, tight, REVIEWER)]
    finally:
        assert stop(worker, timeout_s=LINE_WAIT_S) == 0, (tmp_path / "worker.log").read_text()
