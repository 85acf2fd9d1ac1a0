"""The outbox: messages (verdicts, alarms) that must reach the line, kept until each sink took them.

A worker adds its batch's verdicts in the transaction that writes the batch's rows
(`store.inspections.write_inspections`), so a verdict exists exactly when its row does. The relay
(``lineguard relay``) reads each sink's unsent messages in id order and marks them sent only once
the sink acknowledged them (an MQTT PUBACK, a webhook's 2xx). The payload is opaque here: its
format belongs to wire.verdicts.

Messages are unique by ``key``: a batch written again (its worker died after the commit) adds
nothing. Sent messages are therefore kept `SENT_RETENTION` before `prune_sent` deletes them,
longer than any job retry takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, func, or_, select, update

from store.dialect import upsert_insert
from store.errors import InvalidArgumentError
from store.schema import OUTBOX_SINKS, OutboxMessage

#: How long a message is kept after every sink took it (a retried job's verdict finds it and is not queued again).
SENT_RETENTION = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A message to queue: its de-duplication key, line and camera, topic and payload text."""

    key: str
    line: str
    camera: str
    topic: str
    payload: str


@dataclass(frozen=True, slots=True)
class PendingMessage:
    """A queued message a sink has not yet taken."""

    id: int
    line: str
    camera: str
    topic: str
    payload: str


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    """Messages waiting for the given sinks, and the age of the oldest (seconds; None when empty)."""

    messages: int
    oldest_age_s: float | None


def add_messages(connection: Connection, entries: Sequence[OutboxEntry], now: datetime | None = None) -> None:
    """Queue `entries` in the caller's transaction; a key already queued (or sent) is left as it is."""
    if not entries:
        return
    now = now or datetime.now(UTC)
    insert = upsert_insert(connection.engine, OutboxMessage)
    rows = [
        {"key": e.key, "line": e.line, "camera": e.camera, "topic": e.topic, "payload": e.payload, "created_at": now}
        for e in entries
    ]
    connection.execute(insert.on_conflict_do_nothing(index_elements=[OutboxMessage.key]), rows)


def pending_messages(engine: Engine, sink: str, limit: int, skip_ids: Iterable[int] = ()) -> list[PendingMessage]:
    """Up to `limit` messages `sink` has not taken, oldest first, leaving out `skip_ids` (in flight)."""
    sent = _sent_column(sink)
    query = select(
        OutboxMessage.id, OutboxMessage.line, OutboxMessage.camera, OutboxMessage.topic, OutboxMessage.payload
    ).where(sent.is_(None))
    skipped = sorted(set(skip_ids))
    if skipped:
        query = query.where(OutboxMessage.id.not_in(skipped))
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(OutboxMessage.id).limit(limit))
        return [PendingMessage(*row) for row in rows]


def mark_sent(engine: Engine, sink: str, ids: Sequence[int], now: datetime | None = None) -> None:
    """Record that `sink` acknowledged the messages `ids`."""
    if not ids:
        return
    sent = _sent_column(sink)
    with engine.begin() as connection:
        connection.execute(
            update(OutboxMessage).where(OutboxMessage.id.in_(list(ids))).values({sent.key: now or datetime.now(UTC)})
        )


def outbox_depth(engine: Engine, sinks: Sequence[str], now: datetime | None = None) -> OutboxDepth:
    """How many messages wait for any of `sinks` (the configured ones), and how old the oldest is."""
    if not sinks:
        return OutboxDepth(0, None)
    waiting = or_(*(_sent_column(sink).is_(None) for sink in sinks))
    query = select(func.count(), func.min(OutboxMessage.created_at)).where(waiting)
    with engine.connect() as connection:
        count, oldest = connection.execute(query).one()
    age = None if oldest is None else ((now or datetime.now(UTC)) - oldest).total_seconds()
    return OutboxDepth(int(count), age)


def prune_sent(engine: Engine, sinks: Sequence[str], now: datetime | None = None) -> int:
    """Delete messages every one of `sinks` took more than SENT_RETENTION ago; returns how many."""
    if not sinks:
        return 0
    before = (now or datetime.now(UTC)) - SENT_RETENTION
    taken = [_sent_column(sink) < before for sink in sinks]
    with engine.begin() as connection:
        return connection.execute(delete(OutboxMessage).where(and_(*taken))).rowcount


def settled_before(sinks: Sequence[str], before: datetime) -> ColumnElement[bool]:
    """Messages created before `before` that none of `sinks` (the configured ones) still waits for:
    taken by each, or, with no sink configured, all of them (nothing will send them)."""
    return and_(OutboxMessage.created_at < before, *(_sent_column(sink).is_not(None) for sink in sinks))


def _sent_column(sink: str):  # noqa: ANN202 - an InstrumentedAttribute of OutboxMessage
    if sink not in OUTBOX_SINKS:
        raise InvalidArgumentError(f"outbox sink {sink!r} is not one of {', '.join(OUTBOX_SINKS)}")
    return getattr(OutboxMessage, f"{sink}_sent_at")
