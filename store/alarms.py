"""Drift alarms: raised and cleared per line, camera and kind, each change told once.

Several workers watch the same camera; the first to see a shift raises the alarm, the others find it
open (``open_key`` is unique) and change nothing. A change records a source event and queues the
caller's outbox messages (the alarm on MQTT) in the same transaction, so each is told exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from store.db import write_transaction
from store.dialect import upsert_insert
from store.outbox import OutboxEntry, add_messages
from store.schema import Alarm, SourceEvent

#: The source that alarm events name.
ALARM_SOURCE = "drift"
ALARM_RAISED_EVENT = "alarm_raised"
ALARM_CLEARED_EVENT = "alarm_cleared"


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    """An open alarm."""

    kind: str
    line: str
    camera: str
    since: datetime
    reason: str


def _open_key(line: str, camera: str, kind: str) -> str:
    return f"{line}/{camera}/{kind}"


def raise_alarm(
    engine: Engine, line: str, camera: str, kind: str, since: datetime, reason: str, outbox: Sequence[OutboxEntry] = ()
) -> bool:
    """Open the alarm unless it is open already; returns whether this call opened it."""
    insert_alarm = upsert_insert(engine, Alarm).values(
        line=line, camera=camera, kind=kind, since=since, reason=reason, open_key=_open_key(line, camera, kind)
    )
    with write_transaction(engine) as connection:
        opened = connection.execute(insert_alarm.on_conflict_do_nothing(index_elements=[Alarm.open_key])).rowcount == 1
        if opened:
            connection.execute(
                insert(SourceEvent).values(
                    at=since, line=line, camera=camera, source=ALARM_SOURCE, kind=ALARM_RAISED_EVENT, message=f"{kind}: {reason}"
                )
            )
            add_messages(connection, outbox)
    return opened


def clear_alarm(
    engine: Engine, line: str, camera: str, kind: str, at: datetime, reason: str, outbox: Sequence[OutboxEntry] = ()
) -> bool:
    """Close the open alarm, if any; returns whether this call closed it."""
    with write_transaction(engine) as connection:
        closed = connection.execute(
            update(Alarm).where(Alarm.open_key == _open_key(line, camera, kind)).values(cleared_at=at, open_key=None)
        ).rowcount == 1
        if closed:
            connection.execute(
                insert(SourceEvent).values(
                    at=at, line=line, camera=camera, source=ALARM_SOURCE, kind=ALARM_CLEARED_EVENT, message=f"{kind}: {reason}"
                )
            )
            add_messages(connection, outbox)
    return closed


def open_alarms(engine: Engine) -> list[AlarmInfo]:
    """Every open alarm, oldest first."""
    query = select(Alarm.kind, Alarm.line, Alarm.camera, Alarm.since, Alarm.reason).where(Alarm.open_key.is_not(None))
    with engine.connect() as connection:
        return [AlarmInfo(*row) for row in connection.execute(query.order_by(Alarm.since, Alarm.id))]
