"""The verdicts' and alarms' wire format, in one place: MQTT topics and the JSON both sinks carry.

The worker encodes (into the outbox, in the same transaction as the inspection rows), the relay
sends what the outbox holds as it is, and a consumer decodes with `decode_message`. MQTT and the
webhook carry the same bytes.

- ``<prefix>/<line>/<camera>/verdict``: one message per frame, QoS 1 (`VerdictMessage`).
- ``<prefix>/<line>/alarm``: a drift alarm raised or cleared on a camera of the line (`AlarmMessage`).

``prefix`` is ``lineguard`` unless configured (LINEGUARD_MQTT_PREFIX). A line or camera name may hold
characters MQTT forbids in a published topic (``+``, ``#``): they travel percent-encoded (as does
``%`` itself), so every name has exactly one topic.

Delivery is at least once (a relay that dies between sending and recording the broker's PUBACK sends
again): a consumer keeps the ``frame_id`` of verdicts (the ``key`` of alarms) it has seen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

DEFAULT_TOPIC_PREFIX = "lineguard"
"""First level of every topic unless LINEGUARD_MQTT_PREFIX says otherwise."""

VERDICT_KIND = "verdict"
ALARM_KIND = "alarm"
MESSAGE_KINDS = (VERDICT_KIND, ALARM_KIND)

ALARM_RAISED = "raised"
ALARM_CLEARED = "cleared"

WEBHOOK_SIGNATURE_HEADER = "X-Lineguard-Signature"
"""HTTP header of a webhook POST: ``sha256=<hex HMAC-SHA256 of the body with the shared secret>``."""

_ESCAPES = {"%": "%25", "+": "%2B", "#": "%23"}


class InvalidMessageError(ValueError):
    """Bytes that are not a lineguard verdict or alarm message."""


def topic_level(name: str) -> str:
    """`name` as one topic level: ``%``, ``+`` and ``#`` percent-encoded. A name with '/' is refused
    (ingest never accepts one: see ingest.frames.check_stream_name)."""
    if not name or "/" in name or "\x00" in name:
        raise ValueError(f"{name!r} cannot be a topic level: it must be non-empty, without '/' or NUL")
    return "".join(_ESCAPES.get(character, character) for character in name)


def check_topic_prefix(prefix: str) -> str:
    """`prefix` if it can start a published topic (levels without wildcards), else ValueError."""
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\x00"):
        raise ValueError(f"MQTT topic prefix {prefix!r} must be non-empty, without '+', '#', NUL or a leading or trailing '/'")
    return prefix


def verdict_topic(prefix: str, line: str, camera: str) -> str:
    return f"{prefix}/{topic_level(line)}/{topic_level(camera)}/{VERDICT_KIND}"


def alarm_topic(prefix: str, line: str) -> str:
    return f"{prefix}/{topic_level(line)}/{ALARM_KIND}"


@dataclass(frozen=True)
class VerdictMessage:
    """One frame's verdict as it goes to the line.

    ``verdict`` is "good", "defect" or "error" (then ``error`` says why and ``score`` is None);
    ``score`` is normalised (0.5 at the threshold); times are ISO 8601 UTC: ``captured_at`` when
    the camera took the frame, ``decided_at`` when the worker finished it.
    """

    frame_id: str
    line: str
    camera: str
    origin: str | None
    verdict: str
    score: float | None
    model_version: str | None
    captured_at: str
    decided_at: str
    error: str | None = None
    kind: str = VERDICT_KIND

    @property
    def key(self) -> str:
        """What identifies the message for de-duplication: its frame id."""
        return f"{VERDICT_KIND}:{self.frame_id}"

    def topic(self, prefix: str) -> str:
        return verdict_topic(prefix, self.line, self.camera)


@dataclass(frozen=True)
class AlarmMessage:
    """A drift alarm of one camera raised or cleared (``state``), with the rule's `reason`."""

    alarm: str  # the rule's kind, e.g. "brightness" or "raw_score"
    line: str
    camera: str
    state: str  # ALARM_RAISED or ALARM_CLEARED
    since: str  # when the shift began (raised) or ended (cleared), ISO 8601 UTC
    reason: str
    kind: str = ALARM_KIND

    @property
    def key(self) -> str:
        return f"{ALARM_KIND}:{self.line}/{self.camera}:{self.alarm}:{self.state}:{self.since}"

    def topic(self, prefix: str) -> str:
        return alarm_topic(prefix, self.line)


def iso(moment: datetime) -> str:
    """An aware datetime as the messages write it."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no timezone")
    return moment.isoformat()


def encode_message(message: VerdictMessage | AlarmMessage) -> str:
    """The JSON text of `message`, as the outbox keeps it and the sinks send it."""
    return json.dumps(asdict(message), separators=(",", ":"), sort_keys=True)


def decode_message(data: bytes | str) -> VerdictMessage | AlarmMessage:
    """A message from its JSON; InvalidMessageError when it is not one of ours."""
    try:
        fields: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidMessageError(f"not JSON: {error}") from None
    if not isinstance(fields, dict) or fields.get("kind") not in MESSAGE_KINDS:
        raise InvalidMessageError(f"not a lineguard message (kind must be one of {', '.join(MESSAGE_KINDS)})")
    kind = VerdictMessage if fields["kind"] == VERDICT_KIND else AlarmMessage
    try:
        return kind(**fields)
    except TypeError as error:
        raise InvalidMessageError(f"{fields['kind']} message with unexpected fields: {error}") from None
