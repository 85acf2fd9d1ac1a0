"""Tests of model.metrics (hand cases, scikit-learn, a slow AUPRO reference) and model.report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from model import metrics, report

SEEDS = range(5)


# --- helpers ---------------------------------------------------------------------------------


def random_masks_and_maps(
    seed: int, quantize: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Blob-shaped defects on images of different sizes, one image without any; noisy maps."""
    rng = np.random.default_rng(seed)
    masks, maps = [], []
    for index, shape in enumerate([(40, 50), (32, 32), (48, 40), (30, 45)]):
        blobs = ndimage.gaussian_filter(rng.normal(size=shape), 3)
        mask = blobs > np.quantile(blobs, 0.9) if index != 1 else np.zeros(shape, dtype=bool)
        anomaly_map = ndimage.gaussian_filter(rng.normal(size=shape), 1) + mask * rng.uniform(0, 1.5, shape)
        if quantize:
            anomaly_map = np.round(anomaly_map * 4) / 4
        masks.append(mask)
        maps.append(anomaly_map)
    return masks, maps


def flat(arrays: list[np.ndarray]) -> np.ndarray:
    """All values of all arrays in one 1-D array."""
    return np.concatenate([array.ravel() for array in arrays])


def truncated_trapezoid(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Area under the polyline (x, y), x non-decreasing, from x[0] to ``limit``, over ``limit``."""
    area = 0.0
    for x0, x1, y0, y1 in zip(x[:-1], x[1:], y[:-1], y[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def reference_aupro(
    masks: list[np.ndarray], maps: list[np.ndarray], fpr_limit: float, thresholds: np.ndarray
) -> float:
    """AUPRO the slow way: one labelling and one pass over all images per threshold."""
    regions = []
    for index, mask in enumerate(masks):
        region_ids, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, region_ids == region) for region in range(1, count + 1)]
    n_good = sum(int((~mask).sum()) for mask in masks)
    fprs, pros = [0.0], [0.0]
    for threshold in np.sort(thresholds)[::-1]:
        flagged = [anomaly_map >= threshold for anomaly_map in maps]
        fprs.append(sum(int((hit & ~mask).sum()) for hit, mask in zip(flagged, masks)) / n_good)
        pros.append(np.mean([flagged[index][region].mean() for index, region in regions]))
    return truncated_trapezoid(np.array(fprs), np.array(pros), fpr_limit)


def brute_force_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    best = 0.0
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        true_positives = np.sum(flagged & labels)
        precision = true_positives / flagged.sum()
        recall = true_positives / labels.sum()
        if true_positives:
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def two_square_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 20x20 image with a 2x2 and a 4x4 defect far apart: (mask, small square, large square)."""
    small = np.zeros((20, 20), dtype=bool)
    small[2:4, 2:4] = True
    large = np.zeros((20, 20), dtype=bool)
    large[10:14, 10:14] = True
    return small | large, small, large


# --- image-level metrics ---------------------------------------------------------------------


def test_auroc_hand_cases() -> None:
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.auroc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    # Defective 0.35 beats 0.1 only, defective 0.8 beats both: 3 of 4 pairs.
    assert metrics.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # The tie between defective 0.5 and good 0.5 counts one half: 3.5 of 4 pairs.
    assert metrics.auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.8]) == pytest.approx(0.875)
    assert metrics.auroc(np.array([True, False, True]), np.full(3, 7.0)) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Mostly good, mostly defective and with heavy ties, so both counting directions are used.
    for defect_rate, decimals in ((0.2, 6), (0.8, 6), (0.5, 0)):
        labels = rng.random(300) < defect_rate
        scores = np.round(rng.normal(size=300) + labels, decimals)
        assert metrics.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert metrics.image_auroc(labels.astype(int), scores) == metrics.auroc(labels, scores)


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_agrees_with_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.normal(size=200) + labels, 1)
    fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
    expected = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected[0])
    np.testing.assert_allclose(tpr, expected[1])
    np.testing.assert_array_equal(thresholds, expected[2])
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auroc(labels, scores))


def test_f1_max_hand_case() -> None:
    # Thresholds 0.9, 0.8, 0.1 give F1 2/3, 1/2 and 4/5.
    assert metrics.f1_max([1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.8)


@pytest.mark.parametrize("seed", SEEDS)
def test_f1_max_agrees_with_brute_force_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.random(150) < 0.3
    scores = np.round(rng.normal(size=150) + labels, 1)
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore"):
        sklearn_best = np.nanmax(2 * precision * recall / (precision + recall))
    value = metrics.f1_max(labels, scores)
    assert value == pytest.approx(brute_force_f1_max(labels, scores))
    assert value == pytest.approx(sklearn_best)


# --- pixel-level metrics ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("quantize", [False, True])
def test_pixel_auroc_agrees_with_sklearn(seed: int, quantize: bool) -> None:
    masks, maps = random_masks_and_maps(seed, quantize)
    expected = roc_auc_score(flat(masks), flat(maps))
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)
    maps32 = [anomaly_map.astype(np.float32) for anomaly_map in maps]
    assert metrics.pixel_auroc(masks, maps32) == pytest.approx(expected, abs=1e-6)


