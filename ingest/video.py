"""Video source: a video file, a camera or a network stream, as frames at a capped rate.

Frames are grabbed from OpenCV and only those kept by the rate cap are decoded and encoded (JPEG,
once). A source that cannot be opened at the start fails at once with its reason (unless told to
wait). A live source that drops, or gives no frame for the stall timeout (frozen), is reported and
opened anew with exponential backoff up to a short cap, so it is read again within about a second of
its return; see ingest.camera for how stale buffered frames are kept out. A file's end is the
normal end of the run (or, with `loop`, the start of the next pass).

Frames cannot be read again, so each gets the camera's next sequence number and is written to the
stream ledger just before it is sent (see ingest.ledgers); a reconciliation pass at the start and
end of every run and every `reconcile_interval_s` counts as lost the frames that neither Redis nor
the store has any more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import cv2
from sqlalchemy import Engine
from tqdm import tqdm

from ingest.cycle import SourceRun
from ingest.camera import open_capture, why_unavailable
from ingest.errors import IngestError, SourceUnavailableError
from ingest.frames import Frame, check_stream_name, new_frame_id
from ingest.ledgers import StreamLedger
from ingest.publisher import Publisher
from store.records import next_stream_sequence

logger = logging.getLogger(__name__)

JPEG_QUALITY = 95
"""Quality of the one JPEG encoding a video frame goes through (high: the model sees it)."""

DEFAULT_STALL_TIMEOUT_S = 5.0
"""Seconds without a frame after which a live source counts as frozen and is opened anew."""

DEFAULT_RECONNECT_INITIAL_S = 0.25
"""First wait before reopening a live source that dropped (doubling up to the cap)."""

DEFAULT_RECONNECT_MAX_S = 1.0
"""Longest wait between reopening attempts: a camera that is back is read again within about this."""

STREAM_TIMEOUT_MS = 10_000
"""OpenCV's open and read timeout for video files."""

BLOCKED_AFTER_S = 0.2
"""A publish that takes longer than this held a live source up: its frames meanwhile are counted missed."""

RATE_TOLERANCE_S = 1e-3
"""Slack in the rate cap, so a frame whose timestamp rounds just below its due time is kept."""

VideoKind = Literal["file", "camera", "stream"]
"""What a video source is: a file ends; a camera or stream is live and is reopened when it drops."""


@dataclass
class VideoStats:
    """What one `VideoSource.run` did."""

    frames_read: int = 0
    """Frames grabbed from the source."""
    published: int = 0
    """Frames encoded and handed to the publisher."""
    skipped_by_fps_cap: int = 0
    """Frames grabbed but not decoded, to keep to the rate cap."""
    undecodable: int = 0
    """Frames grabbed that OpenCV could not decode (logged)."""
    reconnects: int = 0
    """Times a dropped or unopened source was opened again."""
    lost: int = 0
    """Frames sent (by this run or an earlier one) that neither Redis nor the store has any more."""
    missed: int = 0
    """Frames a live source produced while publishing blocked, never grabbed (estimated)."""
    unsent: int = 0
    """Frames read but not sent when a stop came at a full queue (counted as dropped)."""

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.frames_read} frames read, {self.published} published, "
            f"{self.skipped_by_fps_cap} skipped by the fps cap, {self.undecodable} undecodable, "
            f"{self.reconnects} reconnects, {self.lost} lost in the queue, "
            f"{self.missed} missed while publishing blocked, {self.unsent} unsent at a stop"
        )


class _RateCap:
    """Keeps frames at most `fps` times a second by their timestamps (seconds, any origin)."""

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._due: float | None = None

    def keep(self, timestamp: float) -> bool:
        """Return whether the frame at `timestamp` is kept; timestamps must not decrease."""
        if self._due is not None and timestamp < self._due - RATE_TOLERANCE_S:
            return False
        if self._due is None or timestamp >= self._due + self._period:
            self._due = timestamp + self._period  # first frame, or fell behind: restart the schedule
        else:
            self._due += self._period  # stay on the schedule, so jitter does not lower the rate
        return True


def _parse_target(source: str | int) -> tuple[str | int, VideoKind]:
    """Return what to give cv2.VideoCapture for `source`, and the kind of source it is."""
    if isinstance(source, int) or source.isdigit():
        return int(source), "camera"
    if "://" in source:
        return source, "stream"
    return str(Path(source).expanduser().resolve()), "file"


