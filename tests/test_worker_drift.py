"""Drift alarms: an exposure change raises one within a minute of line time and it clears after;
1,000 stable parts raise none; an alarm reaches status, the source events and the outbox once."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
from line_fixtures import (
    LINE,
    QUEUE,
    line_redis,  # noqa: F401 - fixture
    make_frame,
    make_part,
    png,
    publish,
    register_checkpoint,
    sqlite_engine,  # noqa: F401 - fixture
    sqlite_line_settings,  # noqa: F401 - fixture
)
from store_fixtures import BASE_TIME, make_record
from test_worker_jobs import make_context, queued_payloads

from lineguard.cli import main
from model.calibration import Calibration
from model.image_stats import image_reference
from model.synthetic import good_part
from store.alarms import open_alarms
from store.db import make_engine
from store.ledger import recent_source_events
from store.outbox import pending_messages
from wire.verdicts import AlarmMessage, decode_message
from worker.drift import DriftMonitor, record_alarm_changes
from worker.jobs import score_batch

PART_SIZE = 128
FPS = 4


def brighter(image: np.ndarray, gain: float = 1.35) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def stand_in_model(rng: np.random.Generator) -> SimpleNamespace:
    """What DriftMonitor reads of a model: the training images' reference, a calibration and the region it sees."""
    reference = image_reference([good_part(PART_SIZE, rng) for _ in range(40)])
    calibration = Calibration(threshold=1.6, median_good=1.0, false_reject_rate=0.01, good_mean=1.0, good_std=0.2, n_images=40)
    return SimpleNamespace(image_reference=reference, calibration=calibration, in_region=lambda image: image)


def feed(monitor: DriftMonitor, model: SimpleNamespace, images, rng, start_index: int) -> list:
    changes = []
    for offset, image in enumerate(images):
        index = start_index + offset
        frame_id = f"frame-{index}"
        monitor.measure(frame_id, model, image)
        raw = float(rng.normal(model.calibration.good_mean, model.calibration.good_std))
        record = make_record(frame_id, BASE_TIME + timedelta(seconds=index / FPS), raw_score=raw)
        changes += monitor.settle([record])
    return changes


def test_an_exposure_change_raises_within_a_minute_and_clears_and_a_stable_stream_raises_nothing():
    rng = np.random.default_rng(1)
    model = stand_in_model(rng)
    monitor = DriftMonitor()
    assert feed(monitor, model, (good_part(PART_SIZE, rng) for _ in range(1000)), rng, 0) == []

    changed_at = BASE_TIME + timedelta(seconds=1000 / FPS)
    raised = feed(monitor, model, (brighter(good_part(PART_SIZE, rng)) for _ in range(4 * 60)), rng, 1000)
    assert raised and all(change.raised for change in raised)
    assert "brightness" in {change.kind for change in raised}
    first = min(change.at for change in raised)
    assert first - changed_at <= timedelta(minutes=1)
    print(f"\nexposure x1.35 at 4 fps: alarm after {(first - changed_at).total_seconds():.1f} s ({', '.join(c.kind for c in raised)})")

    cleared = feed(monitor, model, (good_part(PART_SIZE, rng) for _ in range(4 * 60)), rng, 1240)
    assert {change.kind for change in cleared} == {change.kind for change in raised}
    assert not any(change.raised for change in cleared)


def test_an_alarm_is_told_once_in_the_store_status_events_and_outbox(sqlite_line_settings, capsys):  # noqa: F811
    rng = np.random.default_rng(2)
    model = stand_in_model(rng)
    engine = make_engine(sqlite_line_settings.database_url)
    try:
        assert main(["db", "upgrade"]) == 0
        changes = feed(DriftMonitor(), model, (brighter(good_part(PART_SIZE, rng)) for _ in range(30)), rng, 0)
        brightness = [change for change in changes if change.kind == "brightness"]
        assert len(brightness) == 1
        record_alarm_changes(engine, brightness, "plant")
        record_alarm_changes(engine, brightness, "plant")  # a second worker saw the same shift
        (alarm,) = open_alarms(engine)
        assert (alarm.kind, alarm.line, alarm.camera) == ("brightness", "line-1", "cam-0")

        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        (shown,) = json.loads(capsys.readouterr().out)["alarms"]
        assert shown["kind"] == "brightness" and shown["since"] == alarm.since.isoformat() and "shifted" in shown["reason"]
        (message,) = [decode_message(m.payload) for m in pending_messages(engine, "mqtt", 10)]
        assert isinstance(message, AlarmMessage) and message.state == "raised"
        assert message.topic("plant") == "plant/line-1/alarm"
        events = [event for event in recent_source_events(engine, limit=10) if event.kind.startswith("alarm")]
        assert [event.kind for event in events] == ["alarm_raised"]

        clear = replace(brightness[0], raised=False, at=brightness[0].at + timedelta(minutes=1), reason="brightness back")
        record_alarm_changes(engine, [clear], "plant")
        record_alarm_changes(engine, [clear], "plant")
        assert open_alarms(engine) == []
        events = [event.kind for event in recent_source_events(engine, limit=10) if event.kind.startswith("alarm")]
        assert sorted(events) == ["alarm_cleared", "alarm_raised"]
        assert [decode_message(m.payload).state for m in pending_messages(engine, "mqtt", 10)] == ["raised", "cleared"]
    finally:
        engine.dispose()


def test_the_worker_raises_an_exposure_alarm_from_real_frames(line_redis, sqlite_engine, small_checkpoint, tmp_path):  # noqa: F811
    register_checkpoint(sqlite_engine, small_checkpoint)
    context = make_context(line_redis, sqlite_engine, tmp_path)
    rng = np.random.default_rng(4)

    def score(images) -> None:
        publish(line_redis, [make_frame(png(image), f"part-{i}") for i, image in enumerate(images)], batch_size=8)
        for payload in queued_payloads(line_redis):
            score_batch(context, payload)
        line_redis.flushdb()

    score([make_part(rng, defective=False) for _ in range(30)])
    assert open_alarms(sqlite_engine) == []
    score([brighter(make_part(rng, defective=False)) for _ in range(24)])
    kinds = {alarm.kind for alarm in open_alarms(sqlite_engine)}
    assert "brightness" in kinds and all(alarm.line == LINE for alarm in open_alarms(sqlite_engine))
    score([make_part(rng, defective=False) for _ in range(30)])
    assert open_alarms(sqlite_engine) == []
