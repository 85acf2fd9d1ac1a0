"""The relay process: one thread per configured sink, each sending its unsent outbox messages in id
order and marking them sent once acknowledged; old sent messages are pruned.

The outbox, not the relay, holds the state: a relay killed at any point and started again sends what
was not acknowledged (so a message may arrive twice; consumers keep frame ids, see wire.verdicts).
Run one relay per database: two would send every message twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from relay.mqtt import DEFAULT_RECONNECT_MAX_S, MqttSender
from relay.webhook import WebhookError, WebhookSender
from store.db import is_database_outage
from store.outbox import mark_sent, pending_messages, prune_sent
from wire.connections import OutageInterrupted, OutageWaiter

logger = logging.getLogger(__name__)

#: Seconds between looks at the outbox when there is nothing to send.
POLL_S = 0.05
#: Messages published to the broker and not yet acknowledged, at most.
MAX_IN_FLIGHT = 200
#: Messages a webhook pass reads at once.
WEBHOOK_BATCH = 50
#: First wait after a failed webhook POST, seconds; doubles up to the cap.
WEBHOOK_RETRY_MIN_S = 0.5
#: Seconds between prunes of messages every sink took long ago.
PRUNE_EVERY_S = 60
#: Seconds a stopping relay waits for the acknowledgements of messages in flight.
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class RelayOptions:
    """How the relay runs (see `lineguard relay --help`)."""

    reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S
    webhook_retry_max_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.reconnect_max_s <= 3600:
            raise ValueError(f"--reconnect-max must be between 0 and 3600 seconds, got {self.reconnect_max_s}")
        if not WEBHOOK_RETRY_MIN_S <= self.webhook_retry_max_s <= 3600:
            raise ValueError(f"--webhook-retry-max must be between {WEBHOOK_RETRY_MIN_S} and 3600 seconds, got {self.webhook_retry_max_s}")


class RelayError(Exception):
    """The relay cannot run as configured."""


@dataclass(frozen=True)
class RelayTargets:
    """Where messages go: a broker (``mqtt://`` or ``mqtts://`` URL) and/or a webhook with its signing secret."""

    mqtt_url: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(sink for sink, url in (("mqtt", self.mqtt_url), ("webhook", self.webhook_url)) if url)


def run_relay(engine: Engine, targets: RelayTargets, stop: threading.Event, options: RelayOptions = RelayOptions()) -> None:
    """Send the outbox to the configured sinks until `stop` is set."""
    sinks = targets.sinks
    if not sinks:
        raise RelayError("no sink to relay to: set LINEGUARD_MQTT_URL and/or LINEGUARD_WEBHOOK_URL")
    if targets.webhook_url and not targets.webhook_secret:
        raise RelayError("a webhook needs a secret to sign its messages (LINEGUARD_WEBHOOK_SECRET)")
    database = OutageWaiter("the database", is_database_outage, should_stop=stop.is_set)
    loops = []
    if targets.mqtt_url:
        sender = MqttSender(targets.mqtt_url, f"lineguard-relay-{socket.gethostname()}-{os.getpid()}", options.reconnect_max_s)
        loops.append(threading.Thread(target=_guarded, args=(_relay_mqtt, engine, sender, database, stop), name="relay-mqtt"))
    if targets.webhook_url and targets.webhook_secret:
        webhook = WebhookSender(targets.webhook_url, targets.webhook_secret)
        loops.append(
            threading.Thread(
                target=_guarded, args=(_relay_webhook, engine, webhook, database, stop, options.webhook_retry_max_s), name="relay-webhook"
            )
        )
    logger.info("relaying verdicts and alarms to %s", " and ".join(sinks))
    for loop in loops:
        loop.start()
    try:
        while not stop.wait(PRUNE_EVERY_S):
            pruned = database.call(lambda: prune_sent(engine, sinks), "pruning sent messages")
            if pruned:
                logger.debug("pruned %d sent messages", pruned)
    except OutageInterrupted:
        pass
    finally:
        stop.set()
        for loop in loops:
            loop.join()


def _guarded(loop, *args) -> None:  # noqa: ANN001 - a sink loop and its arguments
    try:
        loop(*args)
    except OutageInterrupted:
        pass


def _relay_mqtt(engine: Engine, sender: MqttSender, database: OutageWaiter, stop: threading.Event) -> None:
    in_flight: dict[int, int] = {}  # paho message id -> outbox id

    def settle() -> None:
        done = [in_flight.pop(mid) for mid in sender.take_acked() if mid in in_flight]
        if done:
            database.call(lambda: mark_sent(engine, "mqtt", done), f"marking {len(done)} messages sent")

    sender.start()
    connection = 0
    resending = False  # messages of an earlier connection are still in flight: nothing new may overtake them
    try:
        while not stop.is_set():
            settle()
            if sender.connections != connection:
                connection, resending = sender.connections, bool(in_flight)
            resending = resending and bool(in_flight)
            if sender.connected and not resending and len(in_flight) < MAX_IN_FLIGHT:
                rows = database.call(
                    lambda: pending_messages(engine, "mqtt", MAX_IN_FLIGHT - len(in_flight), skip_ids=in_flight.values()),
                    "reading the outbox",
                )
                for row in rows:
                    in_flight[sender.publish(row.topic, row.payload)] = row.id
                if rows:
                    continue
            stop.wait(POLL_S)
        deadline = time.monotonic() + STOP_GRACE_S
        while in_flight and sender.connected and time.monotonic() < deadline:
            time.sleep(POLL_S)
            settle()
    finally:
        sender.close()


def _relay_webhook(
    engine: Engine, webhook: WebhookSender, database: OutageWaiter, stop: threading.Event, retry_max_s: float
) -> None:
    delay = WEBHOOK_RETRY_MIN_S
    failing_since: float | None = None
    while not stop.is_set():
        rows = database.call(lambda: pending_messages(engine, "webhook", WEBHOOK_BATCH), "reading the outbox")
        if not rows:
            stop.wait(POLL_S)
            continue
        for row in rows:
            try:
                webhook.post(row.payload)
            except WebhookError as error:
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.warning("webhook did not take a message (%s); trying again, every %g s at most", error, retry_max_s)
                stop.wait(delay)
                delay = min(2 * delay, retry_max_s)
                break
            database.call(lambda row=row: mark_sent(engine, "webhook", [row.id]), "marking a message sent")
            if failing_since is not None:
                logger.warning("webhook takes messages again after %.1f s", time.monotonic() - failing_since)
                failing_since, delay = None, WEBHOOK_RETRY_MIN_S
            if stop.is_set():
                break
