"""Drift rules on generated parts: alarms raised by a stable hour, and how soon injected changes raise one.

    .venv/bin/python bench/drift_rules.py --checkpoint MODEL.pt [--parts 3600] [--fps 1] [--raw-scores model|calibration]

The checkpoint must keep an image reference (trained by this lineguard); its input size is the parts'
size. Every part goes through worker.drift.DriftMonitor with the default rules, timed at `--fps`
frames per second of line time, with its raw score and verdict from the model (as the worker computes
them) or, with `--raw-scores calibration` (for a busy CPU), drawn from the calibration's normal
distribution of good scores (the image statistics are always the parts' own):
1. `--parts` stable good parts (default 3,600: an hour at 1 frame/s): alarms raised, and the largest
   median deviation per kind (the margin left below the raising level);
2. after 100 stable parts, 120 changed ones per change (exposure up and down, a moved camera, blur,
   a red lamp): frames until the first alarm and its kinds, and seconds of line time at 1 and 4 fps.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.checkpoint import load_checkpoint  # noqa: E402
from model.scoring import InspectionModel  # noqa: E402
from model.synthetic import good_part  # noqa: E402
from store.records import InspectionRecord  # noqa: E402
from worker.drift import RAISE_SPREADS, DriftMonitor  # noqa: E402

START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
BATCH = 16
CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exposure x1.35": lambda image: np.clip(image.astype(np.float32) * 1.35, 0, 255).astype(np.uint8),
    "exposure x0.7": lambda image: (image.astype(np.float32) * 0.7).astype(np.uint8),
    "camera moved 6%": lambda image: np.roll(image, int(0.06 * image.shape[1]), axis=1),
    "focus lost (blur sigma 2)": lambda image: cv2.GaussianBlur(image, (0, 0), 2),
    "red lamp (+25 red)": lambda image: np.clip(image.astype(np.int16) + np.array([25, 0, 0], dtype=np.int16), 0, 255).astype(np.uint8),
}


class Line:
    """Parts through the model and a drift monitor, on a clock of line time."""

    def __init__(self, model: InspectionModel, fps: float, drawn_scores: np.random.Generator | None) -> None:
        self.model = model
        self.drawn_scores = drawn_scores
        self.monitor = DriftMonitor()
        self.fps = fps
        self.frames = 0
        self.medians: dict[str, list[float]] = {}

    def run(self, images: list[np.ndarray]) -> list:
        changes = []
        for start in range(0, len(images), BATCH):
            batch = images[start : start + BATCH]
            records = []
            for image, (raw, flagged) in zip(batch, self._scores(batch)):
                frame_id = f"frame-{self.frames}"
                self.monitor.measure(frame_id, self.model, image)
                at = START + timedelta(seconds=self.frames / self.fps)
                records.append(InspectionRecord(
                    frame_id=frame_id, line="bench", camera="cam", source="bench", captured_at=at, enqueued_at=at,
                    started_at=at, finished_at=at, verdict="defect" if flagged else "good",
                    score=float(self.model.calibration.normalise(raw)), raw_score=raw, model_version=self.model.version,
                ))
                self.frames += 1
            changes += self.monitor.settle(records)
        return changes

    def _scores(self, batch: list[np.ndarray]) -> list[tuple[float, bool]]:
        """(raw score, flagged) per image: the model's, or drawn from the calibration's good scores."""
        calibration = self.model.calibration
        if self.drawn_scores is None:
            return [(result.raw_score, result.is_anomaly) for result in self.model.score_images(batch)]
        raws = self.drawn_scores.normal(calibration.good_mean, calibration.good_std, len(batch))
        return [(float(raw), bool(raw >= calibration.threshold)) for raw in raws]


def parts(size: tuple[int, int], count: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    height, width = size
    for _ in range(count):
        image = good_part(max(height, width), rng)
        yield image[:height, :width]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--parts", type=int, default=3600, help="stable parts (default 3600: an hour at 1 frame/s)")
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second of line time (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--raw-scores", choices=["model", "calibration"], default="model",
        help="raw scores from the model (default) or drawn from the calibration's good scores (fast)",
    )
    parser.add_argument("--max-memory-gb", type=float, default=12.0, help="address-space cap of this process")
    args = parser.parse_args()
    cap = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    model = load_checkpoint(args.checkpoint, device="cpu")
    if model.image_reference is None:
        print(f"{args.checkpoint} keeps no image reference: train it with this lineguard", file=sys.stderr)
        return 2
    size = model.recipe.input_shape
    rng = np.random.default_rng(args.seed)
    print(f"model {model.version}, parts {size[1]}x{size[0]}, rules: window 30, raise at {RAISE_SPREADS:g} spreads", flush=True)

    clock = time.monotonic()
    drawn = np.random.default_rng(args.seed + 1) if args.raw_scores == "calibration" else None
    print(f"raw scores: {'drawn from the calibration' if drawn is not None else 'the model'}", flush=True)
    stable = Line(model, args.fps, drawn)
    raised = stable.run(list(parts(size, args.parts, rng)))
    hours = args.parts / args.fps / 3600
    print(f"stable: {args.parts} parts ({hours:.2f} h at {args.fps:g} frames/s): {len(raised)} alarms"
          + (f" ({', '.join(f'{c.kind} at frame {c.at}' for c in raised)})" if raised else "")
          + f"  [{time.monotonic() - clock:.0f} s]", flush=True)
    windows = stable.monitor._windows  # noqa: SLF001 - the bench reads the monitor's state at the end
    for (_, _, kind), window in sorted(windows.items()):
        print(f"  {kind:13s} median of the last window {statistics.median(window):+.2f} spreads", flush=True)

    for name, change in CHANGES.items():
        line = Line(model, 1.0, drawn)
        line.run(list(parts(size, 100, rng)))
        changed = line.run([change(image) for image in parts(size, 120, rng)])
        if not changed:
            print(f"{name:28s}: no alarm within 120 changed parts", flush=True)
            continue
        first = min(changed, key=lambda c: c.at)
        frames = int((first.at - START).total_seconds()) - 100 + 1
        kinds = ", ".join(sorted({c.kind for c in changed if c.at == first.at}))
        print(f"{name:28s}: alarm after {frames} changed parts ({frames:.0f} s at 1 fps, {frames / 4:.1f} s at 4 fps): {kinds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
