"""Multi-class calibrators: temperature and vector scaling, and the triage log-odds."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.calibration.multiclass import (
    MultiTemperature,
    VectorScaling,
    fit_multiclass,
    multiclass_from_dict,
    multiclass_nll,
    softmax,
    triage_gradient,
    triage_logit,
)
from chestaid.errors import CalibrationError


def _cases(n: int = 600, k: int = 4, *, scale: float = 3.0, shift: float = 0.0, seed: int = 0):
    """Labels drawn from softmax(true logits); the model reports them times ``scale``."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0.0, 1.5, size=(n, k))
    labels = np.array([rng.choice(k, p=p) for p in softmax(true)])
    reported = true * scale
    reported[:, 0] += shift
    return reported, labels


def test_temperature_recovers_the_overconfidence_factor() -> None:
    z, y = _cases(scale=3.0)
    cal = MultiTemperature().fit(z, y)
    assert 2.3 < cal.temperature < 3.8
    assert multiclass_nll(cal.predict_proba(z), y) < multiclass_nll(softmax(z), y)
    # Temperature never changes the predicted class.
    assert (cal.predict_proba(z).argmax(1) == z.argmax(1)).all()


def test_vector_scaling_fixes_a_shifted_class_temperature_cannot() -> None:
    z, y = _cases(scale=1.0, shift=2.0, seed=1)
    temp = MultiTemperature().fit(z, y)
    vec = VectorScaling().fit(z, y)
    assert multiclass_nll(vec.predict_proba(z), y) < multiclass_nll(temp.predict_proba(z), y) - 0.05
    assert vec.b[0] < vec.b[1:].min() - 1.0  # the over-called class is pulled down


def test_records_round_trip_and_bad_records_are_refused() -> None:
    z, y = _cases(seed=2)
    for name in ("identity", "temperature", "vector"):
        cal = fit_multiclass(name, z, y)
        again = multiclass_from_dict(cal.to_dict())
        np.testing.assert_allclose(again.predict_proba(z), cal.predict_proba(z), atol=1e-12)
    with pytest.raises(CalibrationError, match="unknown"):
        multiclass_from_dict({"name": "platt"})
    with pytest.raises(CalibrationError, match="garbles"):
        multiclass_from_dict({"name": "vector", "a": [1, 2]})
    with pytest.raises(CalibrationError, match="4 classes"):
        VectorScaling([1, 1, 1, 1], [0, 0, 0, 0]).predict_proba(np.zeros((2, 3)))


def test_fitting_needs_every_class_and_valid_shapes() -> None:
    z = np.zeros((10, 3))
    with pytest.raises(CalibrationError, match="each class"):
        MultiTemperature().fit(z, np.zeros(10, dtype=int))
    with pytest.raises(CalibrationError, match="shape"):
        MultiTemperature().fit(np.zeros((10, 2)), np.zeros(10, dtype=int))
    with pytest.raises(CalibrationError, match="finite"):
        MultiTemperature().fit(np.full((10, 3), np.nan), np.arange(10) % 3)


@pytest.mark.parametrize("name", ["temperature", "vector"])
def test_triage_gradient_matches_finite_differences(name: str) -> None:
    z, y = _cases(n=200, seed=3)
    cal = fit_multiclass(name, z, y)
    normal = 2
    grad = triage_gradient(cal, z[:5], normal)
    eps = 1e-6
    for k in range(z.shape[1]):
        up, down = z[:5].copy(), z[:5].copy()
        up[:, k] += eps
        down[:, k] -= eps
        numeric = (
            triage_logit(cal.predict_proba(up), normal)
            - triage_logit(cal.predict_proba(down), normal)
        ) / (2 * eps)
        np.testing.assert_allclose(grad[:, k], numeric, rtol=1e-4, atol=1e-6)


def test_triage_logit_is_the_log_odds_of_not_normal() -> None:
    probs = np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]])
    np.testing.assert_allclose(triage_logit(probs, 0), np.log([0.8 / 0.2, 0.1 / 0.9]))


def test_vector_scaling_never_reverses_a_class_ranking() -> None:
    # The model ranks class 1 backwards: a negative slope would fit best, and is refused.
    z, y = _cases(seed=4)
    z[:, 1] = -z[:, 1]
    vec = VectorScaling().fit(z, y)
    assert (vec.a > 0).all()
