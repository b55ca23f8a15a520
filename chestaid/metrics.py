"""Metrics of discrimination and calibration for a binary score (1 = pneumonia).

Pure functions over 1-D arrays. Probabilities are calibrated scores in [0, 1]; a
case is called positive when its score is at or above the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError, ConfigurationError


def _labels(labels: ArrayLike, n: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise CalibrationError(f"labels must be 1-D, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise CalibrationError(f"scores and labels differ in length: {n} vs {len(y)}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise CalibrationError("labels must be 0 (normal) or 1 (pneumonia)")
    return y.astype(np.int64)


def _scores(scores: ArrayLike, *, probabilities: bool) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise CalibrationError(f"scores must be 1-D, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise CalibrationError("scores contain NaN or infinite values")
    if probabilities and s.size and (s.min() < 0.0 or s.max() > 1.0):
        raise CalibrationError("probabilities must lie in [0, 1]")
    return s


def as_scores_and_labels(
    scores: ArrayLike, labels: ArrayLike, *, probabilities: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a score array and a label array of the same length.

    Raises:
        CalibrationError: not 1-D, lengths differ, labels not 0/1, NaN, no cases, or
            (with ``probabilities``) scores outside [0, 1].
    """
    s = _scores(scores, probabilities=probabilities)
    y = _labels(labels, len(s))
    if len(s) == 0:
        raise CalibrationError("no cases given")
    return s, y


def _both_classes(y: np.ndarray, what: str) -> None:
    if y.min() == y.max():
        raise CalibrationError(
            f"{what} is undefined with one class only ({len(y)} cases, all {int(y[0])})"
        )


def _binned_gap(p: np.ndarray, y: np.ndarray, bins: np.ndarray) -> float:
    total = 0.0
    for b in np.unique(bins):
        members = bins == b
        total += members.sum() * abs(float(y[members].mean()) - float(p[members].mean()))
    return total / len(p)


def ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins of [0, 1].

    Each bin contributes its share of cases times |fraction positive - mean score|;
    the top bin includes 1.0.
    """
    p, y = as_scores_and_labels(probs, labels)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    return _binned_gap(p, y, bins)


def adaptive_ece(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error over equal-mass bins (score order, ties kept together)."""
    p, y = as_scores_and_labels(probs, labels)
    # Bins by rank; equal scores share the bin of their first rank.
    unique, inverse = np.unique(p, return_inverse=True)
    first_rank = np.searchsorted(np.sort(p), unique, side="left")
    bins = (first_rank * min(n_bins, len(p))) // len(p)
    return _binned_gap(p, y, bins[inverse])


def brier(probs: ArrayLike, labels: ArrayLike) -> float:
    """Mean squared difference between score and label."""
    p, y = as_scores_and_labels(probs, labels)
    return float(np.mean((p - y) ** 2))


