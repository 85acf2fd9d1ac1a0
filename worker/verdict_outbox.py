"""The batch's verdicts for the line: one outbox message per row, queued with the rows (store.outbox).

The relay (``lineguard relay``) sends them on; this module only turns rows into wire.verdicts messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from store.outbox import OutboxEntry
from store.records import InspectionRecord
from wire.verdicts import VerdictMessage, encode_message, iso


def verdict_outbox(records: Sequence[InspectionRecord], topic_prefix: str | None) -> list[OutboxEntry]:
    """The outbox messages of `records` (the last record of a frame id wins, as in the rows);
    none when `topic_prefix` is None (no sink is configured, so no verdict leaves lineguard)."""
    if topic_prefix is None:
        return []
    latest = {record.frame_id: record for record in records}
    entries = []
    for record in latest.values():
        message = VerdictMessage(
            frame_id=record.frame_id,
            line=record.line,
            camera=record.camera,
            origin=record.origin,
            verdict=record.verdict,
            score=record.score,
            model_version=record.model_version,
            captured_at=iso(record.captured_at),
            decided_at=iso(record.finished_at),
            error=record.error,
        )
        entries.append(OutboxEntry(message.key, record.line, record.camera, message.topic(topic_prefix), encode_message(message)))
    return entries
