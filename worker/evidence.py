"""The pictures kept beside an inspection row: the frame and its heatmap overlay.

Every flagged frame keeps both, so a reviewer sees what the model saw; of the good frames only a
sample does: one in `every` of each camera's (`GoodSample`), so that a camera that sends few parts
is sampled as often as a busy one, for retraining and comparisons. Keys read
``<line>/<camera>/<capture date>/<frame id>.image.jpg``: a retried batch overwrites the same keys.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import cv2
import numpy as np

from model.report import overlay_heatmap
from model.scoring import ImageScore, InspectionModel
from store.artifacts import ArtifactStore, key_part
from store.errors import ArtifactError

#: JPEG quality of stored frames and overlays: fine scratches stay visible to a reviewer.
JPEG_QUALITY = 92


class GoodSample:
    """Which good frames keep their pictures: one in `every` of each (line, camera)'s good frames,
    counted by this process from its first (0 keeps none). Workers count apart, so together they
    keep one in `every` of each camera's good frames too; a retried batch may keep other frames."""

    def __init__(self, every: int) -> None:
        if every < 0:
            raise ValueError(f"every must be >= 0 (0 keeps no good frames), got {every}")
        self.every = every
        self._seen: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def keeps(self, line: str, camera: str) -> bool:
        """Count one more good frame of `camera` on `line`; whether it is one to keep."""
        if self.every == 0:
            return False
        with self._lock:
            seen = self._seen.get((line, camera), 0)
            self._seen[(line, camera)] = seen + 1
        return seen % self.every == 0


def evidence_keys(line: str, camera: str, captured_at: datetime, frame_id: str) -> tuple[str, str]:
    """(image key, heatmap key) of a frame; the same frame always gets the same keys."""
    folder = "/".join(
        (key_part(line), key_part(camera), captured_at.astimezone(UTC).strftime("%Y-%m-%d"))
    )
    stem = f"{folder}/{key_part(frame_id)}"
    return f"{stem}.image.jpg", f"{stem}.heatmap.jpg"


def save_evidence(
    artifacts: ArtifactStore,
    keys: tuple[str, str],
    image: np.ndarray,
    result: ImageScore,
    model: InspectionModel,
) -> tuple[str, str]:
    """Write the frame and its heatmap overlay under `keys`; returns the keys.

    Args:
        artifacts: the store to write to.
        keys: (image key, heatmap key), from `evidence_keys`.
        image: (H,W,3) uint8 RGB frame as scored.
        result: its score; `anomaly_map` (H,W) is drawn on a 0..1 scale where 0.5 is the threshold.
        model: the model that scored it (its calibration scales the map).
    """
    overlay = overlay_heatmap(image, model.calibration.normalise(result.anomaly_map), 0.0, 1.0)
    image_key, heatmap_key = keys
    artifacts.put(image_key, _jpeg(image, image_key))
    artifacts.put(heatmap_key, _jpeg(overlay, heatmap_key))
    return image_key, heatmap_key


def _jpeg(rgb: np.ndarray, key: str) -> bytes:
    encoded_ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not encoded_ok:
        raise ArtifactError(f"OpenCV could not encode artifact {key} ({rgb.shape}) as JPEG")
    return encoded.tobytes()
