"""Pictures for the evaluation report: ROC curves, score histograms, heatmap overlays, case panels.

Figures are built on ``matplotlib.figure.Figure`` directly, which renders to PNG without pyplot or
a global backend, so this module is safe to use from workers and tests alike. Workers use
`overlay_heatmap` alone: `matplotlib.figure` (half a second to import) is imported by `_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from matplotlib import cm, colors

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from model.metrics import (
    as_labels_and_scores,
    as_masks_and_maps,
    auroc,
    pixel_auroc,
    roc_curve,
)

DEFECTIVE_COLOUR = "tab:red"
GOOD_COLOUR = "tab:green"


def save_roc_curves(
    path: str | Path,
    image_labels: np.ndarray,
    image_scores: np.ndarray,
    pixel_masks: Sequence[np.ndarray],
    pixel_maps: Sequence[np.ndarray],
    *,
    max_plotted_pixels: int = 2_000_000,
    seed: int = 0,
) -> None:
    """Write one PNG with the image-level and pixel-level ROC curves, AUROC in the legend.

    The pixel AUROC in the legend is exact, over all pixels; the pixel curve is drawn from at most
    ``max_plotted_pixels`` pixels sampled with a fixed seed (at most half from each class).

    Args:
        path: PNG file to write; its folder must exist.
        image_labels: (N,) bool or 0/1, one per image; True/1 = defective.
        image_scores: (N,) real image scores.
        pixel_masks: list of (H_i, W_i) bool ground-truth masks.
        pixel_maps: list of (H_i, W_i) real anomaly maps.
        max_plotted_pixels: most pixels behind the drawn pixel curve.
        seed: seed of the pixel sample.
    """
    image_fpr, image_tpr, _ = roc_curve(image_labels, image_scores)
    image_value = auroc(image_labels, image_scores)
    pixel_value = pixel_auroc(pixel_masks, pixel_maps)
    sample_labels, sample_scores = _sample_pixels(pixel_masks, pixel_maps, max_plotted_pixels, seed)
    pixel_fpr, pixel_tpr, _ = roc_curve(sample_labels, sample_scores)

    figure = _figure((6, 6))
    axes = figure.add_subplot()
    axes.plot(image_fpr, image_tpr, color="tab:blue", label=f"image AUROC {image_value:.4f}")
    axes.plot(
        pixel_fpr,
        pixel_tpr,
        color="tab:orange",
        label=f"pixel AUROC {pixel_value:.4f} (curve from {sample_labels.size:,} pixels)",
    )
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
    axes.set_title("ROC curves")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.savefig(path, format="png")


def save_score_histogram(
    path: str | Path,
    image_labels: np.ndarray,
    image_scores: np.ndarray,
    threshold: float | None = None,
) -> None:
    """Write one PNG with histograms of image scores of good and defective parts.

    Args:
        path: PNG file to write; its folder must exist.
        image_labels: (N,) bool or 0/1, one per image; True/1 = defective.
        image_scores: (N,) real image scores.
        threshold: decision threshold, drawn as a vertical line when given.
    """
    labels, scores = as_labels_and_scores(image_labels, image_scores)
    # Shared bins so the two classes can be compared bar by bar.
    bins = np.histogram_bin_edges(scores, bins="auto")
    figure = _figure((7, 4.5))
    axes = figure.add_subplot()
    for selected, colour, name in ((~labels, GOOD_COLOUR, "good"), (labels, DEFECTIVE_COLOUR, "defective")):
        axes.hist(scores[selected], bins=bins, color=colour, alpha=0.55, label=f"{name} (n={selected.sum()})")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    axes.set(xlabel="image score", ylabel="images")
    axes.set_title("Image scores")
    axes.legend()
    figure.savefig(path, format="png")


def overlay_heatmap(
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    vmin: float,
    vmax: float,
    alpha: float = 0.5,
) -> np.ndarray:
    """Blend a jet-coloured anomaly map over an image.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image.
        anomaly_map: (H, W) real map; values are clipped to [vmin, vmax] (blue to red).
        vmin: map value drawn as the coldest colour.
        vmax: map value drawn as the hottest colour; must exceed vmin.
        alpha: weight of the heatmap in the blend, in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    image_rgb = np.asarray(image_rgb)
    anomaly_map = np.asarray(anomaly_map)
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(
            f"image_rgb must be an (H, W, 3) uint8 array, got shape {image_rgb.shape} dtype {image_rgb.dtype}"
        )
    if anomaly_map.shape != image_rgb.shape[:2]:
        raise ValueError(f"anomaly_map has shape {anomaly_map.shape}, expected {image_rgb.shape[:2]}")
    if not np.isfinite(anomaly_map).all():
        raise ValueError("anomaly_map contains NaN or infinite values")
    if not vmax > vmin:
        raise ValueError(f"vmax must be greater than vmin, got vmin={vmin} vmax={vmax}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    scaled = np.clip((anomaly_map.astype(np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)
    heat_bgr = cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat_rgb = cv2.cvtColor(heat_bgr, cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(np.ascontiguousarray(image_rgb), 1.0 - alpha, heat_rgb, alpha, 0.0)


def save_case_panel(
    path: str | Path,
    image_rgb: np.ndarray,
    anomaly_map: np.ndarray,
    mask: np.ndarray | None,
    title: str,
    vmin: float,
    vmax: float,
) -> None:
    """Write one PNG of a single case: image | heatmap overlay | ground-truth mask contour.

    Args:
        path: PNG file to write; its folder must exist.
        image_rgb: (H, W, 3) uint8 RGB image.
        anomaly_map: (H, W) real anomaly map.
        mask: (H, W) bool ground truth, or None for a part without one (a good part).
        title: caption over the panel, e.g. the file name, label and score.
        vmin: map value drawn as the coldest colour.
        vmax: map value drawn as the hottest colour.
    """
    overlay = overlay_heatmap(image_rgb, anomaly_map, vmin, vmax)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != overlay.shape[:2]:
            raise ValueError(
                f"mask must be an (H, W) bool array matching the image {overlay.shape[:2]}, "
                f"got shape {mask.shape} dtype {mask.dtype}"
            )

    figure = _figure((13, 4.8))
    image_axes, overlay_axes, truth_axes = figure.subplots(1, 3)
    image_axes.imshow(image_rgb)
    image_axes.set_title("image")
    overlay_axes.imshow(overlay)
    overlay_axes.set_title("anomaly map")
    # The overlay is coloured by OpenCV; this bar shows the same jet scale for reading values.
    scale = cm.ScalarMappable(norm=colors.Normalize(vmin=vmin, vmax=vmax), cmap="jet")
    figure.colorbar(scale, ax=overlay_axes, fraction=0.046, pad=0.02)
    truth_axes.imshow(image_rgb)
    if mask is not None and mask.any():
        truth_axes.contour(mask.astype(np.float32), levels=[0.5], colors=[DEFECTIVE_COLOUR], linewidths=1.5)
        truth_axes.set_title("ground truth")
    else:
        truth_axes.set_title("ground truth: no defect")
    for axes in (image_axes, overlay_axes, truth_axes):
        axes.set_axis_off()
    figure.suptitle(title)
    figure.savefig(path, format="png")


def _figure(size: tuple[float, float]) -> Figure:
    """A new figure of `size` inches at 100 dpi, laid out to fit."""
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=100, layout="constrained")


def _sample_pixels(
    masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_pixels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (M,) bool and scores (M,) of at most ``max_pixels`` pixels, at most half from each class.

    A ROC curve depends on each class's score distribution only, not on the class ratio, so each
    class is sampled on its own; this keeps small defects visible in the sample.
    """
    masks, maps = as_masks_and_maps(masks, maps)
    if max_pixels < 2:
        raise ValueError(f"max_plotted_pixels must be at least 2, got {max_pixels}")
    rng = np.random.default_rng(seed)
    n_defective = sum(int(np.count_nonzero(mask)) for mask in masks)
    n_good = sum(mask.size for mask in masks) - n_defective
    labels, scores = [], []
    for defective, class_total in ((True, n_defective), (False, n_good)):
        fraction = min(1.0, (max_pixels // 2) / max(class_total, 1))
        for mask, anomaly_map in zip(masks, maps):
            candidates = np.flatnonzero(mask if defective else ~mask)
            if fraction < 1.0:
                candidates = rng.choice(candidates, size=int(candidates.size * fraction), replace=False)
            scores.append(anomaly_map.ravel()[candidates])
            labels.append(np.full(candidates.size, defective))
    return np.concatenate(labels), np.concatenate(scores)
