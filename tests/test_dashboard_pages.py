"""Every dashboard page run with Streamlit's AppTest over a populated SQLite store and a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from dashboard_fixtures import (  # noqa: F401  (fixtures)
    CAMERAS,
    IMAGE_SIZE,
    REDIS_TEST_URL,
    Populated,
    dashboard_env,
    fill_queue,
    populate,
    populated,
    redis_db,
)
from store_fixtures import db_url, postgres_run_database  # noqa: F401  (fixtures)
from redis import Redis
from streamlit.testing.v1 import AppTest

from dashboard import auth
from dashboard.queries import inspections_export
from dashboard.users import hash_password
from store import (
    InspectionFilter,
    SentFrame,
    count_review_queue,
    inspection_detail,
    make_engine,
    record_sent_frames,
    settle_stream_frames,
    write_transaction,
)
from store.alarms import raise_alarm
from store.outbox import OutboxEntry, add_messages
from wire.training_jobs import training_jobs

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
#: Generous: the first run in a process imports pandas, altair and the store.
RUN_TIMEOUT_S = 60


def app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT_S)


def open_page(page: str) -> AppTest:
    at = app()
    at.run()
    if page != "live":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [item.value for item in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


def table_with(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page that has ``column``."""
    for dataframe in at.dataframe:
        if column in dataframe.value.columns:
            return dataframe.value
    raise AssertionError(f"no table with a {column!r} column")


def reviews_of(database_url: str, inspection_ids: list[int]) -> dict[int, tuple[str, str | None, str] | None]:
    engine = make_engine(database_url)
    try:
        details = {inspection_id: inspection_detail(engine, inspection_id) for inspection_id in inspection_ids}
    finally:
        engine.dispose()
    return {
        inspection_id: None if detail.review is None else (detail.review.verdict, detail.review.note, detail.review.reviewer)
        for inspection_id, detail in details.items()
    }


def queue_size_shown(at: AppTest) -> int:
    """The number in the review page's "N flagged parts await review" line."""
    (line,) = [caption.value for caption in at.caption if "flagged parts await review" in caption.value]
    return int(line.split()[0].replace(",", ""))


def card_texts(at: AppTest) -> list[str]:
    """The "score S · line / camera" line of every gallery card."""
    return [markdown.value for markdown in at.markdown if markdown.value.startswith("**score")]


def queue_count(database_url: str, filters: InspectionFilter | None = None) -> int:
    engine = make_engine(database_url)
    try:
        return count_review_queue(engine, filters)
    finally:
        engine.dispose()


# --- live ---


def test_live_page_shows_rates_alarm_queue_health_and_models(dashboard_env: Populated, redis_db: Redis) -> None:
    fill_queue(redis_db, "dashboard-test")
    at = open_page("live")
    shown = metrics(at)
    for line in ("line-a", "line-b"):
        frames = sum(dashboard_env.recent_frames[line, camera] for camera in CAMERAS)
        flagged = sum(dashboard_env.recent_flagged[line, camera] for camera in CAMERAS)
        assert shown[f"{line} defect rate, last hour"] == f"{flagged / frames:.1%}"
    assert shown["Jobs waiting"] == "2"
    assert shown["Frames published"] == "4"
    assert shown["Frames dropped"] == "3"
    assert shown["Workers alive"] == "1"
    assert table_with(at, "last heartbeat")[["worker", "state"]].values.tolist() == [["dashboard-test-worker", "idle"]]
    assert table_with(at, "dropped")[["line", "camera", "published", "dropped"]].values.tolist() == [["line-a", "cam-1", 4, 3]]
    # Only line-b/cam-2 (a third of its frames flagged) crosses the 20% alarm level of dashboard_env.
    alarms = [error.value for error in at.error]
    assert len(alarms) == 1 and alarms[0].startswith("line-b / cam-2: defect rate 33.3%")
    table = table_with(at, "alarm")
    assert list(table.loc[table["alarm"] == "ALARM", ["line", "camera"]].itertuples(index=False, name=None)) == [
        ("line-b", "cam-2")
    ]
    assert table["frames"].sum() == sum(dashboard_env.recent_frames.values())
    # line-b's model was trained with a random teacher: a page-wide notice names it.
    assert any("line-b (ts-random-1)" in warning.value for warning in at.warning)


