"""How well each way of setting the threshold holds its stated false-reject rate on unseen good parts.

For each trained model (checkpoint) and the `scores.csv` of its evaluation (`lineguard eval`
writes it), the threshold is set from the model's held-out calibration scores by each bound, and
the share of the category's test/good parts above it (false rejects) and of defective parts above
it (recall) is printed. With `--subsets`, calibration sets of fewer images are drawn at random
from the held-out scores, to show how each bound behaves at small n (mean false-reject rate over
the draws, on test/good).

    .venv/bin/python bench/calibration_bounds.py runs/ablation/mvtec_toothbrush-default.pt \\
        runs/ablation/mvtec_toothbrush-default-report/scores.csv [more pairs] --subsets 10 20 40
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from model.calibration import fit_calibration
from model.checkpoint import read_checkpoint


def normal_bound(scores: np.ndarray, rate: float) -> float:
    return fit_calibration(scores, rate).threshold


def lognormal_bound(scores: np.ndarray, rate: float) -> float:
    return float(np.exp(fit_calibration(np.log(scores), rate).threshold))


def order_statistic(scores: np.ndarray, rate: float) -> float:
    """Conformal: the k-th smallest, k = ceil((n+1)(1-rate)); inf when n is too small for the rate."""
    k = math.ceil((scores.size + 1) * (1 - rate))
    return float(np.sort(scores)[k - 1]) if k <= scores.size else math.inf


def maximum(scores: np.ndarray, rate: float) -> float:
    return float(scores.max())


def normal_plug_in(scores: np.ndarray, rate: float) -> float:
    from scipy.stats import norm

    return float(scores.mean() + norm.ppf(1 - rate) * scores.std(ddof=1))


BOUNDS: dict[str, Callable[[np.ndarray, float], float]] = {
    "normal prediction bound": normal_bound,
    "lognormal prediction bound": lognormal_bound,
    "normal plug-in quantile": normal_plug_in,
    "order statistic (conformal)": order_statistic,
    "maximum": maximum,
}


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    good, defective = [], []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            (good if row["defect_type"] == "good" else defective).append(float(row["raw_score"]))
    return np.array(good), np.array(defective)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", help="checkpoint scores.csv [checkpoint scores.csv ...]")
    parser.add_argument("--rate", type=float, default=0.01, help="stated false-reject rate")
    parser.add_argument("--subsets", type=int, nargs="*", default=[], help="also draw calibration sets of these sizes")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for checkpoint, scores_csv in zip(args.pairs[::2], args.pairs[1::2]):
        calibration = np.array(read_checkpoint(checkpoint)["training_data"]["calibration_scores"])
        good, defective = read_scores(Path(scores_csv))
        print(f"\n{checkpoint}: {calibration.size} calibration scores (mean {calibration.mean():.4f}, sd {calibration.std(ddof=1):.4f}); "
              f"test/good {good.size} (mean {good.mean():.4f}, sd {good.std(ddof=1):.4f}); defective {defective.size}")
        print(f"{'bound':>30} {'threshold':>10} {'good flagged':>13} {'defects caught':>15}" + "".join(f" {f'FRR n={n}':>10}" for n in args.subsets))
        for name, bound in BOUNDS.items():
            threshold = bound(calibration, args.rate)
            row = f"{name:>30} {threshold:10.4f} {int((good > threshold).sum()):>6} of {good.size:<4} {int((defective > threshold).sum()):>7} of {defective.size:<5}"
            for n in args.subsets:
                rates = []
                for _ in range(args.draws):
                    subset = rng.choice(calibration, size=min(n, calibration.size), replace=False)
                    rates.append(float((good > bound(subset, args.rate)).mean()))
                row += f" {np.mean(rates):10.3f}"
            print(row)


if __name__ == "__main__":
    main()
