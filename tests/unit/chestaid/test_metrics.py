"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chestaid.errors import CalibrationError, ConfigurationError
from chestaid.metrics import (
    ConfusionMatrix,
    adaptive_ece,
    bootstrap_ci,
    brier,
    confusion_at,
    ece,
    nll,
    population_stability_index,
    pr_auc,
    reliability_curve,
    roc_auc,
    threshold_table,
    wilson_interval,
)

# Six cases in three equal-width bins of [0, 1] (n_bins=3):
#   bin 0 [0, 1/3):   0.1 (y=0), 0.2 (y=1)   mean p 0.15, frac 0.5  gap 0.35
#   bin 1 [1/3, 2/3): 0.5 (y=1)              mean p 0.50, frac 1.0  gap 0.50
#   bin 2 [2/3, 1]:   0.7 (y=1), 0.9 (y=0), 1.0 (y=1)  mean 0.8667, frac 0.6667, gap 0.2
# ECE = (2 * 0.35 + 1 * 0.5 + 3 * 0.2) / 6 = 1.8 / 6 = 0.3
P = np.array([0.1, 0.2, 0.5, 0.7, 0.9, 1.0])
Y = np.array([0, 1, 1, 1, 0, 1])


def test_ece_by_hand() -> None:
    assert ece(P, Y, n_bins=3) == pytest.approx(0.3)


def test_adaptive_ece_by_hand() -> None:
    # Three equal-mass bins of two: (0.1, 0.2) gap |0.5-0.15|=0.35; (0.5, 0.7) gap |1-0.6|=0.4;
    # (0.9, 1.0) gap |0.5-0.95|=0.45 -> (0.35 + 0.4 + 0.45) / 3 = 0.4
    assert adaptive_ece(P, Y, n_bins=3) == pytest.approx(0.4)


def test_brier_and_nll_by_hand() -> None:
    # (0.01 + 0.64 + 0.25 + 0.09 + 0.81 + 0) / 6 = 1.8 / 6
    assert brier(P, Y) == pytest.approx(0.3)
    p, y = np.array([0.8, 0.25]), np.array([1, 0])
    assert nll(p, y) == pytest.approx(-(math.log(0.8) + math.log(0.75)) / 2)


def test_perfectly_calibrated_bins_have_zero_ece() -> None:
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert ece(p, y, n_bins=2) == pytest.approx(0.0)


def test_aucs() -> None:
    s, y = np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])
    assert roc_auc(s, y) == pytest.approx(0.75)
    assert roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1])) == 1.0
    assert pr_auc(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0, 0, 1, 1])) == 1.0
    assert roc_auc(np.array([-5.0, 3.0]), np.array([0, 1])) == 1.0, "logits are scores too"


def test_confusion_by_hand() -> None:
    cm = confusion_at(P, Y, 0.5)
    assert (cm.tp, cm.fp, cm.tn, cm.fn) == (3, 1, 1, 1)
    assert cm.sensitivity == pytest.approx(0.75)
    assert cm.specificity == pytest.approx(0.5)
    assert cm.ppv == pytest.approx(0.75)
    assert cm.npv == pytest.approx(0.5)
    assert cm.f1 == pytest.approx(0.75)
    empty = ConfusionMatrix(tp=0, fp=0, tn=5, fn=0)
    assert math.isnan(empty.sensitivity) and math.isnan(empty.ppv)
    assert empty.specificity == 1.0


def test_threshold_table_rows() -> None:
    rows = threshold_table(P, Y, [0.0, 0.5, 1.01])
    assert [r["threshold"] for r in rows] == [0.0, 0.5, 1.01]
    assert rows[0]["sensitivity"] == 1.0 and rows[0]["specificity"] == 0.0
    assert rows[2]["tp"] == 0.0


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bootstrap_contains_the_point_is_seeded_and_narrows() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = y + rng.normal(0, 1.0, 400)
    point, low, high = bootstrap_ci(roc_auc, s, y, n_boot=300, seed=1)
    assert low <= point <= high
    assert bootstrap_ci(roc_auc, s, y, n_boot=300, seed=1) == (point, low, high)
    _, low_small, high_small = bootstrap_ci(roc_auc, s[:80], y[:80], n_boot=300, seed=1)
    assert (high - low) < (high_small - low_small)


def test_reliability_curve_counts() -> None:
    curve = reliability_curve(P, Y, n_bins=3)
    assert curve.bin_count.tolist() == [2, 1, 3]
    assert curve.bin_frac_pos[1] == pytest.approx(1.0)
    assert curve.bin_mean_prob[0] == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        ([0.1, 0.2], [0, 1, 1], "length"),
        ([0.1, float("nan")], [0, 1], "NaN"),
        ([0.1, 1.2], [0, 1], r"\[0, 1\]"),
        ([0.1, 0.2], [0, 2], "labels"),
        ([], [], "no cases"),
    ],
)
def test_bad_inputs_are_calibration_errors(
    probs: list[float], labels: list[int], message: str
) -> None:
    with pytest.raises(CalibrationError, match=message):
        ece(probs, labels)


def test_auc_with_one_class_is_an_error() -> None:
    with pytest.raises(CalibrationError, match="one class"):
        roc_auc([0.1, 0.9], [1, 1])


def test_patient_bootstrap_is_wider_when_images_of_a_patient_agree() -> None:
    rng = np.random.default_rng(3)
    # 40 patients with 5 near-identical images each: 200 images but 40 independent units.
    patient_score = rng.normal(0, 1, 40) + np.repeat([0.0, 1.0], 20)
    patient_label = np.repeat([0, 1], 20)
    s = np.repeat(patient_score, 5) + rng.normal(0, 0.01, 200)
    y = np.repeat(patient_label, 5)
    patients = np.repeat(np.arange(40), 5)
    point, low, high = bootstrap_ci(roc_auc, s, y, n_boot=400, seed=0)
    p_point, p_low, p_high = bootstrap_ci(roc_auc, s, y, n_boot=400, seed=0, clusters=patients)
    assert point == p_point
    assert p_low <= p_point <= p_high
    assert (p_high - p_low) > 1.5 * (high - low)


def test_patient_bootstrap_needs_one_key_per_case() -> None:
    with pytest.raises(CalibrationError):
        bootstrap_ci(roc_auc, [0.1, 0.9], [0, 1], n_boot=10, clusters=["a"])


def test_population_stability_index_against_a_hand_computed_value() -> None:
    # Two bins split at the reference's median 2.5: shares p = (1/2, 1/2), q = (3/4, 1/4).
    # PSI = (3/4 - 1/2) ln(3/2) + (1/4 - 1/2) ln(1/2) = (1/4) ln 3.
    psi = population_stability_index([1, 2, 3, 4], [1, 1, 1, 4], bins=2)
    assert psi == pytest.approx(0.25 * math.log(3), rel=1e-12)
    # An empty bin counts as the floor's share: q = (1, 1e-4).
    psi = population_stability_index([1, 2, 3, 4], [1, 1, 1, 1], bins=2, floor=1e-4)
    expected = 0.5 * math.log(2) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi == pytest.approx(expected, rel=1e-12)
    assert population_stability_index([1, 2, 3, 4], [4, 3, 2, 1]) == 0.0
    assert math.isnan(population_stability_index([], [1.0]))
    with pytest.raises(ConfigurationError):
        population_stability_index([1, 2], [1, 2], bins=0)
