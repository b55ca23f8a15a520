"""N-class metrics against values worked out by hand, and the patient bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from chestaid.errors import CalibrationError
from chestaid.multiclass_metrics import (
    abnormal_pairs,
    as_probs_and_labels,
    binary_average_precision,
    binary_roc_auc,
    class_reliability,
    classwise_ece,
    confusion_matrix,
    f1_per_class,
    micro_f1,
    multiclass_brier,
    pairwise_separation,
    summary,
    top_label_ece,
    triage_rates,
    triage_scores,
)
from chestaid.patient_bootstrap import bootstrap_summary, patient_members, patient_resamples

CLASSES = ("NORMAL", "BACTERIAL", "VIRAL")
# Six cases, three classes. Argmax predictions: 0, 0, 1, 2, 2, 0.
P = np.array(
    [
        [0.7, 0.2, 0.1],  # y 0, predicted 0
        [0.5, 0.3, 0.2],  # y 0, predicted 0
        [0.2, 0.6, 0.2],  # y 1, predicted 1
        [0.1, 0.3, 0.6],  # y 1, predicted 2
        [0.2, 0.1, 0.7],  # y 2, predicted 2
        [0.4, 0.3, 0.3],  # y 2, predicted 0
    ]
)
Y = np.array([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_and_f1_macro_against_micro_by_hand() -> None:
    cm = confusion_matrix(Y, P.argmax(1), 3)
    assert cm.tolist() == [[2, 0, 0], [0, 1, 1], [1, 0, 1]]
    # F1 per class: NORMAL 2*2/(4+1+0) = 0.8; BACTERIAL 2/(2+0+1) = 2/3; VIRAL 2/(2+1+1) = 0.5.
    np.testing.assert_allclose(f1_per_class(cm), [0.8, 2 / 3, 0.5])
    s = summary(P, Y, CLASSES, 0)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 3)
    # Micro F1 pools TP 4, FP 2, FN 2: 8 / 12, which is the accuracy 4 / 6.
    assert s["micro_f1"] == pytest.approx(4 / 6) == s["accuracy"]
    assert micro_f1(np.zeros((3, 3), dtype=int)) != micro_f1(np.zeros((3, 3), dtype=int))


def test_one_vs_rest_and_micro_areas_by_hand() -> None:
    s = summary(P, Y, CLASSES, 0)
    # NORMAL positives 0.7, 0.5; negatives 0.2, 0.1, 0.2, 0.4: every pair ordered -> 1.
    assert s["roc_auc/NORMAL"] == 1.0
    # BACTERIAL positives 0.6, 0.3; negatives 0.2, 0.3, 0.1, 0.3: 0.6 beats 4; 0.3 beats
    # 0.2 and 0.1 and ties 0.3 twice -> (4 + 2 + 1) / 8.
    assert s["roc_auc/BACTERIAL"] == pytest.approx(7 / 8)
    # VIRAL positives 0.7, 0.3; negatives 0.1, 0.2, 0.2, 0.6: 0.7 beats 4, 0.3 beats 3.
    assert s["roc_auc/VIRAL"] == pytest.approx(7 / 8)
    assert s["macro_roc_auc"] == pytest.approx((1 + 7 / 8 + 7 / 8) / 3)
    # Micro pools 18 (case, class) pairs, 6 positive: not the mean of the three areas.
    onehot = np.eye(3)[Y]
    assert s["micro_roc_auc"] == pytest.approx(roc_auc_score(onehot.ravel(), P.ravel()))
    assert s["micro_roc_auc"] != pytest.approx(s["macro_roc_auc"])
    assert s["micro_pr_auc"] == pytest.approx(average_precision_score(onehot.ravel(), P.ravel()))


def test_areas_agree_with_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 200).astype(float)  # many ties
    positive = rng.random(200) < 0.3
    assert binary_roc_auc(scores, positive) == pytest.approx(roc_auc_score(positive, scores))
    assert binary_average_precision(scores, positive) == pytest.approx(
        average_precision_score(positive, scores)
    )
    assert np.isnan(binary_roc_auc(scores, np.zeros(200, dtype=bool)))


def test_pairwise_separation_and_triage() -> None:
    # Among BACTERIAL and VIRAL cases (2..5): share p_b / (p_b + p_v) is 0.75, 1/3, 0.125, 0.5
    # for labels B, B, V, V: B's 0.75 beats both; B's 1/3 beats 0.125 only -> 3 / 4.
    assert pairwise_separation(P, Y, 1, 2) == pytest.approx(3 / 4)
    assert abnormal_pairs(4, 0) == [(1, 2), (1, 3), (2, 3)]
    assert abnormal_pairs(3, 1) == [(0, 2)]
    np.testing.assert_allclose(triage_scores(P, 0), [0.3, 0.5, 0.8, 0.9, 0.8, 0.6])
    # Not normal (cases 2..5) all score above the normals: triage ROC-AUC 1.
    s = summary(P, Y, CLASSES, 0)
    assert s["triage_roc_auc"] == 1.0
    assert s["pairwise/BACTERIAL/VIRAL"] == pytest.approx(3 / 4)
    # At 0.8: not-normal scores 0.8 0.9 0.8 0.6 -> 3 of 4 called; normals 0.3 0.5 both clear.
    assert triage_rates(P, Y, 0, 0.8) == {"triage_sensitivity": 0.75, "triage_specificity": 1.0}
    rates = triage_rates(P[2:], Y[2:], 0, 0.8)
    assert rates["triage_specificity"] != rates["triage_specificity"]  # nan: no normal case


def test_calibration_measures_by_hand() -> None:
    # Top label: confidences 0.7 0.5 0.6 0.6 0.7 0.4, correct 1 1 1 0 1 0; two bins of
    # [0, 0.5) and [0.5, 1]: bin 0 {0.4 wrong} gap 0.4; bin 1 five cases, accuracy 4/5,
    # mean confidence 3.1/5: gap 0.9/5. ECE = (0.4 + 0.9) / 6.
    assert top_label_ece(P, Y, n_bins=2) == pytest.approx(1.3 / 6)
    # Brier of case 0: 0.09 + 0.04 + 0.01 = 0.14.
    assert multiclass_brier(P[:1], Y[:1]) == pytest.approx(0.14)
    perfect = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    assert classwise_ece(perfect, np.arange(3)) == 0.0
    assert multiclass_brier(perfect, np.arange(3)) == 0.0
    curves = class_reliability(P, Y, n_bins=2)
    assert len(curves) == 3 and int(curves[0].bin_count.sum()) == 6


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.full((2, 1), 1.0), [0, 0], "K >= 2"),
        (np.full((2, 3), 0.5), [0, 1], "sum to one"),
        (np.full((2, 3), 1 / 3), [0, 3], r"\[0, 3\)"),
        (np.full((2, 3), 1 / 3), [0.0, 1.0], "integers"),
    ],
)
def test_bad_inputs_are_refused(probs: np.ndarray, labels: list[float], message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        as_probs_and_labels(probs, np.asarray(labels))


def test_resamples_draw_whole_patients_within_their_class() -> None:
    patients = np.array(["a", "a", "a", "b", "c", "c", "d", "e", "e"])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    members = patient_members(patients)
    for idx in patient_resamples(patients, labels, n_boot=50, seed=3):
        counts = np.bincount(idx, minlength=patients.size)
        for m in members:
            # Every image of a patient is drawn as often as the others of that patient.
            assert len(set(counts[m].tolist())) == 1
        drawn = {p: counts[m][0] for p, m in zip("abcde", members, strict=True)}
        # Two NORMAL patients, two BACTERIAL, one VIRAL in every resample.
        assert drawn["a"] + drawn["b"] == 2 and drawn["c"] + drawn["d"] == 2 and drawn["e"] == 1


def test_patient_bootstrap_does_not_narrow_when_images_are_copied() -> None:
    rng = np.random.default_rng(5)
    n_patients, k = 60, 3
    y_patient = np.arange(n_patients) % k
    logits = rng.normal(0, 1, (n_patients, k)) + 1.2 * np.eye(k)[y_patient]
    p_patient = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)

    def run(copies: int, grouped: bool) -> float:
        p = np.repeat(p_patient, copies, axis=0)
        y = np.repeat(y_patient, copies)
        groups = np.repeat(np.arange(n_patients), copies) if grouped else np.arange(y.size)
        result = bootstrap_summary(
            lambda i: summary(p[i], y[i], CLASSES, 0), groups, y, n_boot=300, seed=1
        )
        low, high = result["macro_roc_auc"]["ci95"]
        assert low <= result["macro_roc_auc"]["value"] <= high
        return float(high - low)

    once = run(1, grouped=True)
    # Five copies of each image add no information: grouped by patient the interval
    # keeps its width; taken as independent images it would shrink by about sqrt(5).
    assert run(5, grouped=True) > 0.75 * once
    assert run(5, grouped=False) < 0.65 * once
