"""The time windows the live page offers, and how a window is queried in chunks.

A window covers whole trend buckets, from the bucket holding "now minus its length" up to now. It is
read as settled chunks (a few buckets each, old enough that no more rows land in them, so their
results can be cached for minutes) plus the recent rest (read again at every refresh). A refresh
thus reads at most a chunk and a minute of rows, however long the window and however busy the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

#: Seconds after a chunk's end from which it counts as settled. Rows carry the finish time of the
#: worker that wrote them; this leaves room for clocks a little apart and batches written late.
SETTLE_S = 60


@dataclass(frozen=True, slots=True)
class Window:
    """A window ending now: its name in the page, its length, its trend buckets and its query chunks.

    ``chunk_seconds`` is a multiple of ``bucket_seconds``, so no bucket spans two chunks, and both
    divide a day, so chunks and buckets line up from one day to the next.
    """

    key: str
    label: str
    duration: timedelta
    bucket_seconds: int
    chunk_seconds: int

    def start(self, now: datetime) -> datetime:
        """Start of the window's first bucket when it ends at ``now``.

        The window covers whole buckets: it reaches back between ``duration`` and ``duration`` plus
        one bucket, so that its trend has no half-filled first point.
        """
        return floor_time(now - self.duration, self.bucket_seconds)

    def plan(self, now: datetime) -> tuple[list[tuple[datetime, datetime]], datetime]:
        """How to read the window ending at ``now``: settled chunks ``[start, end)`` and where the recent rest begins.

        The recent rest runs from the returned instant without an upper bound, so the newest rows
        always count, even when "now" was rounded down for caching.
        """
        start = self.start(now)
        settled_until = max(start, floor_time(now - timedelta(seconds=SETTLE_S), self.chunk_seconds))
        chunks = []
        chunk_start = start
        while chunk_start < settled_until:
            chunk_end = min(floor_time(chunk_start, self.chunk_seconds) + timedelta(seconds=self.chunk_seconds), settled_until)
            chunks.append((chunk_start, chunk_end))
            chunk_start = chunk_end
        return chunks, settled_until


#: Windows of the live page, shortest first; an 8-hour shift is the usual unit on a line.
WINDOWS: tuple[Window, ...] = (
    # Minute buckets up to an hour: at a few frames/s, fewer frames per point make a defect rate noise.
    Window("15min", "last 15 min", timedelta(minutes=15), bucket_seconds=60, chunk_seconds=300),
    Window("hour", "last hour", timedelta(hours=1), bucket_seconds=60, chunk_seconds=600),
    Window("shift", "last shift (8 h)", timedelta(hours=8), bucket_seconds=600, chunk_seconds=3600),
    Window("day", "last day", timedelta(days=1), bucket_seconds=3600, chunk_seconds=3600),
)


def window_by_key(key: str) -> Window:
    """The window named ``key``; raises ValueError naming the known keys otherwise."""
    for window in WINDOWS:
        if window.key == key:
            return window
    raise ValueError(f"unknown window {key!r}; known: {', '.join(window.key for window in WINDOWS)}")


def floor_time(moment: datetime, seconds: float) -> datetime:
    """``moment`` rounded down to a multiple of ``seconds`` since the epoch (UTC).

    Pages floor "now" to their refresh period so that reruns within one period share cached results.
    """
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)
