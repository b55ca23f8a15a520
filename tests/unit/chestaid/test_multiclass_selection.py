"""Choosing between temperature and vector scaling by patient-grouped cross-validation."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.calibration.multiclass import softmax
from chestaid.calibration.multiclass_selection import (
    RULE,
    patient_folds,
    select_multiclass_calibration,
)
from chestaid.errors import CalibrationError


def _cases(
    n_patients: int = 300, *, scale: float, shift: float, k: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two images a patient, labels drawn from softmax(true logits); the model reports
    ``scale`` times the true logits, with ``shift`` added to class 0's."""
    rng = np.random.default_rng(seed)
    true = np.repeat(rng.normal(0.0, 1.5, size=(n_patients, k)), 2, axis=0)
    true += rng.normal(0.0, 0.1, size=true.shape)
    labels = np.array([rng.choice(k, p=p) for p in softmax(true)])
    reported = true * scale
    reported[:, 0] += shift
    return reported, labels, np.repeat(np.arange(n_patients), 2)


def test_a_shifted_class_needs_vector_scaling() -> None:
    z, y, patients = _cases(scale=1.0, shift=2.0, seed=1)
    selection = select_multiclass_calibration(z, y, patients, n_boot=200)
    assert selection.chosen == "vector" == selection.lowest_nll
    m = selection.metrics
    assert m["vector"]["nll"] < m["temperature"]["nll"] < m["identity"]["nll"]
    # Temperature is significantly worse: its interval of the difference stays above zero.
    assert selection.nll_difference_ci95["temperature"][0] > 0.0
    record = selection.to_dict()
    assert record["rule"] == RULE and record["parameters"]["vector"]["name"] == "vector"
    assert set(m["identity"]) == {"nll", "ece", "classwise_ece", "brier"}


def test_overconfidence_alone_keeps_temperature() -> None:
    z, y, patients = _cases(scale=3.0, shift=0.0, seed=2)
    selection = select_multiclass_calibration(z, y, patients, n_boot=200)
    assert selection.chosen == "temperature"
    assert 2.0 < selection.calibrators["temperature"].to_dict()["temperature"] < 4.0
    # Calibrating helped on the cases it never saw.
    m = selection.metrics
    assert m["temperature"]["nll"] < m["identity"]["nll"] - 0.2
    assert m["temperature"]["ece"] < m["identity"]["ece"]
    assert selection.calibrator.to_dict()["name"] == "temperature"


def test_folds_keep_patients_whole() -> None:
    _, y, patients = _cases(n_patients=60, scale=1.0, shift=0.0, seed=3)
    folds = patient_folds(y, patients, 5, 0)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for p in np.unique(patients):
        assert len(set(folds[patients == p].tolist())) == 1


def test_out_of_fold_probabilities_come_from_fits_without_the_patient() -> None:
    z, y, patients = _cases(n_patients=60, scale=2.0, shift=0.0, seed=4)
    selection = select_multiclass_calibration(z, y, patients, folds=3, n_boot=20)
    # Out of fold, the temperature differs from fold to fold: not one global softmax(z / T).
    refit = selection.calibrators["temperature"].predict_proba(z)
    assert not np.allclose(selection.out_of_fold["temperature"], refit)
    np.testing.assert_allclose(selection.out_of_fold["temperature"].sum(1), 1.0)


def test_too_few_patients_or_unknown_candidates_are_refused() -> None:
    z, y, patients = _cases(n_patients=30, scale=1.0, shift=0.0, seed=5)
    with pytest.raises(CalibrationError, match="two patients"):
        select_multiclass_calibration(z, y, np.zeros(y.size), n_boot=10)
    with pytest.raises(CalibrationError, match="unknown"):
        select_multiclass_calibration(z, y, patients, candidates=("platt",), n_boot=10)


def test_a_small_lead_of_vector_scaling_within_noise_keeps_temperature() -> None:
    # A slight shift on 150 patients: vector scaling's cross-validated NLL is a little
    # lower, but the patient-bootstrap interval of the difference reaches zero.
    z, y, patients = _cases(n_patients=150, scale=2.0, shift=0.3, seed=0)
    selection = select_multiclass_calibration(z, y, patients, n_boot=200)
    assert selection.lowest_nll == "vector"
    assert selection.metrics["vector"]["nll"] < selection.metrics["temperature"]["nll"]
    low, high = selection.nll_difference_ci95["temperature"]
    assert low <= 0.0 < high
    assert selection.chosen == "temperature"
