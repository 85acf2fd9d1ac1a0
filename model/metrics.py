"""Evaluation metrics for anomaly scores and maps: pure functions on numpy arrays.

Conventions: a label or mask of True/1 means defective; a higher score means more anomalous; a
pixel or image counts as flagged at threshold ``t`` when its score is ``>= t``. Tied scores are
handled as scikit-learn does (a tie between a defective and a good sample counts one half).

The pixel metrics avoid sorting index arrays: they sort plain values (fast and without an int64
index per pixel) and count, by binary search, how many good pixels lie below each defective one.
Ranks are exact integers, so the results are exact, not binned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

# 8-connectivity for the defect regions of AUPRO, as in the MVTec AD evaluation.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

# Queries are searched in slices of this many values so the int64 rank arrays stay small.
_RANK_CHUNK = 1 << 22


def as_labels_and_scores(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert image-level inputs.

    Args:
        labels: (N,) bool, or integers 0/1; True/1 = defective.
        scores: (N,) real, finite.

    Returns:
        ``(labels, scores)`` as (N,) bool and (N,) float arrays (float32 kept, else float64).

    Raises:
        ValueError: naming the argument, for a wrong shape, length, dtype, value or a NaN.
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if scores.ndim != 1:
        raise ValueError(f"scores must be a 1-D array, got shape {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(
            f"labels and scores must have the same length, got {labels.shape[0]} and {scores.shape[0]}"
        )
    if labels.size == 0:
        raise ValueError("labels and scores are empty")
    return _as_bool(labels, "labels"), _as_finite_float(scores, "scores")


def as_masks_and_maps(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Check pixel-level inputs: one mask and one map per image, images of any size.

    Args:
        masks: list of (H_i, W_i) bool; True = defective pixel.
        maps: list of (H_i, W_i) real, finite anomaly maps, same sizes as ``masks``.

    Returns:
        ``(masks, maps)`` as lists of arrays; maps are float32 when all of them fit, else float64.

    Raises:
        ValueError: naming the argument and image index, for a wrong count, shape, dtype or a NaN.
    """
    if len(masks) != len(maps):
        raise ValueError(f"masks and maps must have the same length, got {len(masks)} and {len(maps)}")
    if len(masks) == 0:
        raise ValueError("masks and maps are empty")
    masks = [np.asarray(mask) for mask in masks]
    maps = [np.asarray(anomaly_map) for anomaly_map in maps]
    for index, (mask, anomaly_map) in enumerate(zip(masks, maps)):
        if mask.ndim != 2:
            raise ValueError(f"masks[{index}] must be a 2-D (H, W) array, got shape {mask.shape}")
        if mask.dtype != np.bool_:
            raise ValueError(f"masks[{index}] must be a boolean array, got dtype {mask.dtype}")
        if anomaly_map.shape != mask.shape:
            raise ValueError(
                f"maps[{index}] has shape {anomaly_map.shape} but masks[{index}] has shape {mask.shape}"
            )
    # float32 unless some map needs more precision: a float64 copy of 44M pixels costs 350 MB.
    map_dtype = np.result_type(np.float32, *(anomaly_map.dtype for anomaly_map in maps))
    maps = [
        _as_finite_float(anomaly_map, f"maps[{index}]", map_dtype) for index, anomaly_map in enumerate(maps)
    ]
    return masks, maps


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic, one point per distinct score.

    Args:
        labels: (N,) bool or 0/1; True/1 = defective. Both classes must be present.
        scores: (N,) real, finite.

    Returns:
        ``(fpr, tpr, thresholds)``, each (K + 1,) for K distinct scores: thresholds in decreasing
        order starting with +inf (nothing flagged, the point (0, 0)); point i is the rate of each
        class with score >= thresholds[i].
    """
    labels, scores = as_labels_and_scores(labels, scores)
    _require_both_classes(labels, "labels")
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    true_positives, false_positives, thresholds = _cumulative_counts(labels[order], sorted_scores)
    fpr = np.concatenate(([0.0], false_positives / false_positives[-1]))
    tpr = np.concatenate(([0.0], true_positives / true_positives[-1]))
    return fpr, tpr, np.concatenate(([np.inf], thresholds))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(defective score > good score) + half P(equal).

    Args:
        labels: (N,) bool or 0/1; True/1 = defective. Both classes must be present.
        scores: (N,) real, finite.
    """
    labels, scores = as_labels_and_scores(labels, scores)
    _require_both_classes(labels, "labels")
    return _mann_whitney_auc(scores[labels], scores[~labels])


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Image-level AUROC.

    Args:
        labels: (N,) bool or 0/1, one per image; True/1 = defective part.
        scores: (N,) real image scores.
    """
    return auroc(labels, scores)


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray]) -> float:
    """Pixel-level AUROC over all pixels of all images, exact.

    Args:
        masks: list of (H_i, W_i) bool; True = defective pixel. Some pixel of some image must be
            defective and some must be good.
        maps: list of (H_i, W_i) real anomaly maps, same sizes as ``masks``.
    """
    masks, maps = as_masks_and_maps(masks, maps)
    good = _gather(masks, maps, defective=False)
    defective = _gather(masks, maps, defective=True)
    if good.size == 0 or defective.size == 0:
        raise ValueError("masks must contain both defective (True) and good (False) pixels")
    return _mann_whitney_auc(defective, good)


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve (MVTec AD's AUPRO), exact.

    For each threshold, PRO is the mean over all defect regions (8-connected components of each
    mask) of the fraction of the region flagged, and FPR is the fraction of good pixels (outside
    every mask, over all images) flagged. The PRO-over-FPR curve is integrated by trapezoids from
    FPR 0 to ``fpr_limit`` (interpolated there) and divided by ``fpr_limit``, so a perfect map
    scores 1 and a constant map ``fpr_limit / 2``.

    Args:
        masks: list of (H_i, W_i) bool; True = defective pixel. At least one defect and one good
            pixel overall; images with an empty mask contribute only good pixels.
        maps: list of (H_i, W_i) real anomaly maps, same sizes as ``masks``.
        fpr_limit: upper FPR bound of the integral, in (0, 1].
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    masks, maps = as_masks_and_maps(masks, maps)
    good = _gather(masks, maps, defective=False)
    regions = [
        region for mask, anomaly_map in zip(masks, maps) for region in _region_scores(mask, anomaly_map)
    ]
    if good.size == 0 or not regions:
        raise ValueError("masks must contain both defective (True) and good (False) pixels")
    good.sort()
    n_good = good.size

    # Threshold at which the FPR passes fpr_limit: the k-th highest good score.
    k = min(max(int(np.ceil(fpr_limit * n_good)), 1), n_good)
    limit_score = good[n_good - k]
    good_below_limit = int(np.searchsorted(good, limit_score, side="left"))
    good_up_to_limit = int(np.searchsorted(good, limit_score, side="right"))

    # Only good pixels widen the curve: at a good score v the FPR rises by count(v) / n_good while
    # PRO goes from PRO(> v) to PRO(>= v), so the area below the limit is the sum over good pixels
    # v > limit_score of (PRO(> v) + PRO(>= v)) / (2 n_good). Swapping the sums, a defective pixel
    # of score p and weight 1 / (n_regions * region size) adds its weight times
    # #good in (limit_score, p) + #good equal to p / 2 = (#good < p + #good <= p) / 2 - good_up_to_limit.
    area = 0.0
    pro_above_limit = 0.0
    pro_at_or_above_limit = 0.0
    for region in regions:
        weight = 1.0 / (len(regions) * region.size)
        above = region[np.searchsorted(region, limit_score, side="right") :]
        at_limit = region.size - above.size - int(np.searchsorted(region, limit_score, side="left"))
        rank_sum = _rank_sum(good, above)
        area += weight * (rank_sum / 2 - good_up_to_limit * above.size)
        pro_above_limit += weight * above.size
        pro_at_or_above_limit += weight * (above.size + at_limit)
    area /= n_good

    # The segment at limit_score crosses fpr_limit: add the part of it up to there.
    fpr_above_limit = (n_good - good_up_to_limit) / n_good
    fpr_at_or_above_limit = (n_good - good_below_limit) / n_good
    width = fpr_limit - fpr_above_limit
    pro_at_fpr_limit = pro_above_limit + (pro_at_or_above_limit - pro_above_limit) * width / (
        fpr_at_or_above_limit - fpr_above_limit
    )
    area += width * (pro_above_limit + pro_at_fpr_limit) / 2
    return float(area / fpr_limit)


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    """Best F1 score over all thresholds (flagged = score >= threshold).

    Args:
        labels: (N,) bool or 0/1; True/1 = defective. At least one must be defective.
        scores: (N,) real, finite.
    """
    labels, scores = as_labels_and_scores(labels, scores)
    if not labels.any():
        raise ValueError("labels must contain at least one defective (True/1) sample for F1")
    order = np.argsort(scores, kind="stable")[::-1]
    true_positives, false_positives, _ = _cumulative_counts(labels[order], scores[order])
    # F1 = 2 TP / (2 TP + FP + FN) and TP + FN is the number of defective samples.
    f1 = 2 * true_positives / (true_positives + false_positives + true_positives[-1])
    return float(f1.max())


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """What a decision threshold does, flagging a sample when score > threshold as the model does.

    Args:
        labels: (N,) bool or 0/1; True/1 = defective. Both classes must occur.
        scores: (N,) real, finite.
        threshold: the decision threshold, in the scores' units.

    Returns:
        ``false_reject_rate``: share of good samples flagged; ``defect_recall``: share of
        defective samples flagged.
    """
    labels, scores = as_labels_and_scores(labels, scores)
    _require_both_classes(labels, "labels")
    flagged = scores > threshold
    return {"false_reject_rate": float(flagged[~labels].mean()), "defect_recall": float(flagged[labels].mean())}


def _as_bool(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype == np.bool_:
        return labels
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be bool or integer 0/1, got dtype {labels.dtype}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(labels)[:10].tolist()}")
    return labels.astype(bool)


def _as_finite_float(values: np.ndarray, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    if values.dtype == np.bool_ or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise ValueError(f"{name} must be a real numeric array, got dtype {values.dtype}")
    if dtype is None:
        dtype = np.result_type(np.float32, values.dtype)
    values = values.astype(dtype, copy=False)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return values


def _require_both_classes(labels: np.ndarray, name: str) -> None:
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        only = "defective (True/1)" if positives else "good (False/0)"
        raise ValueError(f"{name} must contain both classes, got only {only} samples")


def _cumulative_counts(
    sorted_labels: np.ndarray, sorted_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives flagged at each distinct score of scores sorted high to low."""
    # The last position of each run of equal scores: a threshold flags the whole run at once.
    run_ends = np.flatnonzero(np.diff(sorted_scores)) if sorted_scores.size > 1 else np.empty(0, np.intp)
    run_ends = np.append(run_ends, sorted_scores.size - 1)
    true_positives = np.cumsum(sorted_labels, dtype=np.int64)[run_ends]
    false_positives = run_ends + 1 - true_positives
    return true_positives, false_positives, sorted_scores[run_ends]


