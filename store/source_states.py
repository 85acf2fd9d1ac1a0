"""What each camera or stream is doing now, read from its source events (see ingest.video).

A video source records "connected"/"reconnected" when frames flow, "disconnected"/"stalled" when
they stop, "error" when its run failed and "stopped" when it ended. Its state is its latest such
event; a source that is down is down since the first of its down events after it last streamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, select

from store.schema import SourceEvent

#: Prefix of the source label of video files, cameras and streams.
VIDEO_SOURCE_PREFIX = "video:"
#: Source event kind -> the state it starts.
STATE_OF_EVENT: dict[str, str] = {
    "started": "starting",
    "connected": "streaming",
    "reconnected": "streaming",
    "disconnected": "down",
    "stalled": "down",
    "error": "failed",
    "stopped": "stopped",
}
_UP = ("started", "connected", "reconnected")
_DOWN = ("disconnected", "stalled")


@dataclass(frozen=True, slots=True)
class SourceState:
    line: str
    camera: str
    source: str
    state: str  # a value of STATE_OF_EVENT
    since: datetime
    reason: str | None


def source_states(engine: Engine) -> list[SourceState]:
    """The state of every video source that recorded events, by line, camera and source."""
    video = SourceEvent.source.startswith(VIDEO_SOURCE_PREFIX, autoescape=True)
    latest = (
        select(func.max(SourceEvent.id))
        .where(video, SourceEvent.kind.in_(list(STATE_OF_EVENT)))
        .group_by(SourceEvent.line, SourceEvent.camera, SourceEvent.source)
    )
    columns = (SourceEvent.line, SourceEvent.camera, SourceEvent.source, SourceEvent.kind, SourceEvent.at, SourceEvent.message)
    query = select(*columns).where(SourceEvent.id.in_(latest)).order_by(SourceEvent.line, SourceEvent.camera, SourceEvent.source)
    states = []
    with engine.connect() as connection:
        for row in connection.execute(query):
            event = row._mapping
            since = event["at"]
            if event["kind"] in _DOWN:
                same_source = and_(
                    SourceEvent.line == event["line"], SourceEvent.camera == event["camera"], SourceEvent.source == event["source"]
                )
                last_up = select(func.coalesce(func.max(SourceEvent.id), 0)).where(same_source, SourceEvent.kind.in_(_UP)).scalar_subquery()
                since = connection.execute(
                    select(func.min(SourceEvent.at)).where(same_source, SourceEvent.kind.in_(_DOWN), SourceEvent.id > last_up)
                ).scalar_one()
            states.append(
                SourceState(event["line"], event["camera"], event["source"], STATE_OF_EVENT[event["kind"]], since, event["message"])
            )
    return states
