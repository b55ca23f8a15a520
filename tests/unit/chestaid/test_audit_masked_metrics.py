"""Figures of masked variants: accuracy, recall, macro ROC-AUC and changed predictions."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.audit.masked_metrics import changed_predictions, masked_comparison, softmax

CLASSES = ["NORMAL", "BACTERIAL", "VIRAL", "COVID-19"]


def _logits(predicted: list[int]) -> np.ndarray:
    out = np.zeros((len(predicted), 4))
    out[np.arange(len(predicted)), predicted] = 2.0
    return out


def test_masked_comparison_counts_recall_and_changes_against_the_unmasked() -> None:
    labels = np.array([0, 1, 2, 3, 3, 3])
    unmasked = _logits([0, 1, 2, 3, 3, 3])
    masked = _logits([0, 1, 2, 0, 0, 3])  # two COVID-19 cases move to NORMAL
    result = masked_comparison(
        {"unmasked": unmasked, "border": masked}, labels, CLASSES, "unmasked"
    )
    assert result["unmasked"]["accuracy"] == 1.0
    assert result["unmasked"]["recall"]["COVID-19"]["recall"] == 1.0
    assert result["border"]["recall"]["COVID-19"]["recall"] == pytest.approx(1 / 3)
    assert result["border"]["accuracy"] == pytest.approx(4 / 6)
    assert result["border"]["changed_vs_unmasked"]["total"] == 2
    assert result["border"]["changed_vs_unmasked"]["by_true_class"]["COVID-19"] == 2
    assert "changed_vs_unmasked" not in result["unmasked"]
    assert result["unmasked"]["macro_roc_auc"] == pytest.approx(1.0)
    assert result["border"]["macro_roc_auc"] < 1.0


def test_a_class_without_cases_has_no_recall_and_no_auc() -> None:
    labels = np.array([0, 1, 1])
    result = masked_comparison({"u": _logits([0, 1, 0])}, labels, CLASSES, "u")["u"]
    assert result["recall"]["VIRAL"]["recall"] is None
    assert result["roc_auc_per_class"]["VIRAL"] is None
    assert result["recall"]["BACTERIAL"]["recall"] == pytest.approx(0.5)


def test_softmax_rows_sum_to_one_even_for_huge_logits() -> None:
    p = softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    assert np.allclose(p.sum(axis=1), 1.0) and np.isfinite(p).all()
    assert changed_predictions(p, p, np.array([0, 1]), ["a", "b", "c"])["total"] == 0
