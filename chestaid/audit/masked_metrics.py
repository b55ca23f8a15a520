"""Classification figures of each masked variant beside the unmasked images.

Pure functions over logits (N, K) and true labels (N,). Probabilities are the
softmax of the raw logits; the predicted class is the arg-max.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from chestaid.metrics import wilson_interval


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def macro_roc_auc(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """One-vs-rest ROC-AUC per class and their mean over the classes where it is defined."""
    from sklearn.metrics import roc_auc_score

    per_class: list[float | None] = []
    for k in range(probs.shape[1]):
        positive = labels == k
        if positive.all() or not positive.any():
            per_class.append(None)
        else:
            per_class.append(float(roc_auc_score(positive, probs[:, k])))
    defined = [v for v in per_class if v is not None]
    return {"macro": float(np.mean(defined)) if defined else None, "per_class": per_class}


def classification_figures(
    logits: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro ROC-AUC and per-class recall (with a 95% Wilson interval)."""
    predicted = logits.argmax(axis=1)
    auc = macro_roc_auc(softmax(logits), labels)
    recall: dict[str, Any] = {}
    for k, name in enumerate(classes):
        n = int(np.sum(labels == k))
        hits = int(np.sum((labels == k) & (predicted == k)))
        recall[name] = {
            "n": n,
            "recall": hits / n if n else None,
            "ci95": list(wilson_interval(hits, n)) if n else None,
        }
    return {
        "n": len(labels),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else None,
        "macro_roc_auc": auc["macro"],
        "roc_auc_per_class": dict(zip(classes, auc["per_class"], strict=True)),
        "recall": recall,
    }


def changed_predictions(
    reference: np.ndarray, other: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """How many arg-max predictions differ between two logit arrays, overall and by true class."""
    changed = reference.argmax(axis=1) != other.argmax(axis=1)
    return {
        "total": int(changed.sum()),
        "by_true_class": {name: int(changed[labels == k].sum()) for k, name in enumerate(classes)},
    }


def masked_comparison(
    logits: Mapping[str, np.ndarray], labels: np.ndarray, classes: Sequence[str], reference: str
) -> dict[str, Any]:
    """Figures of every variant, and for each non-reference variant its changed predictions."""
    result: dict[str, Any] = {}
    for name, values in logits.items():
        entry = classification_figures(values, labels, classes)
        if name != reference:
            entry["changed_vs_unmasked"] = changed_predictions(
                logits[reference], values, labels, classes
            )
        result[name] = entry
    return result