def _redact(target: str | int) -> str:
    """Return `target` fit to show and store: a URL's password is replaced by '***'."""
    if isinstance(target, int):
        return f"camera {target}"
    parts = urlsplit(target)
    if parts.password is None:
        return target
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class VideoSource:
    """Frames of one video file, camera or stream, for one line and camera."""

    def __init__(
        self,
        source: str | int,
        line: str,
        camera: str,
        *,
        engine: Engine,
        fps_cap: float | None = None,
        reconnect_initial_s: float = DEFAULT_RECONNECT_INITIAL_S,
        reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S,
        max_reconnects: int | None = None,
        loop: bool = False,
        reconcile_interval_s: float = 10.0,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        wait: bool = False,
    ) -> None:
        """Describe the source; nothing is opened until `run`.

        Args:
            source: a video file path, a camera index (int or digits, e.g. "0"), or a URL
                (rtsp://, http://, ...).
            line: production line of every frame.
            camera: camera of every frame.
            engine: store engine where source events are recorded.
            fps_cap: keep at most this many frames per second (by the video's own timestamps
                for a file, by the clock for a live source); None keeps every frame.
            reconnect_initial_s: first wait before reopening a source that failed.
            reconnect_max_s: longest wait between reopening attempts (the wait doubles).
            max_reconnects: give up after this many failed attempts in a row; None never does.
            loop: for a file, start again at its end instead of stopping.
            reconcile_interval_s: time between reconciliation passes of the stream ledger.
            stall_timeout_s: a live source that gives no frame for this long is frozen: reported,
                and opened anew (nothing it buffered before is published later).
            wait: a source that cannot be opened at the start is waited for; without it, the run
                fails at once with the reason (SourceUnavailableError).
        """
        self._target, self.kind = _parse_target(source)
        if fps_cap is not None and fps_cap <= 0:
            raise ValueError(f"fps_cap must be > 0 or None, got {fps_cap}")
        if reconnect_initial_s <= 0 or reconnect_max_s < reconnect_initial_s:
            raise ValueError(
                f"need 0 < reconnect_initial_s <= reconnect_max_s, got {reconnect_initial_s} and {reconnect_max_s}"
            )
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or None, got {max_reconnects}")
        if stall_timeout_s <= 0:
            raise ValueError(f"stall_timeout_s must be > 0, got {stall_timeout_s}")
        if reconcile_interval_s <= 0:
            raise ValueError(f"reconcile_interval_s must be > 0, got {reconcile_interval_s}")
        if loop and self.kind != "file":
            raise ValueError(f"loop applies to video files only, not to {self.kind} source {_redact(self._target)!r}")
        self.line = check_stream_name("line", line)
        self.camera = check_stream_name("camera", camera)
        self.source = f"video:{_redact(self._target)}"
        """Source label carried by every frame and source event (passwords redacted)."""
        self._engine = engine
        self._fps_cap = fps_cap
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = reconnect_max_s
        self._max_reconnects = max_reconnects
        self._loop = loop
        self._reconcile_interval_s = reconcile_interval_s
        self._run: SourceRun | None = None
        self._stall_timeout_s = stall_timeout_s
        self._wait = wait
        self._down_at: float | None = None  # monotonic time frames stopped, while the source is down
        self._sequence = 0
        self._nominal_fps: float | None = None

    def run(
        self,
        publisher: Publisher,
        *,
        stop_event: threading.Event | None = None,
        progress: bool = False,
    ) -> VideoStats:
        """Publish frames until the file ends (unless looping), `stop_event` is set, or a live
        source cannot be reopened within `max_reconnects` (SourceUnavailableError).

        Flushes `publisher` before returning; frames a stop leaves unsent at a full queue are
        counted as dropped (a camera cannot give them again).
        """
        run = SourceRun(
            self._engine, self.line, self.camera, self.source, stop_event=stop_event, reconcile_interval_s=self._reconcile_interval_s
        )
        self._run = run
        stats = VideoStats()
        ledger = StreamLedger(self._engine, self.line, self.camera, self.source, run.waiters)
        capture: cv2.VideoCapture | None = None
        try:
            with run.running(
                publisher,
                ledger,
                reconcile=lambda: self._count_lost(ledger, publisher, stats),
                started=f"{self.kind} source, fps cap {self._fps_cap or 'none'}",
                summary=stats.summary,
                on_unsent=lambda frames: self._count_unsent(frames, publisher, stats),
            ):
                self._sequence = run.waiters.database.call(
                    lambda: next_stream_sequence(self._engine, self.line, self.camera), "reading the camera's sequence"
                )
                capture = self._open()
                if capture is None:
                    reason = why_unavailable(self._target)
                    if not self._wait:
                        raise SourceUnavailableError(f"{self.source} cannot be opened: {reason} (--wait waits for it)")
                    self._record("disconnected", f"could not open the source: {reason}; waiting for it")
                    capture = self._reopen(publisher, run.stop, stats)
                else:
                    self._record("connected", "streaming" if self.kind != "file" else "reading")
                capture = self._read_frames(capture, publisher, stats, progress)
        finally:
            if capture is not None:
                capture.release()
        return stats

    def _read_frames(
        self, capture: cv2.VideoCapture | None, publisher: Publisher, stats: VideoStats, progress: bool
    ) -> cv2.VideoCapture | None:
        """Grab, read and publish frames until the source ends or the run stops; returns the capture still open."""
        run = self._current_run()
        is_counted = capture is not None and self.kind == "file"
        total = (int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None) if is_counted else None
        with tqdm(desc=f"{self.line}/{self.camera}", total=total, unit="frame", disable=not progress) as bar:
            rate = _RateCap(self._fps_cap)
            position = 0
            while capture is not None and not run.stopped:
                run.reconcile_if_due()
                asked = time.monotonic()
                if not capture.grab():
                    capture.release()
                    waited_s = time.monotonic() - asked
                    capture = self._after_read_failure(publisher, run.stop, stats, position, waited_s)
                    rate, position = _RateCap(self._fps_cap), 0
                    continue
                captured_at = datetime.now(timezone.utc)
                if self._down_at is not None:
                    self._frames_again(stats)
                frame_position = position
                position += 1
                stats.frames_read += 1
                bar.update(1)
                if not rate.keep(self._timestamp(capture)):
                    stats.skipped_by_fps_cap += 1
                    publisher.poll()
                    continue
                self._publish(capture, publisher, stats, captured_at, frame_position)
        return capture

    def _count_lost(self, ledger: StreamLedger, publisher: Publisher, stats: VideoStats) -> None:
        """One reconciliation pass of the camera's ledger; lost frames are logged and recorded."""
        lost = ledger.settle_lost(publisher.redis)
        if lost:
            stats.lost += lost
            logger.warning("%s: %d sent frames were lost in the queue (neither in Redis nor in the store)", self.source, lost)
            self._record("lost", f"{lost} sent frames were lost in the queue (neither in Redis nor in the store); counted per camera")

    def _count_unsent(self, frames: Sequence[Frame], publisher: Publisher, stats: VideoStats) -> None:
        """Frames a stop left unsent at a full queue: dropped, and counted as such."""
        if frames:
            publisher.drop(frames)
            stats.unsent += len(frames)
            self._record("dropped", f"{len(frames)} frames not sent: stopped while the queue was full")

    def _missed_while_blocked(self, blocked_s: float, stats: VideoStats) -> None:
        """Count the frames a live camera went on producing while publishing blocked (a full queue under
        "block", an outage): estimated from the time blocked and the rate kept, as nobody grabbed them."""
        if self.kind == "file" or blocked_s <= BLOCKED_AFTER_S:
            return
        rate = self._fps_cap or self._nominal_fps
        missed = int(blocked_s * rate) if rate else 0
        stats.missed += missed
        message = f"publishing blocked for {blocked_s:.1f} s: about {missed} frames not grabbed" if rate else (
            f"publishing blocked for {blocked_s:.1f} s; frames not grabbed meanwhile (the source's rate is unknown)"
        )
        logger.warning("%s: %s", self.source, message)
        self._record("missed", message)

    def _open(self) -> cv2.VideoCapture | None:
        """Open the source; None when OpenCV cannot (`ingest.camera.why_unavailable` says why)."""
        live = self.kind == "stream"
        capture = open_capture(self._target, live, self._stall_timeout_s if live else STREAM_TIMEOUT_MS / 1000)
        if capture is not None:
            self._nominal_fps = capture.get(cv2.CAP_PROP_FPS) or None
        return capture

    def _after_read_failure(
        self, publisher: Publisher, stop: threading.Event, stats: VideoStats, frames_in_pass: int, waited_s: float
    ) -> cv2.VideoCapture | None:
        """The capture to go on with after a failed read (that waited `waited_s` for a frame): None
        at a file's end, the file again when looping, the live source reconnected (None if `stop`
        is set meanwhile). A live read that ran into the stall timeout is reported as a freeze."""
        if self.kind == "file":
            if not self._loop or frames_in_pass == 0:
                return None  # the end of the file; one without frames cannot loop
            reopened = self._open()
            return reopened if reopened is not None else self._reopen(publisher, stop, stats)
        if self._down_at is None:  # told once per outage: a frozen camera reopens and freezes again
            if waited_s >= 0.9 * self._stall_timeout_s:
                kind, reason = "stalled", f"no frame for {waited_s:.1f} s (stall timeout {self._stall_timeout_s:g} s): the stream is frozen"
            else:
                kind, reason = "disconnected", "the stream ended or its connection dropped"
            logger.warning("%s: %s; reconnecting", self.source, reason)
            self._record(kind, reason)
            self._down_at = time.monotonic() - waited_s
        return self._reopen(publisher, stop, stats)

    def _frames_again(self, stats: VideoStats) -> None:
        """The first frame after the source was down: the outage is over."""
        assert self._down_at is not None
        message = f"frames again after {time.monotonic() - self._down_at:.1f} s without"
        self._down_at = None
        stats.reconnects += 1
        logger.info("%s: %s", self.source, message)
        self._record("reconnected", message)

    def _reopen(self, publisher: Publisher, stop: threading.Event, stats: VideoStats) -> cv2.VideoCapture | None:
        """Reopen the source with exponential backoff; None when `stop` is set meanwhile.

        Each failed attempt is logged and recorded; after `max_reconnects` failures in a row this
        raises SourceUnavailableError.
        """
        delay = self._reconnect_initial_s
        attempt = 0
        if self._down_at is None:
            self._down_at = time.monotonic()
        while self._max_reconnects is None or attempt < self._max_reconnects:
            # Waiting through the publisher flushes frames read before the drop.
            if publisher.idle(delay, stop):
                return None
            attempt += 1
            capture = self._open()
            if capture is not None:
                return capture  # "reconnected" once a frame comes (`_frames_again`): a frozen camera opens too
            delay = min(2 * delay, self._reconnect_max_s)
            message = f"reconnect attempt {attempt} failed; next in {delay:g} s"
            logger.warning("%s: %s", self.source, message)
            self._record("disconnected", message)
        raise SourceUnavailableError(
            f"video source {self.source!r} could not be opened after {attempt} reconnect attempts"
        )

    def _timestamp(self, capture: cv2.VideoCapture) -> float:
        """Seconds of the frame just grabbed: the video's own time for a file, the clock when live."""
        if self.kind == "file":
            return capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        return time.monotonic()

    def _publish(
        self, capture: cv2.VideoCapture, publisher: Publisher, stats: VideoStats, captured_at: datetime, position: int
    ) -> None:
        """Decode the grabbed frame, encode it as JPEG once, and publish it."""
        decoded, image = capture.retrieve()
        if not decoded or image is None:
            logger.warning("%s: frame %d could not be decoded; skipped", self.source, position)
            stats.undecodable += 1
            return
        encoded_ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not encoded_ok:
            raise IngestError(f"{self.source}: OpenCV could not encode frame {position} of shape {image.shape} as JPEG")
        asked_at = time.monotonic()
        publisher.publish(
            Frame(
                frame_id=new_frame_id(),
                line=self.line,
                camera=self.camera,
                source=self.source,
                captured_at=captured_at,
                data=encoded.tobytes(),
                origin=f"frame {position}" if self.kind == "file" else None,
                sequence=self._sequence,
            )
        )
        self._sequence += 1
        stats.published += 1
        self._missed_while_blocked(time.monotonic() - asked_at, stats)

    def _current_run(self) -> SourceRun:
        if self._run is None:
            raise RuntimeError("VideoSource: frames and source events belong to a run; call run()")
        return self._run

    def _record(self, kind: str, message: str) -> None:
        """Record a source event of this video source in the store (waiting for the database if it is away)."""
        self._current_run().record(kind, message)
