import numpy as np
import pytest
from scipy.stats import norm

from model.calibration import MEDIAN_GOOD_NORMALISED, Calibration, fit_calibration


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("n_held_out", [12, 100])
def test_threshold_rejects_the_stated_share_of_good_parts(rate, n_held_out):
    """Averaged over many calibrations from few held-out images, new good parts are rejected at the stated rate."""
    rng = np.random.default_rng(1)
    mean, std = 2.0, 0.3
    rejected = [
        norm.sf((fit_calibration(rng.normal(mean, std, n_held_out), rate).threshold - mean) / std) for _ in range(4000)
    ]
    assert float(np.mean(rejected)) == pytest.approx(rate, rel=0.1)


def test_normalised_score_is_half_at_threshold_and_monotonic():
    held_out = [1.0, 1.2, 0.9, 1.1, 1.05, 0.95, 1.15, 1.02, 0.98, 1.08]
    calibration = fit_calibration(np.array(held_out), 0.01)
    assert calibration.normalise(calibration.threshold) == pytest.approx(0.5)
    assert calibration.normalise(calibration.median_good) == pytest.approx(MEDIAN_GOOD_NORMALISED)
    raw = np.linspace(-10, 10, 101)
    normalised = calibration.normalise(raw)
    assert np.all(np.diff(normalised) > 0) or np.all(np.diff(normalised) >= 0)
    assert normalised.min() >= 0.0 and normalised.max() <= 1.0
    assert calibration.threshold > max(held_out)


def test_round_trip_through_a_dict():
    calibration = fit_calibration(np.linspace(0.3, 0.5, 10), 0.05)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


@pytest.mark.parametrize(
    ("scores", "rate", "message"),
    [([1.0] * 9, 0.01, "at least 10"), ([1.0] * 9 + [np.nan], 0.01, "NaN"), ([1.0, 2.0] * 5, 0.7, "false_reject_rate")],
)
def test_bad_calibration_input_is_refused(scores, rate, message):
    with pytest.raises(ValueError, match=message):
        fit_calibration(np.array(scores), rate)