def test_live_page_shows_the_last_minutes_rate_beside_the_average_the_outbox_and_drift_alarms(
    dashboard_env: Populated, redis_db: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(dashboard_env.database_url)
    try:
        with write_transaction(engine) as connection:
            add_messages(connection, [OutboxEntry(f"verdict:f{n}", "line-a", "cam-1", "lineguard/line-a/cam-1/verdict", "{}") for n in range(3)])
        raise_alarm(engine, "line-a", "cam-2", "brightness", datetime.now(UTC), "brightness shifted: median +7.9 spreads")
    finally:
        engine.dispose()
    monkeypatch.setenv("LINEGUARD_MQTT_URL", "mqtt://127.0.0.1:1883")
    at = open_page("live")
    table = table_with(at, "frames/s, last minute")
    # One frame every 30 s per camera: one or two in the last minute, 60 in the last hour's window.
    assert set(table["frames/s, last minute"].round(4)) <= {round(1 / 60, 4), round(2 / 60, 4)}
    assert (table["frames/s, window"] < table["frames/s, last minute"]).all()
    assert any("in the last minute" in caption.value for caption in at.caption)
    assert any(caption.value.startswith("Verdicts and alarms waiting to leave for the line: 3") for caption in at.caption)
    assert any("line-a / cam-2: drift alarm since" in error.value and "+7.9 spreads" in error.value for error in at.error)


def test_live_page_shows_frames_lost_with_redis_per_camera(dashboard_env: Populated, redis_db: Redis) -> None:
    engine = make_engine(dashboard_env.database_url)
    try:
        record_sent_frames(engine, [SentFrame(f"lost-{n}", "line-a", "cam-2", "video:rtsp://cam", n) for n in range(3)])
        settle_stream_frames(engine, ["lost-0", "lost-1", "lost-2"], lost=True)
    finally:
        engine.dispose()
    at = open_page("live")
    assert any("Frames lost with Redis" in warning.value and "line-a / cam-2: 3" in warning.value for warning in at.warning)


def test_live_alarm_level_and_window_are_controls(dashboard_env: Populated, redis_db: Redis) -> None:
    at = open_page("live")
    at.number_input(key="live_alarm_percent").set_value(4.0).run()
    assert sorted(error.value.split(":")[0] for error in at.error) == [
        f"{line} / {camera}" for line in ("line-a", "line-b") for camera in CAMERAS
    ]
    at.button_group(key="live_window").set_value("15min").run()
    assert not at.exception
    table = table_with(at, "alarm")
    # One frame every 30 s per camera: the 15-minute window (whole 10 s buckets) holds 30 or 31 of 60.
    assert len(set(table["frames"])) == 1 and set(table["frames"]) <= {30, 31}
    assert "line-a defect rate, last 15 min" in metrics(at)


def test_live_page_reports_an_unreachable_redis_and_still_shows_the_store(
    dashboard_env: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    at = open_page("live")
    assert any("Redis cannot be read" in warning.value for warning in at.warning)
    assert "line-a defect rate, last hour" in metrics(at)


# --- review ---


def test_review_page_shows_the_queue_newest_first_with_images_and_the_focused_part(dashboard_env: Populated) -> None:
    at = open_page("review")
    shown = metrics(at)
    assert shown["Awaiting review"] == str(len(dashboard_env.queue_ids))
    cards = [checkbox.key for checkbox in at.checkbox]
    assert cards == [f"review_select_{inspection_id}" for inspection_id in dashboard_env.queue_ids[:12]]
    # 12 thumbnails, plus the focused part's image and heatmap.
    assert len(at.get("image")) == 12 + 2
    assert at.subheader[0].value == f"Part {dashboard_env.queue_ids[0]}"


def test_the_focused_part_says_where_to_find_it_and_the_export_has_the_origin(dashboard_env: Populated) -> None:
    at = open_page("review")
    engine = make_engine(dashboard_env.database_url)
    try:
        focused = inspection_detail(engine, dashboard_env.queue_ids[0]).record
        exported = inspections_export(engine, InspectionFilter())
    finally:
        engine.dispose()
    (facts,) = [table.value for table in at.table if "origin" in table.value.index]
    assert facts.loc["origin", "value"] == focused.origin == f"shift-2/{focused.frame_id}.png"
    assert exported["origin"].str.startswith("shift-2/").all()


def test_confirming_the_focused_part_saves_it_and_moves_on(dashboard_env: Populated) -> None:
    first, second = dashboard_env.queue_ids[:2]
    at = open_page("review")
    at.text_input(key=f"review_note_{first}").input("scratch near the rim")
    at.button(key="review_confirm").click().run()
    assert not at.exception
    assert reviews_of(dashboard_env.database_url, [first]) == {first: ("confirmed", "scratch near the rim", "test reviewer")}
    assert at.toast[0].value == "1 part marked defect confirmed"
    assert f"review_select_{first}" not in [checkbox.key for checkbox in at.checkbox]
    assert at.subheader[0].value == f"Part {second}"
    assert metrics(at)["Awaiting review"] == str(len(dashboard_env.queue_ids) - 1)


def test_false_alarm_and_keyboard_navigation(dashboard_env: Populated) -> None:
    first, second, third = dashboard_env.queue_ids[:3]
    at = open_page("review")
    at.button(key="review_next").click().run()
    assert at.subheader[0].value == f"Part {second}"
    at.button(key="review_false_alarm").click().run()
    assert reviews_of(dashboard_env.database_url, [first, second]) == {
        first: None,
        second: ("false_alarm", None, "test reviewer"),
    }
    assert at.subheader[0].value == f"Part {third}"
    shortcuts = {at.button(key=key).proto.shortcut for key in ("review_confirm", "review_false_alarm", "review_next")}
    assert shortcuts == {"d", "f", "j"}


def test_bulk_review_of_selected_parts(dashboard_env: Populated) -> None:
    chosen = list(dashboard_env.queue_ids[1:4])
    at = open_page("review")
    at.button(key="review_select_all").click().run()
    assert all(checkbox.value for checkbox in at.checkbox) and len(at.checkbox) == 12
    assert at.button(key="review_bulk_confirm").label == "Defect confirmed (12)"
    at.button(key="review_select_none").click().run()
    assert not any(checkbox.value for checkbox in at.checkbox)
    for inspection_id in chosen:
        at.checkbox(key=f"review_select_{inspection_id}").check()
    at.text_input(key="review_bulk_note").input("same batch")
    at.run()
    assert at.button(key="review_bulk_false_alarm").label == "False alarm (3)"
    at.button(key="review_bulk_false_alarm").click().run()
    assert not at.exception
    saved = reviews_of(dashboard_env.database_url, [dashboard_env.queue_ids[0], *chosen])
    assert saved == {
        dashboard_env.queue_ids[0]: None,
        **{inspection_id: ("false_alarm", "same batch", "test reviewer") for inspection_id in chosen},
    }
    assert queue_count(dashboard_env.database_url) == len(dashboard_env.queue_ids) - 3
    remaining = [checkbox.key for checkbox in at.checkbox]
    assert all(f"review_select_{inspection_id}" not in remaining for inspection_id in chosen)
    assert not any(checkbox.value for checkbox in at.checkbox)


def test_review_filters_by_line_camera_period_and_score(dashboard_env: Populated) -> None:
    at = open_page("review")
    at.selectbox(key="review_line").select("line-b").run()
    at.selectbox(key="review_camera").select("cam-2").run()
    assert queue_size_shown(at) == dashboard_env.recent_flagged["line-b", "cam-2"]
    assert all("line-b / cam-2" in card for card in card_texts(at))
    at.selectbox(key="review_line").select("").run()  # all lines and cameras again
    at.selectbox(key="review_camera").select("").run()
    assert queue_size_shown(at) == len(dashboard_env.queue_ids)
    at.selectbox(key="review_period").select("day").run()
    assert queue_size_shown(at) == sum(dashboard_env.recent_flagged.values())  # not the two-day-old ones
    at.slider(key="review_score").set_range(0.9, 1.0).run()
    scores = [float(card.split()[1].strip("*")) for card in card_texts(at)]
    assert scores and all(0.9 <= score <= 1.0 for score in scores)
    assert queue_size_shown(at) == len(scores)  # fewer than a page


def test_reviewing_needs_a_reviewer_name(dashboard_env: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINEGUARD_REVIEWER")
    at = open_page("review")
    assert at.button(key="review_confirm").disabled
    at.sidebar.text_input(key="reviewer").input("Ana").run()
    assert not at.button(key="review_confirm").disabled
    at.button(key="review_confirm").click().run()
    first = dashboard_env.queue_ids[0]
    assert reviews_of(dashboard_env.database_url, [first]) == {first: ("confirmed", None, "Ana")}


# --- models ---


def test_models_page_lists_versions_metrics_calibration_and_lines(dashboard_env: Populated) -> None:
    at = open_page("models")
    table = table_with(at, "calibration threshold").set_index("version")
    assert (table.loc["ts-imagenet-1", "image_auroc"], table.loc["ts-imagenet-1", "aupro"]) == ("0.970", "not evaluated")
    assert table.loc["ts-imagenet-1", "active on"] == "line-a"
    assert table.loc["ts-random-1", "teacher"] == "⚠ random teacher"
    assert table.loc["ts-random-1", "calibration threshold"] == pytest.approx(2.5)
    at.selectbox(key="models_version").select("ts-imagenet-1").run()
    assert at.subheader[0].value == "ts-imagenet-1"
    assert [caption for image in at.image for caption in image.captions] == ["ROC curves", "Score histogram"]
    assert not at.json, "the Models page shows no raw JSON"
    assert any(m.value == f"Sees each frame whole, fitted into {IMAGE_SIZE}x{IMAGE_SIZE} px." for m in at.markdown)
    assert not any("this model was trained with a random teacher" in warning.value for warning in at.warning)
    at.selectbox(key="models_version").select("ts-random-1").run()
    assert any("this model was trained with a random teacher" in warning.value for warning in at.warning)


def test_models_page_promotes_and_rolls_back_as_one_action_each(dashboard_env: Populated) -> None:
    from store import ShadowVerdict, activation_history, active_model_for_line, start_shadow, write_shadow_verdicts

    engine = make_engine(dashboard_env.database_url)
    start_shadow(engine, "line-a", "ts-random-1", by="Ana")
    write_shadow_verdicts(
        engine, [ShadowVerdict(f"live-{i}", "line-a", "ts-random-1", 1.0, i == 0, False, None) for i in range(4)]
    )
    engine.dispose()
    at = open_page("models")
    at.selectbox(key="models_version").select("ts-random-1").run()
    assert any("Flags about 1.0% of good parts; threshold 2.5 from 12 held-out training images." in m.value for m in at.markdown)
    assert any(
        m.value == f"Sees frames in tiles of {IMAGE_SIZE} px at their own pixels, each one's lighting levelled "
        "(tiles and levelling chosen from the training images)." for m in at.markdown
    )
    assert [metric.label for metric in at.metric][:2] == ["Image AUROC", "Pixel AUROC"]
    at.selectbox(key="models_line").select("line-a").run()
    assert metrics(at)["Agrees with the active model"] == "75%"
    at.text_input(key="models_by").input("Ana").run()
    at.text_input(key="models_reason").input("fewer false alarms").run()
    at.button(key="models_promote").click().run()
    assert not at.exception, [item.value for item in at.exception]
    engine = make_engine(dashboard_env.database_url)
    try:
        assert active_model_for_line(engine, "line-a") == "ts-random-1"
        assert table_with(at, "why").iloc[0][["to", "from", "by", "why"]].tolist() == [
            "ts-random-1", "ts-imagenet-1", "Ana", "fewer false alarms"
        ]
        at.button(key="models_rollback").click().run()
        assert active_model_for_line(engine, "line-a") == "ts-imagenet-1"
        at.number_input(key="models_retrain_steps").set_value(300)
        at.button(key="models_retrain").click().run()
        assert table_with(at, "progress").iloc[0][["by", "state"]].tolist() == ["Ana", "queued"]
        [job] = training_jobs(Redis.from_url(REDIS_TEST_URL), "line-a")
        assert (job.request.requested_by, job.request.steps) == ("Ana", 300)
        assert activation_history(engine, "line-a")[0].reason == "fewer false alarms"
    finally:
        engine.dispose()


def test_a_link_to_a_model_registered_since_the_list_was_read_opens_that_model(dashboard_env: Populated) -> None:
    """The model list is cached for a while; a link to a candidate registered meanwhile (one just
    trained) must open the candidate, not another model."""
    from store import register_model

    assert "ts-candidate-1" not in set(table_with(open_page("models"), "calibration threshold")["version"])  # the list is cached
    engine = make_engine(dashboard_env.database_url)
    try:
        register_model(
            engine, version="ts-candidate-1", checkpoint_path="/models/ts-candidate-1.pt", recipe={"image_size": 128},
            calibration={"threshold": 3.0, "false_reject_rate": 0.01, "n_images": 12}, metrics={},
            teacher_source="file:vgg16_imagenet_features.pth", random_teacher=False, training_data={"images": 60},
        )
    finally:
        engine.dispose()
    at = app()
    at.query_params["models_version"] = "ts-candidate-1"
    at.run()
    at.switch_page("views/models.py").run()
    assert not at.exception, [item.value for item in at.exception]
    assert at.subheader[0].value == "ts-candidate-1"
    assert "ts-candidate-1" in set(table_with(at, "calibration threshold")["version"])


# --- PostgreSQL ---


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_page_and_a_review_on_postgresql(
    db_url: str, dashboard_env: Populated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    store = populate(db_url, tmp_path / "pg-artifacts", datetime.now(UTC))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LINEGUARD_ARTIFACTS", str(store.artifacts_root))
    at = open_page("live")
    assert "line-a defect rate, last hour" in metrics(at)
    assert table_with(at, "alarm")["frames"].sum() == sum(store.recent_frames.values())
    at.switch_page("views/review.py").run()
    assert metrics(at)["Awaiting review"] == str(len(store.queue_ids))
    assert len(at.get("image")) == 12 + 2
    at.button(key="review_false_alarm").click().run()
    assert reviews_of(db_url, [store.queue_ids[0]]) == {store.queue_ids[0]: ("false_alarm", None, "test reviewer")}
    at.switch_page("views/models.py").run()
    assert not at.exception
    assert set(table_with(at, "calibration threshold")["version"]) == {"ts-imagenet-1", "ts-random-1"}


# --- gate and configuration ---


def test_password_gate(dashboard_env: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEGUARD_DASHBOARD_PASSWORD", "open sesame")
    at = app()
    at.run()
    assert not at.metric and at.title[0].value == "lineguard"
    at.text_input(key="sign_in_password").input("open says me")
    at.button[0].click().run()
    assert [error.value for error in at.error] == ["Wrong password."]
    assert not at.metric
    at.text_input(key="sign_in_password").input("open sesame")
    at.button[0].click().run()
    assert "line-a defect rate, last hour" in metrics(at)


PASSWORD = "open sesame"
#: Every page script of the navigation.
VIEWS = ("live", "review", "models")


class StepClock:
    """A monotonic clock that moves only when told to, for the sign-in throttle."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttle_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[StepClock]:
    """A password set, and a fresh sign-in throttle on a clock the test moves; forgotten after."""
    monkeypatch.setenv("LINEGUARD_DASHBOARD_PASSWORD", PASSWORD)
    auth.client_throttle.clear()
    clock = StepClock()
    auth.client_throttle().clock = clock
    yield clock
    auth.client_throttle.clear()


def attempt(at: AppTest, password: str) -> AppTest:
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()
    return at


@pytest.mark.parametrize("page", VIEWS)
def test_no_page_runs_and_nothing_is_read_before_the_password(
    page: str, dashboard_env: Populated, throttle_clock: StepClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store without the schema: any query before the gate would put that on the page.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = app()
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception and not at.error
    assert [title.value for title in at.title] == ["lineguard"]
    assert not at.metric and not at.dataframe and not at.get("image") and not at.subheader
    assert [button.label for button in at.button] == ["Sign in"]
    attempt(at, PASSWORD)
    assert len(at.error) == 1 and "no lineguard tables" in at.error[0].value  # past the gate, the store is read


def test_the_gate_opens_on_the_page_asked_for(dashboard_env: Populated, throttle_clock: StepClock) -> None:
    at = app()
    at.run()
    at.switch_page("views/models.py").run()
    attempt(at, PASSWORD)
    assert not at.exception
    assert set(table_with(at, "calibration threshold")["version"]) == {"ts-imagenet-1", "ts-random-1"}


def test_wrong_passwords_in_a_row_make_the_session_wait_longer_each_time(
    dashboard_env: Populated, throttle_clock: StepClock
) -> None:
    at = app()
    at.run()
    assert [error.value for error in attempt(at, "guess 1").error] == ["Wrong password."]  # a typo costs nothing
    assert [error.value for error in attempt(at, "guess 2").error] == ["Wrong password."]
    # The right password, too soon: refused without being checked.
    assert [error.value for error in attempt(at, PASSWORD).error] == ["Too many wrong passwords: try again in 1 s."]
    assert not at.metric
    throttle_clock.now += 1.0
    assert [error.value for error in attempt(at, "guess 3").error] == ["Wrong password."]
    throttle_clock.now += 1.5
    assert [error.value for error in attempt(at, PASSWORD).error] == ["Too many wrong passwords: try again in 1 s."]
    throttle_clock.now += 0.5  # the third wrong password in a row costs 2 s
    attempt(at, PASSWORD)
    assert "line-a defect rate, last hour" in metrics(at)


def test_a_new_session_does_not_escape_its_clients_wait(dashboard_env: Populated, throttle_clock: StepClock) -> None:
    free = auth.CLIENT_BACKOFF.free
    for index in range(free + 1):  # one wrong password in each of several new sessions: none waits for itself
        at = app()
        at.run()
        assert [error.value for error in attempt(at, f"guess {index}").error] == ["Wrong password."]
    fresh = app()
    fresh.run()
    assert [error.value for error in attempt(fresh, PASSWORD).error] == ["Too many wrong passwords: try again in 1 s."]
    assert not fresh.metric
    throttle_clock.now += auth.CLIENT_BACKOFF.first_s
    attempt(fresh, PASSWORD)
    assert "line-a defect rate, last hour" in metrics(fresh)


def test_named_users_sign_in_as_themselves_and_sign_their_reviews(
    dashboard_env: Populated, throttle_clock: StepClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEGUARD_DASHBOARD_USERS", f"ann:{hash_password('ann pass')}")
    at = app()
    at.run()
    for user, password in (("ann", PASSWORD), ("ann", "ann pass")):  # with named users the shared password opens nothing
        at.text_input(key="sign_in_user").input(user)
        attempt(at, password)
    assert not at.exception and "line-a defect rate, last hour" in metrics(at)
    at.switch_page("views/review.py").run()
    assert all(widget.key != "reviewer" for widget in at.text_input)  # no name to type: the signed-in one signs
    first = dashboard_env.queue_ids[0]
    at.button(key="review_false_alarm").click().run()
    assert reviews_of(dashboard_env.database_url, [first]) == {first: ("false_alarm", None, "ann")}  # not LINEGUARD_REVIEWER


def test_a_bad_setting_is_named(dashboard_env: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINEGUARD_ALARM_RATE", "lots")
    at = app()
    at.run()
    assert len(at.error) == 1 and "LINEGUARD_ALARM_RATE" in at.error[0].value
    assert not at.metric


def test_a_database_without_the_schema_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    at = app()
    at.run()
    assert len(at.error) == 1 and "no lineguard tables" in at.error[0].value