def _mann_whitney_auc(defective: np.ndarray, good: np.ndarray) -> float:
    """P(defective > good) + P(equal) / 2, counting ranks in the larger class sorted.

    Sorts both arrays in place: callers pass fresh copies, and 44M pixels need no second copy.
    """
    defective.sort()
    good.sort()
    pairs = 2 * defective.size * good.size
    if defective.size <= good.size:
        # Per defective score p: #good < p + #good <= p, i.e. twice the pairs it wins.
        return _rank_sum(good, defective) / pairs
    # Per good score v: #defective < v + #defective <= v, i.e. twice the pairs it wins.
    return 1.0 - _rank_sum(defective, good) / pairs


def _rank_sum(sorted_reference: np.ndarray, queries: np.ndarray) -> int:
    """Sum over queries of (#reference < q) + (#reference <= q); sorted queries search fastest."""
    total = 0
    for start in range(0, queries.size, _RANK_CHUNK):
        chunk = queries[start : start + _RANK_CHUNK]
        total += int(np.searchsorted(sorted_reference, chunk, side="left").sum())
        total += int(np.searchsorted(sorted_reference, chunk, side="right").sum())
    return total


def _gather(masks: list[np.ndarray], maps: list[np.ndarray], defective: bool) -> np.ndarray:
    """The scores of all defective (or all good) pixels of all images, in one new array."""
    defective_counts = [int(np.count_nonzero(mask)) for mask in masks]
    counts = defective_counts if defective else [
        mask.size - count for mask, count in zip(masks, defective_counts)
    ]
    gathered = np.empty(sum(counts), dtype=maps[0].dtype)
    start = 0
    for mask, anomaly_map, count in zip(masks, maps, counts):
        gathered[start : start + count] = anomaly_map[mask] if defective else anomaly_map[~mask]
        start += count
    return gathered


def _region_scores(mask: np.ndarray, anomaly_map: np.ndarray) -> list[np.ndarray]:
    """The sorted scores of each 8-connected defect region of one image."""
    region_ids, _ = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    regions = []
    for region_index, box in enumerate(ndimage.find_objects(region_ids), start=1):
        regions.append(np.sort(anomaly_map[box][region_ids[box] == region_index]))
    return regions
