"""From raw anomaly scores to a decision: threshold and normalised score.

The threshold is set from held-out good images so that a new good part scores above it with at
most the stated probability. Two bounds, and the higher is taken:

- the upper prediction bound of a normal fitted to the scores,
  mean + t_{n-1}(1 - rate) * std * sqrt(1 + 1/n). With a dozen held-out images an empirical 99%
  quantile would just be their maximum, and the plain fitted quantile mean + z * std would reject
  about twice the stated share (it ignores that mean and std are estimates); the prediction bound
  does not, when good scores are normal;
- the order statistic of split conformal prediction, the k-th smallest score with
  k = ceil((n + 1)(1 - rate)): a new good part exceeds it with probability at most `rate` whatever
  the scores' distribution. It exists only once n >= 1/rate - 1 (99 images at 1%). Good scores of a
  texture have a heavier right tail than a normal (measured in docs/design.md: the normal bound
  alone flagged 2.3% of unseen good parts at a stated 1%), which this bound holds against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import t as student_t

# The logistic that normalises scores maps the median good score to this value (0.5 is the threshold).
MEDIAN_GOOD_NORMALISED = 0.1
MIN_CALIBRATION_IMAGES = 10


@dataclass(frozen=True)
class Calibration:
    """Decision threshold on raw scores and the logistic that maps them to 0..1 (0.5 = threshold)."""

    threshold: float
    median_good: float
    false_reject_rate: float
    good_mean: float
    good_std: float
    n_images: int
    bound: str = "normal"  # which bound set the threshold: "normal" or "order_statistic"

    @property
    def logistic_scale(self) -> float:
        """Raw-score units per logit: puts the median good score at MEDIAN_GOOD_NORMALISED."""
        logit = math.log((1 - MEDIAN_GOOD_NORMALISED) / MEDIAN_GOOD_NORMALISED)
        return max(self.threshold - self.median_good, 1e-12) / logit

    def normalise(self, raw: np.ndarray | float) -> np.ndarray:
        """Raw scores (any shape) -> 0..1, exactly 0.5 at the threshold, monotonic."""
        z = (np.asarray(raw, dtype=np.float64) - self.threshold) / self.logistic_scale
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Calibration":
        return cls(**values)


def normal_prediction_bound(scores: np.ndarray, false_reject_rate: float) -> float:
    """Upper prediction bound for one new score, if scores are normal (see the module's text)."""
    mean = float(scores.mean())
    # A fitted spread smaller than the scores' own spacing would put the threshold inside the data.
    std = max(float(scores.std(ddof=1)), 1e-6 * max(abs(mean), 1e-6))
    n = scores.size
    return mean + float(student_t.ppf(1.0 - false_reject_rate, df=n - 1)) * std * math.sqrt(1.0 + 1.0 / n)


def order_statistic_bound(scores: np.ndarray, false_reject_rate: float) -> float | None:
    """The k-th smallest score, k = ceil((n+1)(1-rate)): exceeded by a new score with probability at
    most the rate, for any distribution; None while there are too few scores for the rate."""
    k = math.ceil((scores.size + 1) * (1.0 - false_reject_rate) - 1e-9)
    return float(np.sort(scores)[k - 1]) if k <= scores.size else None


def fit_calibration(good_scores: np.ndarray, false_reject_rate: float) -> Calibration:
    """good_scores (N,) raw scores of held-out good images -> Calibration at the given rate."""
    scores = np.asarray(good_scores, dtype=np.float64).ravel()
    if scores.size < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} held-out good images, got {scores.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("calibration scores contain NaN or infinity")
    if not 0.0 < false_reject_rate < 0.5:
        raise ValueError(f"false_reject_rate must be in (0, 0.5), got {false_reject_rate}")
    threshold, bound = normal_prediction_bound(scores, false_reject_rate), "normal"
    order_statistic = order_statistic_bound(scores, false_reject_rate)
    if order_statistic is not None and order_statistic > threshold:
        threshold, bound = order_statistic, "order_statistic"
    return Calibration(
        threshold=threshold,
        median_good=float(np.median(scores)),
        false_reject_rate=false_reject_rate,
        good_mean=float(scores.mean()),
        good_std=float(scores.std(ddof=1)),
        n_images=int(scores.size),
        bound=bound,
    )
