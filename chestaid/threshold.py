"""The governed threshold: the operating point set for a target sensitivity.

One rule, used wherever a threshold is derived (``chestaid calibrate`` on a bundle,
the daemon's recalibration on local feedback): among the thresholds whose sensitivity
on the cases reaches the target, the one with the highest specificity; of thresholds
with equal specificity, the lower one (it gives the same specificity and misses fewer
pneumonias).

A case is called positive when its score is at or above the threshold. Only the
distinct scores of the cases separate them differently, and the threshold chosen is
always the score of a pneumonia case (the lowest one the rule keeps): a value a
reader can find among the cases, not a midpoint of two saturated scores that
floating point may not hold apart. The sensitivity and specificity reported are
counted at that very value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError
from chestaid.metrics import as_scores_and_labels, wilson_interval

RULE = (
    "highest specificity among thresholds reaching the target sensitivity; "
    "ties to the lower threshold; the threshold is a pneumonia case's score"
)
DEFAULT_BOOTSTRAP = 1000


@dataclass(frozen=True)
class GovernedThreshold:
    """The threshold set for a target sensitivity, and what it achieved where it was set.

    The 95% intervals are Wilson intervals of the sensitivity and specificity counted
    on the cases the threshold was set on; ``threshold_ci95`` is a percentile bootstrap
    interval of the threshold the rule picks on resampled cases (None when not run).
    """

    threshold: float
    target_sensitivity: float
    achieved_sensitivity: float
    specificity: float
    n_positive: int
    n_negative: int
    true_positives: int
    true_negatives: int
    sensitivity_ci95: tuple[float, float]
    specificity_ci95: tuple[float, float]
    threshold_ci95: tuple[float, float] | None = None
    n_boot: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the manifest's threshold record); the first six keys are the old ones."""
        return {
            "threshold": self.threshold,
            "target_sensitivity": self.target_sensitivity,
            "achieved_sensitivity": self.achieved_sensitivity,
            "specificity": self.specificity,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "rule": RULE,
            "true_positives": self.true_positives,
            "true_negatives": self.true_negatives,
            "sensitivity_ci95": list(self.sensitivity_ci95),
            "specificity_ci95": list(self.specificity_ci95),
            "threshold_ci95": None if self.threshold_ci95 is None else list(self.threshold_ci95),
            "n_boot": self.n_boot,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> GovernedThreshold:
        """Read a threshold record, old or new.

        A record written before the intervals were kept has only the first six keys;
        its counts are recovered from the rates and the Wilson intervals computed
        from them, and it has no bootstrap interval of the threshold.

        Raises:
            CalibrationError: the record lacks the threshold or garbles a value.
        """
        if not isinstance(record, Mapping):
            raise CalibrationError("a threshold record must be a mapping")
        try:
            n_pos = int(record.get("n_positive", 0))
            n_neg = int(record.get("n_negative", 0))
            sensitivity = float(record.get("achieved_sensitivity", math.nan))
            specificity = float(record.get("specificity", math.nan))
            tp = int(record.get("true_positives", _count(sensitivity, n_pos)))
            tn = int(record.get("true_negatives", _count(specificity, n_neg)))
            spread = record.get("threshold_ci95")
            return cls(
                threshold=float(record["threshold"]),
                target_sensitivity=float(record.get("target_sensitivity", math.nan)),
                achieved_sensitivity=sensitivity,
                specificity=specificity,
                n_positive=n_pos,
                n_negative=n_neg,
                true_positives=tp,
                true_negatives=tn,
                sensitivity_ci95=_pair(record.get("sensitivity_ci95"), tp, n_pos),
                specificity_ci95=_pair(record.get("specificity_ci95"), tn, n_neg),
                threshold_ci95=None if spread is None else _pair(spread, 0, 0),
                n_boot=int(record.get("n_boot", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"threshold record lacks or garbles a value: {exc}") from exc


def _count(rate: float, n: int) -> int:
    return 0 if n == 0 or math.isnan(rate) else round(rate * n)


def _pair(stored: Any, successes: int, n: int) -> tuple[float, float]:
    if stored is None:
        return wilson_interval(min(max(successes, 0), n), n)
    low, high = stored
    return float(low), float(high)


def _pick(scores: np.ndarray, labels: np.ndarray, needed: int) -> float:
    """The rule on one set of cases; ``needed`` is the number of positives to keep."""
    values, at = np.unique(scores, return_inverse=True)
    positives_at = np.bincount(at, weights=labels, minlength=values.size)
    negatives_at = np.bincount(at, weights=1 - labels, minlength=values.size)
    # At threshold values[i]: positives kept (score >= it), negatives below it.
    kept = np.cumsum(positives_at[::-1])[::-1]
    negatives_below = np.cumsum(negatives_at) - negatives_at
    # kept falls as the threshold rises, so the thresholds reaching the target are a
    # prefix, and specificity (negatives_below) rises along it: the last one reaching
    # the target has the highest specificity, and the first with that same count of
    # negatives below it is the lower threshold of the tie (a positive's score).
    last = int(np.flatnonzero(kept >= needed)[-1])
    first = int(np.searchsorted(negatives_below, negatives_below[last], side="left"))
    return float(values[first])


def governed_threshold(
    probs: ArrayLike,
    labels: ArrayLike,
    target_sensitivity: float = 0.90,
    *,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> GovernedThreshold:
    """The threshold of :data:`RULE` for ``target_sensitivity`` on these cases.

    Args:
        probs: calibrated scores in [0, 1].
        labels: 1 for pneumonia, 0 for normal.
        target_sensitivity: in (0, 1].
        n_boot: bootstrap resamples (within each class) for the interval of the
            threshold; 0 for none.
        seed: of the bootstrap.

    Returns:
        The threshold, the sensitivity and specificity counted at it on these cases
        with their 95% Wilson intervals, and the bootstrap interval of the threshold
        (two case scores: the 2.5th and 97.5th percentiles, taken as scores that occur).

    Raises:
        CalibrationError: a target outside (0, 1], no positive or no negative case, or
            bad scores or labels.
    """
    p, y = as_scores_and_labels(probs, labels)
    if not 0.0 < target_sensitivity <= 1.0:
        raise CalibrationError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
    if n_pos == 0:
        raise CalibrationError("a threshold for a sensitivity needs positive cases; got none")
    if n_neg == 0:
        raise CalibrationError("a threshold chosen for specificity needs normal cases; got none")
    # The tolerance keeps 0.9 * 10 from asking for a tenth positive through rounding.
    needed = max(int(np.ceil(target_sensitivity * n_pos - 1e-9)), 1)
    threshold = _pick(p, y, needed)
    called = p >= threshold
    tp = int(np.sum(called & (y == 1)))
    tn = int(np.sum(~called & (y == 0)))
    return GovernedThreshold(
        threshold=threshold,
        target_sensitivity=float(target_sensitivity),
        achieved_sensitivity=tp / n_pos,
        specificity=tn / n_neg,
        n_positive=n_pos,
        n_negative=n_neg,
        true_positives=tp,
        true_negatives=tn,
        sensitivity_ci95=wilson_interval(tp, n_pos),
        specificity_ci95=wilson_interval(tn, n_neg),
        threshold_ci95=_bootstrap(p, y, target_sensitivity, n_boot, seed) if n_boot else None,
        n_boot=int(n_boot),
    )


def _bootstrap(
    p: np.ndarray, y: np.ndarray, target: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of the threshold over resamples that keep the class counts."""
    rng = np.random.default_rng(seed)
    positives, negatives = p[y == 1], p[y == 0]
    labels = np.concatenate([np.ones(positives.size), np.zeros(negatives.size)])
    needed = max(int(np.ceil(target * positives.size - 1e-9)), 1)
    picks = np.empty(n_boot)
    for b in range(n_boot):
        scores = np.concatenate(
            [
                rng.choice(positives, positives.size, replace=True),
                rng.choice(negatives, negatives.size, replace=True),
            ]
        )
        picks[b] = _pick(scores, labels, needed)
    low = float(np.quantile(picks, 0.025, method="lower"))
    high = float(np.quantile(picks, 0.975, method="higher"))
    return low, high