def nll(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy (natural log), scores clipped to [eps, 1 - eps]."""
    p, y = as_scores_and_labels(probs, labels)
    q = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve (ties count one half); any monotone score works."""
    from sklearn.metrics import roc_auc_score

    s, y = as_scores_and_labels(scores, labels, probabilities=False)
    _both_classes(y, "ROC-AUC")
    return float(roc_auc_score(y, s))


def pr_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision."""
    from sklearn.metrics import average_precision_score

    s, y = as_scores_and_labels(scores, labels, probabilities=False)
    _both_classes(y, "PR-AUC")
    return float(average_precision_score(y, s))


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    stratified: bool = True,
    clusters: ArrayLike | None = None,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of ``metric``.

    Resampling is done within each class by default, so every resample keeps the
    class counts and AUCs stay defined. With ``clusters`` (a patient key per case),
    whole patients are resampled instead of images, since images of one patient are
    not independent; a patient counts as positive when any of its cases is.

    Returns:
        ``(point, low, high)`` for a ``1 - alpha`` interval.

    Raises:
        CalibrationError: scores and labels (or clusters) of different lengths.
    """
    s, y = as_scores_and_labels(scores, labels, probabilities=False)
    point = float(metric(s, y))
    rng = np.random.default_rng(seed)
    if clusters is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        keys = np.asarray(clusters)
        if keys.shape != y.shape:
            raise CalibrationError(f"{keys.shape[0]} cluster keys for {len(y)} cases")
        _, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        members = np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)
    unit_label = np.array([int(y[m].max()) for m in members])
    strata = (
        [np.flatnonzero(unit_label == c) for c in (0, 1)]
        if stratified
        else [np.arange(len(members))]
    )
    strata = [g for g in strata if len(g)]
    values = np.empty(n_boot)
    for b in range(n_boot):
        while True:
            units = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in strata])
            idx = np.concatenate([members[u] for u in units])
            if stratified or y[idx].min() != y[idx].max() or y.min() == y.max():
                break
        values[b] = metric(s[idx], y[idx])
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return point, float(low), float(high)


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts at one threshold, with the rates read from them (nan when undefined)."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def sensitivity(self) -> float:
        """TP / (TP + FN)."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP)."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:
        """TP / (TP + FP)."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        """TN / (TN + FN)."""
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN)."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float:
        """(TP + TN) / all."""
        return _ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn)

    def to_dict(self) -> dict[str, float | int]:
        """Counts and rates."""
        return {
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
            "f1": self.f1,
            "accuracy": self.accuracy,
        }


def confusion_at(probs: ArrayLike, labels: ArrayLike, threshold: float) -> ConfusionMatrix:
    """The confusion matrix when scores at or above ``threshold`` are called positive."""
    p, y = as_scores_and_labels(probs, labels)
    called = p >= threshold
    return ConfusionMatrix(
        tp=int(np.sum(called & (y == 1))),
        fp=int(np.sum(called & (y == 0))),
        tn=int(np.sum(~called & (y == 0))),
        fn=int(np.sum(~called & (y == 1))),
    )


def threshold_table(
    probs: ArrayLike, labels: ArrayLike, thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """One row per threshold: the threshold, rates and counts."""
    p, y = as_scores_and_labels(probs, labels)
    rows = []
    for t in thresholds:
        cm = confusion_at(p, y, t)
        rows.append({"threshold": float(t), **{k: float(v) for k, v in cm.to_dict().items()}})
    return rows


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per equal-width bin: edges, mean score, fraction positive and count (empty bins nan)."""

    bin_edges: np.ndarray
    bin_mean_prob: np.ndarray
    bin_frac_pos: np.ndarray
    bin_count: np.ndarray


def reliability_curve(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> ReliabilityCurve:
    """The data of a reliability diagram over ``n_bins`` equal-width bins."""
    p, y = as_scores_and_labels(probs, labels)
    bins = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(bins, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(bins, weights=y, minlength=n_bins) / count
    return ReliabilityCurve(
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
        bin_mean_prob=mean_prob,
        bin_frac_pos=frac_pos,
        bin_count=count,
    )


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval of a proportion; (nan, nan) when n is 0."""
    from scipy.stats import norm

    if n == 0:
        return float("nan"), float("nan")
    if not 0 <= successes <= n:
        raise CalibrationError(f"successes must be between 0 and n, got {successes} of {n}")
    z = float(norm.ppf(1 - alpha / 2))
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


PSI_BINS = 10
PSI_FLOOR = 1e-4  # stands in for an empty bin's share, so the index stays finite


def population_stability_index(
    reference: ArrayLike, current: ArrayLike, *, bins: int = PSI_BINS, floor: float = PSI_FLOOR
) -> float:
    """The population stability index of ``current`` against ``reference``.

    Both samples are binned at the reference's quantiles (deciles by default; tied
    edges merged), and ``sum((q - p) * ln(q / p))`` is taken over the bins' shares
    ``p`` (reference) and ``q`` (current), each share at least ``floor``.

    Args:
        reference: the reference sample (scores, logits or any statistic), 1-D.
        current: the sample compared with it, 1-D.
        bins: how many quantile bins of the reference.
        floor: the smallest share a bin is given.

    Returns:
        The index (0 for identical distributions), or nan when either sample is empty.

    Raises:
        ConfigurationError: ``bins`` is below 1 or ``floor`` not in (0, 1).
    """
    if bins < 1 or not 0.0 < floor < 1.0:
        raise ConfigurationError(f"bins must be >= 1 and floor in (0, 1); got {bins}, {floor}")
    ref_sample = np.asarray(reference, dtype=np.float64).ravel()
    cur_sample = np.asarray(current, dtype=np.float64).ravel()
    if ref_sample.size == 0 or cur_sample.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(ref_sample, np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, ref_sample, side="right"), minlength=edges.size + 1)
    cur = np.bincount(np.searchsorted(edges, cur_sample, side="right"), minlength=edges.size + 1)
    p = np.maximum(ref / ref.sum(), floor)
    q = np.maximum(cur / cur.sum(), floor)
    return float(np.sum((q - p) * np.log(q / p)))
