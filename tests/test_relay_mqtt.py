"""Verdicts to the line over MQTT: 200 frames through two workers, the broker killed and started again
mid-run; every verdict arrives, in outbox order per camera. A broker that hangs with messages in flight:
they are sent again, before anything newer."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from line_fixtures import (
    QUEUE,
    line_redis,  # noqa: F401 - fixture
    line_settings,  # noqa: F401 - fixture
    make_frame,
    make_part,
    png,
    publish,
    register_checkpoint,
    row_count,
    sqlite_engine,  # noqa: F401 - fixture
    start_lineguard,
    stop,
    stop_all,
    wait_until,
)
from mqtt_fixtures import Consumer, own_broker  # noqa: F401 - fixture
from rq import SimpleWorker
from sqlalchemy import select
from store_fixtures import db_url, postgres_run_database  # noqa: F401 - fixtures

from store_fixtures import BASE_TIME, make_record

from lineguard.cli import main
from relay.mqtt import MqttSender
from relay.runner import RelayOptions, RelayTargets, run_relay
from store.db import make_engine
from store.inspections import write_inspections
from store.schema import OutboxMessage
from wire.protocol import make_queue
from worker.verdict_outbox import verdict_outbox

FRAMES = 200
PREFIX = "lineguard-test"
#: Seconds to wait for progress (workers registered, verdicts arrived): a bound for a stuck line, not a
#: speed; on a loaded 2-core machine a worker process takes over a minute just to start.
PROGRESS_S = 300


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_broker_killed_mid_run_loses_no_verdict_and_keeps_each_cameras_order(
    own_broker, line_redis, line_settings, small_checkpoint, tmp_path, monkeypatch, capsys  # noqa: F811
):
    monkeypatch.setenv("LINEGUARD_MQTT_URL", own_broker.url)
    monkeypatch.setenv("LINEGUARD_MQTT_PREFIX", PREFIX)
    engine = make_engine(line_settings.database_url)
    consumer = Consumer(own_broker.port, f"{PREFIX}/+/+/verdict")
    processes = []
    try:
        assert main(["db", "upgrade"]) == 0
        register_checkpoint(engine, small_checkpoint)
        processes = [
            start_lineguard("worker", "--device", "cpu", "--threads", "1", "--batch-size", "4", "--name", name, log_path=tmp_path / f"{name}.log")
            for name in ("worker-a", "worker-b")
        ]
        processes.append(start_lineguard("relay", "--reconnect-max", "0.5", log_path=tmp_path / "relay.log"))
        wait_until(lambda: SimpleWorker.count(queue=make_queue(line_redis, QUEUE)) == 2, PROGRESS_S, "both workers to register")
        rng = np.random.default_rng(13)
        frames = [
            replace(make_frame(png(make_part(rng, defective=i % 10 == 0)), f"part-{i}"), camera=f"cam-{i % 2}")
            for i in range(FRAMES)
        ]
        publish(line_redis, frames, batch_size=4)

        wait_until(lambda: len(consumer.received()) >= FRAMES // 4, PROGRESS_S, "a quarter of the verdicts")
        own_broker.kill()
        killed_with = len({m.frame_id for m in consumer.received()})
        wait_until(lambda: row_count(engine) >= killed_with + 40, PROGRESS_S, "rows written while the broker is down")
        capsys.readouterr()
        assert main(["status", "--json"]) == 0
        outbox = json.loads(capsys.readouterr().out)["outbox"]
        assert outbox["sinks"] == ["mqtt"] and outbox["messages"] >= 40 and outbox["oldest_age_s"] > 0
        own_broker.start()
        wait_until(lambda: len({m.frame_id for m in consumer.received()}) >= FRAMES, PROGRESS_S, "every verdict after the restart")
        time.sleep(1)  # any late duplicate arrives

        received = consumer.received()
        distinct = {m.frame_id for m in received}
        duplicates = sum(count - 1 for count in Counter(m.frame_id for m in received).values())
        print(f"\n{FRAMES} frames: {len(distinct)} verdicts received, {killed_with} before the kill, "
              f"{len(received)} deliveries ({duplicates} redelivered, dropped by frame id)")
        assert len(consumer.sessions_present) >= 2 and all(consumer.sessions_present[1:]), (
            f"the restarted broker forgot the consumer's session ({consumer.sessions_present}): "
            f"what it took before the consumer subscribed again is lost (broker log: {own_broker.output()})"
        )
        assert distinct == {frame.frame_id for frame in frames}
        assert all(m.topic(PREFIX) == f"{PREFIX}/line-1/{m.camera}/verdict" for m in received)
        with engine.connect() as connection:
            outbox = connection.execute(select(OutboxMessage.key, OutboxMessage.camera).order_by(OutboxMessage.id)).all()
        for camera in ("cam-0", "cam-1"):
            first_arrivals = list(dict.fromkeys(m.frame_id for m in received if m.camera == camera))
            in_outbox = [key.removeprefix("verdict:") for key, outbox_camera in outbox if outbox_camera == camera]
            assert first_arrivals == in_outbox, f"{camera}: verdicts arrived out of the outbox's order"
        assert stop_all(processes) == [0, 0, 0]
    finally:
        consumer.close()
        for process in processes:
            stop(process)
        engine.dispose()


def test_messages_in_flight_when_the_broker_hangs_are_sent_again_before_newer_ones(own_broker, sqlite_engine, monkeypatch):  # noqa: F811
    """A hung broker (SIGSTOP) leaves the relay's messages unacknowledged; killed and started again, it
    gets them again from paho, which reports the new connection before it sends them. That window is
    widened here by 0.3 s, as a busy scheduler may: verdicts written meanwhile must not overtake them."""
    on_connect = MqttSender._on_connect

    def slow_on_connect(self: MqttSender, *args: object) -> None:
        on_connect(self, *args)
        time.sleep(0.3)

    monkeypatch.setattr(MqttSender, "_on_connect", slow_on_connect)
    consumer = Consumer(own_broker.port, f"{PREFIX}/+/+/verdict")
    stop_relay = threading.Event()
    relay = threading.Thread(
        target=run_relay, args=(sqlite_engine, RelayTargets(mqtt_url=own_broker.url), stop_relay, RelayOptions(reconnect_max_s=0.5))
    )
    written: list[str] = []

    def write(count: int) -> None:
        records = [
            make_record(f"frame-{i}", BASE_TIME + timedelta(seconds=i), camera=f"cam-{i % 2}")
            for i in range(len(written), len(written) + count)
        ]
        for record in records:  # one transaction per verdict, as batches of one would commit
            write_inspections(sqlite_engine, [record], verdict_outbox([record], PREFIX))
            written.append(record.frame_id)

    relay.start()
    try:
        write(10)
        wait_until(lambda: len(consumer.received()) >= 10, PROGRESS_S, "the first verdicts")
        subscribed_at = time.time()
        saved = own_broker.folder / "mosquitto.db"
        wait_until(lambda: saved.exists() and saved.stat().st_mtime > subscribed_at, 30, "the broker to save the consumer's session")
        assert own_broker.process is not None
        own_broker.process.send_signal(signal.SIGSTOP)
        write(20)
        time.sleep(1)  # the relay publishes them to the hung broker: in flight, unacknowledged
        own_broker.kill(signal.SIGKILL)
        write(20)  # waiting in the outbox while the broker is down
        own_broker.start()
        wait_until(lambda: {m.frame_id for m in consumer.received()} >= set(written), PROGRESS_S, "every verdict after the restart")
    finally:
        stop_relay.set()
        relay.join(10)
        consumer.close()
    received = consumer.received()
    assert consumer.sessions_present[1:] == [True] * (len(consumer.sessions_present) - 1)
    for camera in ("cam-0", "cam-1"):
        first_arrivals = list(dict.fromkeys(m.frame_id for m in received if m.camera == camera))
        assert first_arrivals == [frame for i, frame in enumerate(written) if f"cam-{i % 2}" == camera], (
            f"{camera}: verdicts arrived out of the outbox's order"
        )
