"""Drift alarms: per line and camera, a sustained shift of the frames against what the model knows.

Rules (defaults chosen by ``bench/drift_rules.py``; see docs/design.md, "Drift"):
- each scored frame gives a deviation per kind, in spreads of the reference: its image statistics
  against the training images' (model.image_stats: brightness, contrast, sharpness, red and blue
  balance, offset), and for a passed part its raw score against the calibration's good scores;
- a kind's alarm is raised when the median deviation of the camera's last `WINDOW_FRAMES` frames
  (at least `MIN_FRAMES` of them) is `RAISE_SPREADS` or more away from 0, and cleared when it comes
  back within `CLEAR_SPREADS`. The median needs more than half the window shifted: one odd part or
  a burst of defects does not raise it; a camera that moved or a lamp that changed does.

Each worker watches the frames it scores (with several workers, each sees a share of every camera,
enough for a median); the store keeps one alarm per line, camera and kind (store.alarms), and the
change is told as a source event and, with a sink configured, on ``<prefix>/<line>/alarm``.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import Engine

from model.calibration import Calibration
from model.image_stats import STAT_NAMES
from model.scoring import InspectionModel
from store.alarms import clear_alarm, raise_alarm
from store.outbox import OutboxEntry
from store.records import InspectionRecord
from wire.verdicts import ALARM_CLEARED, ALARM_RAISED, AlarmMessage, encode_message, iso

#: Frames per camera whose median deviation is judged.
WINDOW_FRAMES = 30
#: Frames a camera needs in its window before an alarm can be raised.
MIN_FRAMES = 20
#: Median deviation, in reference spreads, that raises an alarm.
RAISE_SPREADS = 3.0
#: Median deviation within which a raised alarm clears.
CLEAR_SPREADS = 1.5
#: The raw score's kind of alarm; the others are model.image_stats.STAT_NAMES.
RAW_SCORE = "raw_score"
#: Verdict of a passed part, whose raw score is compared with the good parts' (worker.jobs.GOOD_VERDICT).
_PASSED = "good"


@dataclass(frozen=True)
class AlarmChange:
    """An alarm to raise or clear for a line and camera."""

    line: str
    camera: str
    kind: str
    raised: bool
    at: datetime
    reason: str


class DriftMonitor:
    """The recent deviations of each camera this worker scored, and the alarms it sees raised."""

    def __init__(
        self,
        window_frames: int = WINDOW_FRAMES,
        min_frames: int = MIN_FRAMES,
        raise_spreads: float = RAISE_SPREADS,
        clear_spreads: float = CLEAR_SPREADS,
    ) -> None:
        if not 1 <= min_frames <= window_frames:
            raise ValueError(f"need 1 <= min_frames <= window_frames, got {min_frames} and {window_frames}")
        if not 0 < clear_spreads < raise_spreads:
            raise ValueError(f"need 0 < clear_spreads < raise_spreads, got {clear_spreads} and {raise_spreads}")
        self._window_frames = window_frames
        self._min_frames = min_frames
        self._raise = raise_spreads
        self._clear = clear_spreads
        self._windows: dict[tuple[str, str, str], deque[float]] = {}
        self._raised: set[tuple[str, str, str]] = set()
        self._measured: dict[str, tuple[dict[str, float], Calibration | None]] = {}

    def measure(self, frame_id: str, model: InspectionModel, image: np.ndarray) -> None:
        """Note a scored frame's image deviations (until its row is written: `settle`)."""
        reference = model.image_reference
        deviations = reference.deviations(model.in_region(image)) if reference is not None else {}
        self._measured[frame_id] = (deviations, model.calibration)

    def settle(self, records: Sequence[InspectionRecord]) -> list[AlarmChange]:
        """Add the written rows' deviations to their cameras' windows; the alarms to raise or clear."""
        changes = []
        for record in records:
            measured = self._measured.pop(record.frame_id, None)
            if measured is None:
                continue  # an error row, or a frame recorded before
            deviations, calibration = measured
            if record.verdict == _PASSED and record.raw_score is not None and calibration is not None:
                deviations = {**deviations, RAW_SCORE: (record.raw_score - calibration.good_mean) / max(calibration.good_std, 1e-12)}
            for kind, deviation in deviations.items():
                change = self._observe(record.line, record.camera, kind, deviation, record.finished_at)
                if change is not None:
                    changes.append(change)
        self._measured.clear()
        return changes

    def _observe(self, line: str, camera: str, kind: str, deviation: float, at: datetime) -> AlarmChange | None:
        key = (line, camera, kind)
        window = self._windows.setdefault(key, deque(maxlen=self._window_frames))
        window.append(deviation)
        if len(window) < self._min_frames:
            return None
        median = statistics.median(window)
        shown = f"median {median:+.1f} spreads from {_REFERENCE[kind]} over the camera's last {len(window)} frames"
        if key not in self._raised and abs(median) >= self._raise:
            self._raised.add(key)
            return AlarmChange(line, camera, kind, True, at, f"{kind} shifted: {shown} (alarm at {self._raise:g})")
        if key in self._raised and abs(median) < self._clear:
            self._raised.discard(key)
            return AlarmChange(line, camera, kind, False, at, f"{kind} back: {shown} (clears within {self._clear:g})")
        return None


_REFERENCE: dict[str, str] = {RAW_SCORE: "the calibration's good parts"} | {name: "the training images" for name in STAT_NAMES}


def record_alarm_changes(engine: Engine, changes: Sequence[AlarmChange], topic_prefix: str | None) -> None:
    """Raise or clear each alarm in the store, with its source event and (with a prefix) its MQTT message."""
    for change in changes:
        message = AlarmMessage(
            alarm=change.kind,
            line=change.line,
            camera=change.camera,
            state=ALARM_RAISED if change.raised else ALARM_CLEARED,
            since=iso(change.at),
            reason=change.reason,
        )
        outbox = [] if topic_prefix is None else [
            OutboxEntry(message.key, change.line, change.camera, message.topic(topic_prefix), encode_message(message))
        ]
        update = raise_alarm if change.raised else clear_alarm
        update(engine, change.line, change.camera, change.kind, change.at, change.reason, outbox)
