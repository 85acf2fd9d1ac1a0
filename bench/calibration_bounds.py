"""How well each way of setting the threshold holds its stated false-reject rate on unseen good parts.

For each trained model (checkpoint) and the `scores.csv` of its evaluation (`lineguard eval`
writes it), the threshold is set from the model's held-out calibration scores by each bound, and
the share of the category's test/good parts above it (false rejects) and of defective parts above
it (recall) is printed. With `--subsets`, calibration sets of fewer images are drawn at random
from the held-out scores, to show how each bound behaves at small n (mean false-reject rate over
the draws, on test/good).

    .venv/bin/python bench/calibration_bounds.py runs/ablation/mvtec_toothbrush-default.pt \\
        runs/ablation/mvtec_toothbrush-default-report/scores.csv [more pairs] --subsets 10 20 40

`--simulate` instead draws calibration sets of n scores (normal, and right-skewed lognormal),
many times, and prints the false-reject rate each calibration really has (its mean and spread)
for the recipe's bound and the normal prediction bound alone, by n.

    .venv/bin/python bench/calibration_bounds.py --simulate
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import norm

from model.calibration import MIN_CALIBRATION_IMAGES, fit_calibration, normal_prediction_bound, order_statistic_bound
from model.checkpoint import read_checkpoint


def lognormal_bound(scores: np.ndarray, rate: float) -> float:
    return float(np.exp(normal_prediction_bound(np.log(scores), rate)))


def order_statistic(scores: np.ndarray, rate: float) -> float:
    """Conformal order statistic; inf when n is too small for the rate."""
    bound = order_statistic_bound(scores, rate)
    return math.inf if bound is None else bound


def maximum(scores: np.ndarray, rate: float) -> float:
    return float(scores.max())


def normal_plug_in(scores: np.ndarray, rate: float) -> float:
    return float(scores.mean() + norm.ppf(1 - rate) * scores.std(ddof=1))


def recipe_bound(scores: np.ndarray, rate: float) -> float:
    return fit_calibration(scores, rate).threshold


BOUNDS: dict[str, Callable[[np.ndarray, float], float]] = {
    "recipe (higher of normal, order)": recipe_bound,
    "normal prediction bound": normal_prediction_bound,
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


# Score distributions to simulate, with their survival functions: normal, and a right-skewed one
# (lognormal, sigma 0.5) like the good scores of a texture.
DISTRIBUTIONS: dict[str, tuple[Callable[[np.random.Generator, int], np.ndarray], Callable[[float], float]]] = {
    "normal": (lambda rng, n: rng.normal(0.0, 1.0, n), lambda t: float(norm.sf(t))),
    "lognormal": (lambda rng, n: rng.lognormal(0.0, 0.5, n), lambda t: float(norm.sf(np.log(t) / 0.5))),
}


def simulate(rate: float, draws: int, rng: np.random.Generator) -> None:
    """The false-reject rate realised by one calibration on n scores, over many draws, for the
    recipe's bound and the normal prediction bound alone."""
    print(f"stated rate {rate:.1%}; realised rate over {draws} calibrations of n good parts")
    print(f"{'scores':>10} {'bound':>8} {'n':>5} {'mean':>7} {'median':>7} {'90th pct':>8} {'99th pct':>8}")
    for name, (draw, survival) in DISTRIBUTIONS.items():
        for bound_name, bound in (("recipe", recipe_bound), ("normal", normal_prediction_bound)):
            for n in (MIN_CALIBRATION_IMAGES, 12, 20, 50, 100, 250):
                realised = np.array([survival(bound(draw(rng, n), rate)) for _ in range(draws)])
                print(f"{name:>10} {bound_name:>8} {n:5d} {realised.mean():7.4f} {np.median(realised):7.4f} "
                      f"{np.quantile(realised, 0.9):8.4f} {np.quantile(realised, 0.99):8.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", help="checkpoint scores.csv [checkpoint scores.csv ...]")
    parser.add_argument("--simulate", action="store_true", help="realised rates of the bound on simulated scores")
    parser.add_argument("--rate", type=float, default=0.01, help="stated false-reject rate")
    parser.add_argument("--subsets", type=int, nargs="*", default=[], help="also draw calibration sets of these sizes")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.simulate:
        simulate(args.rate, args.draws, rng)
    for checkpoint, scores_csv in zip(args.pairs[::2], args.pairs[1::2]):
        calibration = np.array(read_checkpoint(checkpoint)["training_data"]["calibration_scores"])
        good, defective = read_scores(Path(scores_csv))
        print(f"\n{checkpoint}: {calibration.size} calibration scores (mean {calibration.mean():.4f}, sd {calibration.std(ddof=1):.4f}); "
              f"test/good {good.size} (mean {good.mean():.4f}, sd {good.std(ddof=1):.4f}); defective {defective.size}")
        print(f"{'bound':>33} {'threshold':>10} {'good flagged':>13} {'defects caught':>15}" + "".join(f" {f'FRR n={n}':>10}" for n in args.subsets))
        for name, bound in BOUNDS.items():
            threshold = bound(calibration, args.rate)
            row = f"{name:>33} {threshold:10.4f} {int((good > threshold).sum()):>6} of {good.size:<4} {int((defective > threshold).sum()):>7} of {defective.size:<5}"
            for n in args.subsets:
                rates = []
                for _ in range(args.draws):
                    subset = rng.choice(calibration, size=min(n, calibration.size), replace=False)
                    rates.append(float((good > bound(subset, args.rate)).mean()))
                row += f" {np.mean(rates):10.3f}"
            print(row)


if __name__ == "__main__":
    main()