def test_pixel_auroc_with_more_defective_than_good_pixels() -> None:
    rng = np.random.default_rng(7)
    masks = [rng.random((30, 20)) < 0.9, rng.random((10, 10)) < 0.9]
    maps = [rng.normal(size=mask.shape) + mask for mask in masks]
    expected = roc_auc_score(flat(masks), flat(maps))
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-12)


def test_aupro_of_a_map_equal_to_the_mask_is_one() -> None:
    masks, _ = random_masks_and_maps(0, quantize=False)
    maps = [mask.astype(np.float32) for mask in masks]
    assert metrics.aupro(masks, maps) == pytest.approx(1.0)


def test_aupro_averages_regions_not_pixels() -> None:
    mask, small, large = two_square_case()
    # The small square is found before any good pixel, the large one only after all of them:
    # PRO is 1/2 over the whole FPR range although only 4 of 20 defect pixels are found.
    anomaly_map = np.where(small, 1.0, np.where(large, 0.0, 0.5))
    assert metrics.aupro([mask], [anomaly_map]) == pytest.approx(0.5)


def test_aupro_joins_diagonal_neighbours_into_one_region() -> None:
    mask = np.zeros((12, 12), dtype=bool)
    mask[2:4, 2:4] = True  # 4 pixels
    mask[4:8, 4:8] = True  # 16 pixels, touching the first only at a corner
    anomaly_map = np.full(mask.shape, 0.5)
    anomaly_map[2:4, 2:4] = 1.0
    anomaly_map[4:8, 4:8] = 0.0
    # One 8-connected region of 20 pixels, 4 of them found first: PRO 0.2 (0.5 if split in two).
    assert metrics.aupro([mask], [anomaly_map]) == pytest.approx(0.2)


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_aupro_of_a_constant_map(fpr_limit: float) -> None:
    mask, _, _ = two_square_case()
    # One threshold flags everything: the curve is the diagonal, whose area up to L is L^2 / 2.
    masks = [mask, np.zeros((5, 7), dtype=bool)]
    value = metrics.aupro(masks, [np.full(mask.shape, 3.0), np.full((5, 7), 3.0)], fpr_limit)
    assert value == pytest.approx(fpr_limit / 2)


def test_aupro_counts_empty_mask_images_as_good_pixels() -> None:
    mask, _, _ = two_square_case()
    perfect_map = mask.astype(float)
    assert metrics.aupro([mask], [perfect_map]) == pytest.approx(1.0)
    # A defect-free image scored as high as the defects: at that threshold FPR jumps from 0 to
    # n_bright / n_good (past 0.3) while PRO jumps from 0 to 1, so PRO at FPR x is x * n_good / n_bright.
    bright_good = np.ones((40, 40))
    n_good = (~mask).sum() + bright_good.size
    expected = 0.3 * n_good / bright_good.size / 2
    value = metrics.aupro([mask, np.zeros((40, 40), dtype=bool)], [perfect_map, bright_good])
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fpr_limit", [0.3, 1.0])
def test_aupro_matches_slow_reference_exactly_on_few_distinct_scores(seed: int, fpr_limit: float) -> None:
    masks, maps = random_masks_and_maps(seed, quantize=True)
    every_score = np.unique(flat(maps))
    expected = reference_aupro(masks, maps, fpr_limit, every_score)
    assert metrics.aupro(masks, maps, fpr_limit) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_aupro_matches_slow_reference_with_200_thresholds(seed: int) -> None:
    masks, maps = random_masks_and_maps(seed, quantize=False)
    thresholds = np.quantile(flat(maps), np.linspace(0, 1, 200))
    expected = reference_aupro(masks, maps, 0.3, thresholds)
    assert metrics.aupro(masks, maps) == pytest.approx(expected, abs=0.01)


# --- input validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "same length"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "both classes"),
        ([0, 0], [0.1, 0.2], "both classes"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "labels must hold only 0 and 1"),
        ([0.0, 1.0], [0.1, 0.2], "labels must be bool or integer"),
        ([0, 1], [0.1, np.nan], "scores contains NaN"),
        ([[0, 1]], [[0.1, 0.2]], "labels must be a 1-D array"),
        ([], [], "empty"),
    ],
)
def test_image_metrics_reject_bad_input(labels: list, scores: list, message: str) -> None:
    for function in (metrics.auroc, metrics.roc_curve):
        with pytest.raises(ValueError, match=message):
            function(np.array(labels), np.array(scores))


