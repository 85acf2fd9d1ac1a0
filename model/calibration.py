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

Scores can come with weights: how many of the good parts to be judged each one stands for, when
the sample was not drawn evenly (a line keeps the picture of every false alarm but of one passed
part in 50: each passed picture stands for 50 parts). Both bounds then use the weighted
distribution: the normal's mean and spread are weighted and its n is the effective sample size
(sum w)^2 / sum w^2; the order statistic is the lowest score whose weight above, plus an average
weight for the new part, is at most `rate` of the total (with equal weights, the k-th smallest).
Weights count only once there are enough scores for the order statistic: below, the normal bound
alone would judge a reweighted, skewed sample (simulated: a line's sample of every false alarm and
one passed part in 5, 70-90 scores, lognormal: 2.8% flagged at a stated 1%), so the scores count
one each, which for such a sample errs high (fewer false alarms than stated).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

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


def normal_prediction_bound(scores: np.ndarray, false_reject_rate: float, weights: np.ndarray | None = None) -> float:
    """Upper prediction bound for one new score, if scores are normal (see the module's text)."""
    from scipy.stats import t as student_t  # here, not with the module: half a second that workers never need

    weights = _weights(scores, weights)
    mean, std, n = _weighted_moments(scores, weights)
    # A fitted spread smaller than the scores' own spacing would put the threshold inside the data.
    std = max(std, 1e-6 * max(abs(mean), 1e-6))
    return mean + float(student_t.ppf(1.0 - false_reject_rate, df=max(n - 1.0, 1.0))) * std * math.sqrt(1.0 + 1.0 / n)


def order_statistic_bound(scores: np.ndarray, false_reject_rate: float, weights: np.ndarray | None = None) -> float | None:
    """The lowest score with at most `rate` of the weight above it, a new part counted with the
    average weight: with equal weights the k-th smallest, k = ceil((n+1)(1-rate)), exceeded by a new
    score with probability at most the rate for any distribution; None while there are too few
    scores for the rate."""
    weights = _weights(scores, weights)
    order = np.argsort(scores, kind="stable")
    ordered, ordered_weights = scores[order], weights[order]
    total = float(ordered_weights.sum())
    new_part = total / scores.size
    above = total - np.cumsum(ordered_weights)
    within = above + new_part <= false_reject_rate * (total + new_part) * (1.0 + 1e-9)
    return float(ordered[np.argmax(within)]) if within.any() else None


def fit_calibration(good_scores: np.ndarray, false_reject_rate: float, weights: np.ndarray | None = None) -> Calibration:
    """good_scores (N,) raw scores of held-out good images -> Calibration at the given rate;
    `weights` (N,): how many good parts each score stands for (None: one each; not used below the
    order statistic's minimum count)."""
    scores = np.asarray(good_scores, dtype=np.float64).ravel()
    if scores.size < MIN_CALIBRATION_IMAGES:
        raise ValueError(f"calibration needs at least {MIN_CALIBRATION_IMAGES} held-out good images, got {scores.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("calibration scores contain NaN or infinity")
    if not 0.0 < false_reject_rate < 0.5:
        raise ValueError(f"false_reject_rate must be in (0, 0.5), got {false_reject_rate}")
    weights = _weights(scores, weights)
    order_statistic = order_statistic_bound(scores, false_reject_rate, weights)
    if order_statistic is None:  # too few scores to weigh (see the module's text)
        weights = np.ones(scores.size)
    threshold, bound = normal_prediction_bound(scores, false_reject_rate, weights), "normal"
    if order_statistic is not None and order_statistic > threshold:
        threshold, bound = order_statistic, "order_statistic"
    mean, std, _ = _weighted_moments(scores, weights)
    return Calibration(
        threshold=threshold,
        median_good=_weighted_median(scores, weights),
        false_reject_rate=false_reject_rate,
        good_mean=mean,
        good_std=std,
        n_images=int(scores.size),
        bound=bound,
    )


def _weights(scores: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.ones(scores.size)
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if weights.shape != scores.shape or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError("calibration weights must be one positive number per score")
    return weights


def _weighted_moments(scores: np.ndarray, weights: np.ndarray) -> tuple[float, float, float]:
    """(mean, standard deviation, effective sample size); with equal weights the usual mean, the
    ddof=1 deviation and n."""
    if np.all(weights == weights[0]):
        return float(scores.mean()), float(scores.std(ddof=1)), float(scores.size)
    total, squares = float(weights.sum()), float((weights**2).sum())
    mean = float(np.average(scores, weights=weights))
    variance = float((weights * (scores - mean) ** 2).sum()) / (total - squares / total)
    return mean, math.sqrt(variance), total**2 / squares


def _weighted_median(scores: np.ndarray, weights: np.ndarray) -> float:
    if np.all(weights == weights[0]):
        return float(np.median(scores))
    order = np.argsort(scores, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(scores[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
