"""Calibrators recover known parameters; selection and the governed threshold do what they say."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.calibration import (
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    calibrator_from_dict,
    fit_and_select,
    fit_calibrator,
    governed_threshold,
    sigmoid,
)
from chestaid.errors import CalibrationError
from chestaid.metrics import ece


def _sample(n: int, seed: int, *, scale: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, scale, n)
    y = (rng.random(n) < sigmoid(z)).astype(np.int64)
    return z, y


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_temperature_scaling_recovers_a_known_temperature(true_t: float) -> None:
    z, y = _sample(20000, 0)
    fitted = TemperatureScaling().fit(z * true_t, y)
    assert fitted.temperature == pytest.approx(true_t, rel=0.05)


def test_platt_recovers_slope_and_intercept_that_temperature_cannot() -> None:
    z, y = _sample(20000, 1)
    a, b = 0.5, 1.5  # observed logit = (z - b) / a: an intercept shift plus overconfidence
    observed = (z - b) / a
    platt = PlattScaling().fit(observed, y)
    assert platt.a == pytest.approx(a, rel=0.05)
    assert platt.b == pytest.approx(b, abs=0.08)
    temperature = TemperatureScaling().fit(observed, y)
    assert ece(temperature.predict_proba(observed), y) > 3 * ece(platt.predict_proba(observed), y)


def test_platt_is_finite_on_separable_data() -> None:
    z = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    y = np.array([0, 0, 0, 1, 1, 1])
    platt = PlattScaling().fit(z, y)
    assert np.isfinite([platt.a, platt.b]).all()
    assert TemperatureScaling().fit(z, y).temperature >= 0.05


def test_isotonic_is_monotone_and_reduces_ece() -> None:
    z, y = _sample(10000, 2)
    distorted = np.sign(z) * np.abs(z) ** 2.5  # a non-linear miscalibration
    iso = IsotonicCalibration().fit(distorted[:5000], y[:5000])
    grid = np.linspace(-10, 10, 200)
    assert np.all(np.diff(iso.predict_proba(grid)) >= 0)
    before = ece(sigmoid(distorted[5000:]), y[5000:])
    after = ece(iso.predict_proba(distorted[5000:]), y[5000:])
    assert after < before / 2


@pytest.mark.parametrize("name", ["temperature", "platt", "isotonic", "identity"])
def test_every_calibrator_round_trips_through_its_dict(name: str) -> None:
    z, y = _sample(500, 3)
    fitted = fit_calibrator(name, z * 1.7 + 0.3, y)
    rebuilt = calibrator_from_dict(fitted.to_dict())
    assert rebuilt.name == name
    probe = np.linspace(-6, 6, 50)
    assert np.array_equal(fitted.predict_proba(probe), rebuilt.predict_proba(probe))


def test_bad_records_and_names_are_refused() -> None:
    with pytest.raises(CalibrationError, match="unknown"):
        calibrator_from_dict({"name": "magic"})
    with pytest.raises(CalibrationError, match="parameter"):
        calibrator_from_dict({"name": "platt", "a": 1.0})
    with pytest.raises(CalibrationError, match="unknown calibrator"):
        fit_calibrator("beta", [0.0, 1.0], [0, 1])


def test_too_few_cases_are_refused_with_counts() -> None:
    with pytest.raises(CalibrationError, match="1 pneumonia and 3 normal"):
        TemperatureScaling().fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 0, 1]))
    with pytest.raises(CalibrationError, match="at least 20"):
        IsotonicCalibration().fit(np.arange(10.0), np.array([0, 1] * 5))


def test_selection_keeps_the_lowest_report_ece_when_its_lead_is_real() -> None:
    z, y = _sample(4000, 4)
    observed = (z - 1.0) / 0.6
    comparison = fit_and_select(observed[:2000], y[:2000], observed[2000:], y[2000:])
    metrics = comparison.metrics
    assert {"uncalibrated", "temperature", "platt", "isotonic"} <= set(metrics)
    fitted = {k: v for k, v in metrics.items() if k != "uncalibrated"}
    assert comparison.lowest_ece == min(fitted, key=lambda k: fitted[k]["ece"])
    assert comparison.chosen != "temperature", "an intercept shift needs more than a temperature"
    low, _ = comparison.ece_difference_ci95["temperature"]
    assert low > 0.0, "temperature is significantly worse here"
    record = comparison.to_dict()
    assert record["chosen"] == comparison.chosen and set(record["parameters"]) == set(fitted)
    assert record["ece_difference_vs_lowest_ci95"][comparison.chosen][0] <= 0.0


def test_selection_prefers_the_simpler_calibrator_within_noise() -> None:
    z, y = _sample(800, 9)  # logits that are already calibrated: every candidate is as good
    comparison = fit_and_select(z[:400], y[:400], z[400:], y[400:])
    assert comparison.lowest_ece != "temperature", "the case needs a lowest ECE by chance"
    assert comparison.chosen == "temperature"
    for name, (low, _) in comparison.ece_difference_ci95.items():
        assert low <= 0.0, f"{name} is within noise of the lowest ECE"


def test_isotonic_never_claims_certainty() -> None:
    z = np.concatenate([np.linspace(-9, -5, 50), np.linspace(5, 9, 50)])
    y = np.repeat([0, 1], 50)
    probs = IsotonicCalibration().fit(z, y).predict_proba(np.array([-20.0, 0.0, 20.0]))
    assert probs[0] == pytest.approx(1 / 101) and probs[2] == pytest.approx(100 / 101)


def test_selection_skips_isotonic_with_too_few_cases() -> None:
    z, y = _sample(16, 5)
    y[:2], y[2:4] = 0, 1
    comparison = fit_and_select(z, y, z, y)
    assert "isotonic" in comparison.skipped
    assert comparison.chosen in ("temperature", "platt")


def test_governed_threshold_reaches_the_target_with_the_highest_specificity() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    for target in (0.8, 0.9, 0.95):
        governed = governed_threshold(p, y, target, n_boot=0)
        sens = np.mean(p[y == 1] >= governed.threshold)
        assert sens >= target
        assert governed.achieved_sensitivity == pytest.approx(sens)
        # Every higher threshold either misses the target or is no more specific.
        for higher in np.unique(p[p > governed.threshold]):
            reaches = np.mean(p[y == 1] >= higher) >= target
            assert not reaches or np.mean(p[y == 0] < higher) <= governed.specificity
        # The next lower case score costs specificity (otherwise it would be kept).
        lower = np.max(p[p < governed.threshold])
        assert np.mean(p[y == 0] < lower) < governed.specificity


def test_governed_threshold_with_ties_and_without_positives() -> None:
    p = np.array([0.2, 0.5, 0.5, 0.5, 0.9])
    y = np.array([0, 1, 1, 1, 1])
    governed = governed_threshold(p, y, 0.9)
    assert governed.threshold == 0.5 and governed.achieved_sensitivity == 1.0
    with pytest.raises(CalibrationError, match="positive"):
        governed_threshold(np.array([0.1, 0.2]), np.array([0, 0]))


def test_local_selection_prefers_an_intercept_when_the_site_is_shifted() -> None:
    from chestaid.calibration import select_local_calibration

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 240)
    shifted = (2 * y - 1) * 2.0 + rng.normal(0, 1.2, y.size) + 3.0
    local = select_local_calibration(shifted, y)
    assert local.chosen == "platt"
    assert local.cv_nll["platt"] < local.cv_nll["temperature"]
    assert "isotonic" not in local.cv_nll  # too few cases for it
    assert local.out_of_fold.shape == y.shape
    centred = (2 * y - 1) * 2.0 + rng.normal(0, 1.2, y.size)
    assert select_local_calibration(centred, y).cv_nll["temperature"] < 0.5
    with pytest.raises(CalibrationError):
        select_local_calibration(shifted[:6], y[:6])