def test_f1_max_needs_a_defective_sample() -> None:
    with pytest.raises(ValueError, match="at least one defective"):
        metrics.f1_max([0, 0], [0.1, 0.2])


@pytest.mark.parametrize(
    ("masks", "maps", "message"),
    [
        ([np.zeros((4, 4), bool)], [], "same length"),
        ([], [], "empty"),
        ([np.zeros((4, 4), np.uint8)], [np.zeros((4, 4))], r"masks\[0\] must be a boolean"),
        ([np.zeros(4, bool)], [np.zeros(4)], r"masks\[0\] must be a 2-D"),
        ([np.eye(4, dtype=bool), np.eye(3, dtype=bool)], [np.eye(4), np.eye(4)], r"maps\[1\] has shape"),
        ([np.eye(4, dtype=bool)], [np.full((4, 4), np.nan)], r"maps\[0\] contains NaN"),
        ([np.zeros((4, 4), bool)], [np.eye(4)], "both defective"),
        ([np.ones((4, 4), bool)], [np.eye(4)], "both defective"),
    ],
)
def test_pixel_metrics_reject_bad_input(masks: list, maps: list, message: str) -> None:
    for function in (metrics.pixel_auroc, metrics.aupro):
        with pytest.raises(ValueError, match=message):
            function(masks, maps)


@pytest.mark.parametrize("fpr_limit", [0.0, -0.1, 1.5])
def test_aupro_rejects_fpr_limit_outside_unit_interval(fpr_limit: float) -> None:
    with pytest.raises(ValueError, match="fpr_limit"):
        metrics.aupro([np.eye(4, dtype=bool)], [np.eye(4)], fpr_limit)


# --- report pictures -------------------------------------------------------------------------


def assert_png(path: Path, min_width: int, min_height: int) -> None:
    assert path.stat().st_size > 5_000
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        assert picture.width >= min_width and picture.height >= min_height
        picture.verify()


def test_report_pictures_are_written_as_png(tmp_path: Path) -> None:
    masks, maps = random_masks_and_maps(0, quantize=False)
    rng = np.random.default_rng(0)
    image_labels = rng.random(40) < 0.5
    image_scores = rng.normal(size=40) + image_labels

    report.save_roc_curves(
        tmp_path / "roc.png", image_labels, image_scores, masks, maps, max_plotted_pixels=1_000
    )
    report.save_score_histogram(tmp_path / "hist.png", image_labels, image_scores, threshold=0.5)
    report.save_score_histogram(tmp_path / "hist_no_threshold.png", image_labels, image_scores)
    image = rng.integers(0, 256, (*masks[0].shape, 3), dtype=np.uint8)
    report.save_case_panel(tmp_path / "miss.png", image, maps[0], masks[0], "miss 000.png", -1.0, 2.0)
    report.save_case_panel(tmp_path / "good.png", image, maps[0], None, "good 001.png", -1.0, 2.0)

    assert_png(tmp_path / "roc.png", 400, 400)
    assert_png(tmp_path / "hist.png", 400, 300)
    assert_png(tmp_path / "hist_no_threshold.png", 400, 300)
    assert_png(tmp_path / "miss.png", 900, 300)
    assert_png(tmp_path / "good.png", 900, 300)


def test_overlay_heatmap_colours_high_values() -> None:
    image = np.full((16, 24, 3), 64, dtype=np.uint8)
    anomaly_map = np.zeros((16, 24), dtype=np.float32)
    anomaly_map[:, 12:] = 5.0  # above vmax: clipped to the hottest colour
    overlay = report.overlay_heatmap(image, anomaly_map, vmin=0.0, vmax=1.0)
    assert overlay.shape == image.shape and overlay.dtype == np.uint8
    hot, cold = overlay[0, 20].astype(int), overlay[0, 0].astype(int)
    assert not np.array_equal(overlay[:, 12:], image[:, 12:])
    assert hot[0] > image[0, 0, 0] > hot[2]  # red over dark grey
    assert cold[2] > image[0, 0, 2] > cold[0]  # blue over dark grey
    clipped_at_vmax = report.overlay_heatmap(image, np.ones((16, 24)), vmin=0.0, vmax=1.0)
    np.testing.assert_array_equal(overlay[:, 12:], clipped_at_vmax[:, 12:])


@pytest.mark.parametrize(
    ("image", "anomaly_map", "vmin", "vmax", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4)), 0.0, 1.0, "image_rgb must be"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4)), 0.0, 1.0, "image_rgb must be"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5)), 0.0, 1.0, "anomaly_map has shape"),
        (np.zeros((4, 4, 3), np.uint8), np.full((4, 4), np.nan), 0.0, 1.0, "anomaly_map contains NaN"),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)), 1.0, 1.0, "vmax must be greater"),
    ],
)
def test_overlay_heatmap_rejects_bad_input(
    image: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        report.overlay_heatmap(image, anomaly_map, vmin, vmax)
