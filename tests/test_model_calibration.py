import numpy as np
import pytest
from scipy.stats import norm

from model.calibration import MEDIAN_GOOD_NORMALISED, Calibration, fit_calibration, normal_prediction_bound, order_statistic_bound


def realised_rates(draw_scores, survival, n_held_out: int, rate: float, draws: int = 4000) -> np.ndarray:
    """The false-reject rate on new good parts of each of many calibrations from n held-out scores."""
    rng = np.random.default_rng(1)
    return np.array([survival(fit_calibration(draw_scores(rng, n_held_out), rate).threshold) for _ in range(draws)])


def normal_scores(rng, n):
    return rng.normal(2.0, 0.3, n)


def normal_survival(threshold):
    return norm.sf((threshold - 2.0) / 0.3)


def skewed_scores(rng, n):
    return rng.lognormal(0.0, 0.5, n)


def skewed_survival(threshold):
    return norm.sf(np.log(threshold) / 0.5)


@pytest.mark.parametrize(("rate", "n_held_out"), [(0.01, 12), (0.05, 12), (0.01, 50)])
def test_few_normal_scores_reject_the_stated_share_of_good_parts(rate, n_held_out):
    """Below the order statistic's minimum, the normal prediction bound holds the stated rate on average."""
    rejected = realised_rates(normal_scores, normal_survival, n_held_out, rate)
    assert float(rejected.mean()) == pytest.approx(rate, rel=0.1)


@pytest.mark.parametrize("scores", ["normal", "skewed"])
@pytest.mark.parametrize(("rate", "n_held_out"), [(0.01, 100), (0.01, 250), (0.05, 100), (0.2, 12)])
def test_enough_scores_of_any_distribution_never_reject_more_than_the_stated_share(scores, rate, n_held_out):
    """Once there are enough scores for the order statistic, the stated rate is an upper bound on
    average whatever the distribution; taking the higher of two bounds costs at most half of it
    (measured: 0.69% at a stated 1% for normal scores, n = 100)."""
    draw, survival = (normal_scores, normal_survival) if scores == "normal" else (skewed_scores, skewed_survival)
    rejected = realised_rates(draw, survival, n_held_out, rate, draws=2000)
    assert rate * 0.5 <= float(rejected.mean()) <= rate * 1.05


def test_a_skewed_distribution_is_why_the_order_statistic_is_there():
    """Right-skewed good scores (as a texture's are): the normal bound alone flags too many good
    parts, the recipe does not."""
    rng = np.random.default_rng(2)
    normal_only, recipe = [], []
    for _ in range(2000):
        scores = skewed_scores(rng, 250)
        normal_only.append(skewed_survival(normal_prediction_bound(scores, 0.01)))
        calibration = fit_calibration(scores, 0.01)
        recipe.append(skewed_survival(calibration.threshold))
        assert calibration.threshold >= order_statistic_bound(scores, 0.01)
    assert np.mean(normal_only) > 0.015
    assert np.mean(recipe) <= 0.0105


def test_order_statistic_needs_enough_scores_for_the_rate():
    assert order_statistic_bound(np.arange(98.0), 0.01) is None
    assert order_statistic_bound(np.arange(99.0), 0.01) == 98.0
    assert order_statistic_bound(np.arange(250.0), 0.01) == 248.0
    assert fit_calibration(np.arange(20.0), 0.01).bound == "normal"


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


def test_equal_weights_change_nothing():
    scores = np.random.default_rng(3).lognormal(0.0, 0.5, 150)
    assert fit_calibration(scores, 0.01, np.full(150, 7.0)) == fit_calibration(scores, 0.01)
    assert fit_calibration(scores[:40], 0.05, np.full(40, 0.5)) == fit_calibration(scores[:40], 0.05)


def test_weights_undo_a_sample_that_keeps_every_false_alarm_and_one_passed_part_in_ten():
    """A line whose old threshold flags 20% of its good parts keeps every flagged part's picture but
    one passed part's in 10: unweighted, the sample is two thirds false alarms and its threshold
    flags far fewer good parts than stated (recall lost); weighted by the parts each picture stands
    for, the stated rate holds again (at most, and not far below it)."""
    rng = np.random.default_rng(4)
    old_threshold = float(np.exp(0.5 * norm.ppf(0.8)))
    weighted, unweighted = [], []
    for _ in range(400):
        line = skewed_scores(rng, 2000)
        false_alarms, passed = line[line > old_threshold], line[line <= old_threshold][::10]
        sample = np.concatenate([false_alarms, passed])
        weights = np.concatenate([np.ones(false_alarms.size), np.full(passed.size, np.sum(line <= old_threshold) / passed.size)])
        weighted.append(skewed_survival(fit_calibration(sample, 0.01, weights).threshold))
        unweighted.append(skewed_survival(fit_calibration(sample, 0.01).threshold))
    assert 0.005 <= float(np.mean(weighted)) <= 0.0105
    assert float(np.mean(unweighted)) < 0.005


def test_weights_count_only_with_enough_scores_for_the_order_statistic():
    scores = np.random.default_rng(5).lognormal(0.0, 0.5, 99)
    weights = np.r_[np.ones(60), np.full(39, 10.0)]
    assert fit_calibration(scores[:98], 0.01, weights[:98]) == fit_calibration(scores[:98], 0.01)
    assert fit_calibration(scores, 0.01, weights) != fit_calibration(scores, 0.01)


def test_weights_are_one_positive_number_per_score():
    with pytest.raises(ValueError, match="one positive number per score"):
        fit_calibration(np.arange(20.0), 0.01, np.ones(19))
    with pytest.raises(ValueError, match="one positive number per score"):
        fit_calibration(np.arange(20.0), 0.01, np.r_[np.ones(19), 0.0])
