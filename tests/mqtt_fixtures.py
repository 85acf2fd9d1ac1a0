"""An MQTT broker of the test's own (a `mosquitto` process that a test may kill and start again) and a
consumer that keeps every message it receives, as a line's controller would."""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ci_requirements import requirement_missing
from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion

from wire.verdicts import VerdictMessage, decode_message


class Mosquitto:
    """A mosquitto broker on a free port of 127.0.0.1, with persistence so that a restart keeps its
    subscriptions and the messages queued for them (as a plant's broker would).

    Persistence needs a folder the broker can write: mosquitto started as root drops to the user
    ``mosquitto``, which cannot write under pytest's root-owned 0700 tmp_path, and then runs on without
    its persistence file (it only logs "Permission denied"); a restart forgot the consumer's session,
    and the verdicts published before the consumer subscribed again were lost (bench/broker_restart.py).
    So the broker keeps the user that starts it (``user``), and `kill` checks that it saved its state.
    """

    def __init__(self, folder: Path, keep_user: bool = True, log_every_message: bool = False) -> None:
        """`keep_user` False: mosquitto's default user instead (bench/broker_restart.py shows what that
        did); `log_every_message`: the log tells each PUBLISH received and sent (for counting)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nautosave_interval 1\nlog_dest stdout\n"
            + (f"user {getpass.getuser()}\n" if keep_user else "")
            + ("log_type all\n" if log_every_message else "")
        )
        self.log = folder / "mosquitto.log"  # its stdout, opened here: whatever user it runs as, it can write
        self.must_save = keep_user
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.process.returncode}: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on port {self.port} within 10 s")

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker. SIGTERM: it saves what it queued for subscribers on the way down. A
        SIGKILLed mosquitto loses the messages it acknowledged but had not yet delivered or saved
        (up to its autosave interval): no publisher can prevent that, so the tests use SIGTERM."""
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(10)
        if sig == signal.SIGTERM and self.must_save and not (self.folder / "mosquitto.db").exists():
            pytest.fail(f"mosquitto saved no persistence file in {self.folder}: {self.output()}")

    def output(self) -> str:
        """The end of mosquitto's log."""
        return self.log.read_text(errors="replace")[-2000:]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None:
        requirement_missing("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = Mosquitto(folder)
    broker.start()
    yield broker
    if broker.process is not None and broker.process.poll() is None:
        broker.kill(signal.SIGKILL)


class Consumer:
    """Subscribes (QoS 1, persistent session) to `topic` and keeps every message, duplicates included."""

    def __init__(self, port: int, topic: str, client_id: str = "test-consumer") -> None:
        self.messages: list[VerdictMessage] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.reconnect_delay_set(min_delay=0.25, max_delay=1)  # type: ignore[arg-type]
        #: Whether the broker still had this consumer's session, at each connection.
        self.sessions_present: list[bool] = []

        def connected(client: Client, userdata: object, flags: ConnectFlags, *_: object) -> None:
            self.sessions_present.append(flags.session_present)
            client.subscribe(topic, qos=1)

        client.on_connect = connected
        client.on_subscribe = lambda *_: self.subscribed.set()
        client.on_message = self._keep
        client.connect("127.0.0.1", port, keepalive=5)
        client.loop_start()
        self._client = client
        if not self.subscribed.wait(10):
            pytest.fail(f"consumer could not subscribe to {topic}")

    def _keep(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        decoded = decode_message(message.payload)
        with self._lock:
            self.messages.append(decoded)

    def received(self) -> list[VerdictMessage]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
