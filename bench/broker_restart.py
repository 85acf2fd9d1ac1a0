"""Where verdicts go when the MQTT broker is stopped and started again mid-run: counted at the relay
(outbox rows marked sent, on PUBACK), at the broker (its log of every PUBLISH received and sent) and
at a consumer with a persistent session (QoS 1, clean_session=False), as tests/test_relay_mqtt.py
runs it but without workers, so that the count is the relay's and the broker's alone.

The relay is the real one (relay.runner.run_relay) on a SQLite outbox that a writer thread fills with
`--messages` verdicts on two cameras at `--rate` per second, as workers would. The broker is the
tests' mosquitto (tests/mqtt_fixtures.py) on a free port, stopped once the consumer has a quarter of
the verdicts and started again once `--while-down` more were written. `--stop term`: SIGTERM (it saves
its state and closes its connections); `--stop hang`: SIGSTOP, so that the relay's messages stay
unacknowledged in flight, and SIGKILL once `--while-down` were written: paho must send them again
after the reconnect, before anything newer (the relay holds new ones back until they are acknowledged).

    PYTHONPATH=$PWD .venv/bin/python bench/broker_restart.py --broker-user mosquitto
    PYTHONPATH=$PWD .venv/bin/python bench/broker_restart.py --broker-user own

``--broker-user mosquitto``: mosquitto's default, as the tests ran it until session 3: started as
root, it drops to the user ``mosquitto``, which cannot write its persistence file in a root-owned 0700
folder. ``own``: it keeps the user that starts it and writes the file.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tests' broker and consumer

from mqtt_fixtures import Consumer, Mosquitto  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from relay.runner import RelayOptions, RelayTargets, run_relay  # noqa: E402
from store.db import make_engine, upgrade  # noqa: E402
from store.outbox import OutboxEntry, add_messages  # noqa: E402
from store.schema import OutboxMessage  # noqa: E402
from wire.verdicts import VerdictMessage, encode_message, iso  # noqa: E402

PREFIX = "bench"
RELAY_CLIENT = "lineguard-relay"
CONSUMER_CLIENT = "bench-consumer"


def sent_count(engine) -> int:  # noqa: ANN001 - an Engine
    with engine.connect() as connection:
        return connection.execute(select(func.count()).where(OutboxMessage.mqtt_sent_at.is_not(None))).scalar_one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker-user", choices=["mosquitto", "own"], required=True)
    parser.add_argument("--stop", choices=["term", "hang"], default="term", help="how the broker goes away")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="verdicts written per second")
    parser.add_argument("--while-down", type=int, default=40, help="verdicts written while the broker is down")
    parser.add_argument("--wait", type=float, default=20.0, help="seconds to wait for every verdict after the restart")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="broker-restart-"))  # 0700, owned by whoever runs this
    engine = make_engine(f"sqlite:///{folder / 'outbox.db'}")
    upgrade(engine)
    broker = Mosquitto(folder, keep_user=args.broker_user == "own", log_every_message=True)
    broker.start()
    consumer = Consumer(broker.port, f"{PREFIX}/+/+/verdict", client_id=CONSUMER_CLIENT)
    stop = threading.Event()
    targets = RelayTargets(mqtt_url=broker.url)
    relay = threading.Thread(target=run_relay, args=(engine, targets, stop, RelayOptions(reconnect_max_s=0.5)))
    relay.start()

    frames = [f"part-{i}" for i in range(args.messages)]
    written = [0]

    def write() -> None:
        for i, frame in enumerate(frames):
            now = datetime.now(UTC)
            message = VerdictMessage(frame, "line-1", f"cam-{i % 2}", None, "good", 0.1, "v1", iso(now), iso(now))
            entry = OutboxEntry(message.key, "line-1", message.camera, message.topic(PREFIX), encode_message(message))
            with engine.begin() as connection:
                add_messages(connection, [entry])
            written[0] = i + 1
            time.sleep(1 / args.rate)

    def distinct() -> set[str]:
        return {m.frame_id for m in consumer.received()}

    writer = threading.Thread(target=write)
    writer.start()
    while len(distinct()) < args.messages // 4:
        time.sleep(0.01)
    sent_before_stop, received_before_stop = sent_count(engine), len(distinct())
    stopped_at = time.monotonic()
    if args.stop == "hang":
        broker.process.send_signal(signal.SIGSTOP)
    else:
        broker.kill()
    written_at_stop = written[0]
    while written[0] < written_at_stop + args.while_down:
        time.sleep(0.01)
    if args.stop == "hang":
        broker.kill(signal.SIGKILL)
    broker.start()
    restarted_after = time.monotonic() - stopped_at
    deadline = time.monotonic() + args.wait
    while len(distinct()) < args.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # any late redelivery
    writer.join()
    stop.set()
    relay.join()
    consumer.close()
    broker.kill()

    log = broker.log.read_text(errors="replace").splitlines()
    received = consumer.received()
    missing = sorted(set(frames) - distinct(), key=lambda f: int(f.split("-")[1]))
    in_order = all(
        list(dict.fromkeys(m.frame_id for m in received if m.camera == f"cam-{camera}"))
        == [f for i, f in enumerate(frames) if i % 2 == camera and f not in missing]
        for camera in (0, 1)
    )
    report = {
        "broker_user": args.broker_user,
        "stop": args.stop,
        "verdicts": args.messages,
        "relay_marked_sent": sent_count(engine),
        "relay_marked_sent_before_stop": sent_before_stop,
        "broker_received_from_relay": sum(f"Received PUBLISH from {RELAY_CLIENT}" in line for line in log),
        "broker_sent_to_consumer": sum(f"Sending PUBLISH to {CONSUMER_CLIENT}" in line for line in log),
        "consumer_distinct": len(distinct()),
        "consumer_deliveries": len(received),
        "consumer_before_stop": received_before_stop,
        "consumer_session_present_at_each_connect": consumer.sessions_present,
        "restarted_after_s": round(restarted_after, 2),
        "missing": f"{len(missing)} ({missing[0]} .. {missing[-1]})" if missing else 0,
        "order_kept_per_camera": in_order,
        "broker_errors": [line for line in log if "Error" in line][:2],
    }
    print(json.dumps(report, indent=1))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
