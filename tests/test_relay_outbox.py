"""The outbox: verdicts queued with their rows, once per frame; the webhook sink signs, retries, keeps order."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from line_fixtures import sqlite_engine  # noqa: F401 - fixture
from store_fixtures import BASE_TIME, make_record

from relay.runner import RelayTargets, run_relay
from store.inspections import write_inspections
from store.outbox import SENT_RETENTION, mark_sent, outbox_depth, pending_messages, prune_sent
from wire.verdicts import WEBHOOK_SIGNATURE_HEADER, VerdictMessage, decode_message, topic_level, verdict_topic
from worker.verdict_outbox import verdict_outbox

SECRET = "a-webhook-secret-of-some-length"


def test_verdicts_are_queued_with_their_rows_once_per_frame(sqlite_engine):  # noqa: F811
    records = [make_record(f"frame-{i}", BASE_TIME + timedelta(seconds=i)) for i in range(3)]
    write_inspections(sqlite_engine, records, verdict_outbox(records, "plant"))
    write_inspections(sqlite_engine, records, verdict_outbox(records, "plant"))  # the batch again (a retried job)
    pending = pending_messages(sqlite_engine, "mqtt", 10)
    assert [decode_message(m.payload).frame_id for m in pending] == ["frame-0", "frame-1", "frame-2"]
    assert {m.topic for m in pending} == {"plant/line-1/cam-0/verdict"}
    message = decode_message(pending[0].payload)
    assert isinstance(message, VerdictMessage)
    assert (message.verdict, message.score, message.model_version) == ("good", 0.2, "model-a")
    assert message.decided_at == BASE_TIME.isoformat()

    now = BASE_TIME + timedelta(seconds=10)
    depth = outbox_depth(sqlite_engine, ["mqtt"], now=now)
    assert depth.messages == 3 and depth.oldest_age_s is not None
    mark_sent(sqlite_engine, "mqtt", [pending[0].id], now=now)
    assert [m.id for m in pending_messages(sqlite_engine, "mqtt", 10)] == [m.id for m in pending[1:]]
    assert outbox_depth(sqlite_engine, ["mqtt"]).messages == 2
    assert outbox_depth(sqlite_engine, ["mqtt", "webhook"]).messages == 3
    assert prune_sent(sqlite_engine, ["mqtt"], now=now + SENT_RETENTION + timedelta(seconds=1)) == 1
    assert write_inspections(sqlite_engine, [], verdict_outbox([], None)) == 0 and verdict_outbox(records, None) == []


def test_names_mqtt_forbids_in_a_topic_are_escaped():
    assert verdict_topic("lineguard", "line+1", "cam#2") == "lineguard/line%2B1/cam%232/verdict"
    assert topic_level("50%") == "50%25"
    with pytest.raises(ValueError):
        topic_level("a/b")


class Receiver(BaseHTTPRequestHandler):
    """Refuses the first two POSTs (503), then keeps the bodies whose signature is right."""

    bodies: list[bytes] = []
    refusals = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if Receiver.refusals < 2:
            Receiver.refusals += 1
            self.send_response(503)
        elif hmac.compare_digest(self.headers[WEBHOOK_SIGNATURE_HEADER], expected):
            Receiver.bodies.append(body)
            self.send_response(204)
        else:
            self.send_response(401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    Receiver.bodies, Receiver.refusals = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/verdicts"
    server.shutdown()
    server.server_close()


def test_the_webhook_gets_every_verdict_signed_in_order_after_refusals(sqlite_engine, webhook_url):  # noqa: F811
    records = [make_record(f"frame-{i}", BASE_TIME + timedelta(seconds=i)) for i in range(5)]
    write_inspections(sqlite_engine, records, verdict_outbox(records, "lineguard"))
    stop = threading.Event()
    relay = threading.Thread(target=run_relay, args=(sqlite_engine, RelayTargets(webhook_url=webhook_url, webhook_secret=SECRET), stop))
    relay.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if len(Receiver.bodies) == 5:
                break
            deadline.wait(0.1)
    finally:
        stop.set()
        relay.join(10)
    assert Receiver.refusals == 2
    assert [json.loads(body)["frame_id"] for body in Receiver.bodies] == [f"frame-{i}" for i in range(5)]
    assert outbox_depth(sqlite_engine, ["webhook"]).messages == 0
