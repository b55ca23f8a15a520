"""Metrics of an N-class score (N >= 3): discrimination, calibration and the triage split.

Pure functions over an (n, K) array of probabilities (rows summing to one) and integer
labels in [0, K). One-vs-rest measures treat class k as positive and every other class
as negative. Areas are computed here rather than through scikit-learn, because the
patient bootstrap computes every one of them a thousand times: the ROC-AUC is the
Mann-Whitney statistic (ties count one half) and the PR-AUC is average precision, with
the same definitions as ``roc_auc_score`` and ``average_precision_score``.

An area that is undefined (a class absent, or all cases one class) is nan, so that a
summary of many metrics can be computed on any resample; callers decide what nan means.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError
from chestaid.metrics import ReliabilityCurve, reliability_curve

ROW_SUM_TOLERANCE = 1e-6


def as_probs_and_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Check an (n, K) probability array (K >= 2, rows summing to one) and its labels.

    Raises:
        CalibrationError: wrong shapes, no cases, values outside [0, 1], rows not
            summing to one, or labels that are not integers in [0, K).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise CalibrationError(f"class probabilities must have shape (n, K >= 2), got {p.shape}")
    if p.shape[0] == 0:
        raise CalibrationError("no cases given")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise CalibrationError("class probabilities must be finite and lie in [0, 1]")
    if np.abs(p.sum(axis=1) - 1.0).max() > ROW_SUM_TOLERANCE:
        raise CalibrationError("class probabilities must sum to one in every row")
    y = np.asarray(labels)
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise CalibrationError(f"labels must be {p.shape[0]} integers, got shape {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise CalibrationError(f"labels must lie in [0, {p.shape[1]})")
    return p, y.astype(np.int64)


def binary_roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC-AUC of ``scores`` for the boolean ``positive``; nan without both kinds."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # ties share their mean rank: one half each
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision, sum over distinct thresholds of (recall step) x precision; nan
    without a positive."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, hit = scores[order], positive[order].astype(np.float64)
    # The last case of each run of equal scores: a threshold between distinct scores.
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp = np.cumsum(hit)[ends]
    precision = tp / (ends + 1)
    recall_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(recall_step * precision))


def one_vs_rest_auc(probs: ArrayLike, labels: ArrayLike) -> dict[str, np.ndarray]:
    """Per class, the one-vs-rest ROC-AUC and PR-AUC of that class's probability.

    Returns:
        ``{"roc_auc": (K,), "pr_auc": (K,)}``, nan for a class absent from the cases.
    """
    p, y = as_probs_and_labels(probs, labels)
    k = p.shape[1]
    roc = np.array([binary_roc_auc(p[:, c], y == c) for c in range(k)])
    pr = np.array([binary_average_precision(p[:, c], y == c) for c in range(k)])
    return {"roc_auc": roc, "pr_auc": pr}


def micro_auc(probs: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """Micro-averaged ROC-AUC and PR-AUC: every (case, class) pair as one binary decision."""
    p, y = as_probs_and_labels(probs, labels)
    onehot = np.eye(p.shape[1], dtype=bool)[y]
    return {
        "roc_auc": binary_roc_auc(p.ravel(), onehot.ravel()),
        "pr_auc": binary_average_precision(p.ravel(), onehot.ravel()),
    }


def confusion_matrix(labels: ArrayLike, predicted: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts with true classes in rows and predicted classes in columns, (K, K) int64."""
    y = np.asarray(labels, dtype=np.int64)
    q = np.asarray(predicted, dtype=np.int64)
    if y.shape != q.shape:
        raise CalibrationError(f"labels and predictions differ in shape: {y.shape} vs {q.shape}")
    cm: np.ndarray = np.bincount(y * num_classes + q, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def f1_per_class(cm: np.ndarray) -> np.ndarray:
    """Per class, 2 TP / (2 TP + FP + FN) of a confusion matrix; nan for a class never
    present nor predicted."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), np.nan)
    return out


def micro_f1(cm: np.ndarray) -> float:
    """Micro-averaged F1: pooled TP, FP and FN over classes (for one label a case, the accuracy)."""
    tp = float(np.trace(cm))
    errors = float(cm.sum()) - tp  # each error is one FP (of the predicted class) and one FN
    return 2 * tp / (2 * tp + 2 * errors) if cm.sum() else float("nan")


def pairwise_separation(probs: ArrayLike, labels: ArrayLike, a: int, b: int) -> float:
    """ROC-AUC of ``p_a / (p_a + p_b)`` for class ``a`` against ``b``, among cases of either.

    How well the model tells two kinds of finding apart where one of them is present,
    whatever it thinks of the other classes. nan when either class is absent.
    """
    p, y = as_probs_and_labels(probs, labels)
    keep = (y == a) | (y == b)
    pa, pb = p[keep, a], p[keep, b]
    total = pa + pb
    share = np.where(total > 0, pa / np.where(total > 0, total, 1.0), 0.5)
    return binary_roc_auc(share, y[keep] == a)


def triage_scores(probs: ArrayLike, normal_index: int) -> np.ndarray:
    """The triage score of each case, P(not normal) = 1 - p[normal]."""
    p = np.asarray(probs, dtype=np.float64)
    out: np.ndarray = np.clip(1.0 - p[:, normal_index], 0.0, 1.0)
    return out


def triage_rates(
    probs: ArrayLike, labels: ArrayLike, normal_index: int, threshold: float
) -> dict[str, float]:
    """Sensitivity and specificity of "not normal" when P(not normal) >= ``threshold``
    (nan where a kind of case is absent)."""
    p, y = as_probs_and_labels(probs, labels)
    called = triage_scores(p, normal_index) >= threshold
    sick = y != normal_index
    return {
        "triage_sensitivity": float(called[sick].mean()) if sick.any() else float("nan"),
        "triage_specificity": float((~called[~sick]).mean()) if (~sick).any() else float("nan"),
    }


def top_label_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """ECE of the top label: |accuracy - mean confidence| over equal-width confidence bins."""
    p, y = as_probs_and_labels(probs, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=confidence, minlength=n_bins)
    )
    return float(gap.sum() / count.sum())


def classwise_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """The mean over classes of the one-vs-rest ECE of each class's probability."""
    p, y = as_probs_and_labels(probs, labels)
    total = 0.0
    for c in range(p.shape[1]):
        bins = np.minimum((p[:, c] * n_bins).astype(np.int64), n_bins - 1)
        hit = (y == c).astype(np.float64)
        gap = np.abs(
            np.bincount(bins, weights=hit, minlength=n_bins)
            - np.bincount(bins, weights=p[:, c], minlength=n_bins)
        )
        total += float(gap.sum()) / len(y)
    return total / int(p.shape[1])


def multiclass_brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean over cases of sum over classes of (p_k - [y = k])^2 (0 best, 2 worst)."""
    p, y = as_probs_and_labels(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def class_reliability(
    probs: ArrayLike, labels: ArrayLike, n_bins: int = 10
) -> list[ReliabilityCurve]:
    """One-vs-rest reliability curve of each class's probability, in class order."""
    p, y = as_probs_and_labels(probs, labels)
    return [
        reliability_curve(p[:, c], (y == c).astype(np.int64), n_bins) for c in range(p.shape[1])
    ]


def summary(
    probs: ArrayLike, labels: ArrayLike, classes: Sequence[str], normal_index: int
) -> dict[str, float]:
    """Every headline number of an N-class evaluation, as one flat mapping.

    Keys: ``accuracy``, ``macro_/micro_roc_auc``, ``macro_/micro_pr_auc``,
    ``macro_/micro_f1``, ``roc_auc/<class>``, ``pr_auc/<class>``, ``f1/<class>``,
    ``triage_roc_auc`` (P(not normal) against not normal) and ``pairwise/<a>/<b>``
    for each pair of classes other than normal. Macro averages are over the classes
    present (nan areas left out); micro averages pool every (case, class) pair.
    """
    p, y = as_probs_and_labels(probs, labels)
    if len(classes) != p.shape[1]:
        raise CalibrationError(f"{len(classes)} class names for {p.shape[1]} probabilities")
    ovr = one_vs_rest_auc(p, y)
    micro = micro_auc(p, y)
    cm = confusion_matrix(y, p.argmax(axis=1), p.shape[1])
    f1 = f1_per_class(cm)
    out: dict[str, float] = {
        "accuracy": float(np.trace(cm) / cm.sum()),
        "macro_roc_auc": _nanmean(ovr["roc_auc"]),
        "micro_roc_auc": micro["roc_auc"],
        "macro_pr_auc": _nanmean(ovr["pr_auc"]),
        "micro_pr_auc": micro["pr_auc"],
        "macro_f1": _nanmean(f1),
        "micro_f1": micro_f1(cm),
        "triage_roc_auc": binary_roc_auc(triage_scores(p, normal_index), y != normal_index),
    }
    for c, name in enumerate(classes):
        out[f"roc_auc/{name}"] = float(ovr["roc_auc"][c])
        out[f"pr_auc/{name}"] = float(ovr["pr_auc"][c])
        out[f"f1/{name}"] = float(f1[c])
    for a, b in abnormal_pairs(len(classes), normal_index):
        out[f"pairwise/{classes[a]}/{classes[b]}"] = pairwise_separation(p, y, a, b)
    return out


def abnormal_pairs(num_classes: int, normal_index: int) -> list[tuple[int, int]]:
    """Every pair (a, b), a < b, of classes other than the normal one."""
    others = [c for c in range(num_classes) if c != normal_index]
    return [(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")
