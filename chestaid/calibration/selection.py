"""Choosing the calibrator a bundle keeps: the lowest report ECE, unless within noise of simpler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from chestaid.calibration.calibrators import SIMPLICITY, Calibrator, fit_calibrator, sigmoid
from chestaid.errors import CalibrationError
from chestaid.metrics import adaptive_ece, as_scores_and_labels, brier, ece, nll


def _scores(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    return {
        "ece": ece(probs, labels, n_bins),
        "adaptive_ece": adaptive_ece(probs, labels, n_bins),
        "brier": brier(probs, labels),
        "nll": nll(probs, labels),
    }


@dataclass
class CalibrationComparison:
    """Each candidate's metrics on the report cases, and which one was kept."""

    metrics: dict[str, dict[str, float]]
    chosen: str
    calibrators: dict[str, Calibrator]
    skipped: dict[str, str] = field(default_factory=dict)
    lowest_ece: str = ""
    ece_difference_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Metrics per candidate (plus ``uncalibrated``), the choice and why, parameters, skips."""
        return {
            "metrics": self.metrics,
            "chosen": self.chosen,
            "lowest_ece": self.lowest_ece or self.chosen,
            "ece_difference_vs_lowest_ci95": {
                k: list(v) for k, v in self.ece_difference_ci95.items()
            },
            "rule": "lowest report ECE, unless a simpler calibrator is within bootstrap noise of it",
            "parameters": {k: c.to_dict() for k, c in self.calibrators.items()},
            "skipped": self.skipped,
        }


def fit_and_select(
    cal_logits: ArrayLike,
    cal_labels: ArrayLike,
    report_logits: ArrayLike,
    report_labels: ArrayLike,
    *,
    candidates: Sequence[str] = ("temperature", "platt", "isotonic"),
    n_bins: int = 15,
    n_boot: int = 1000,
    seed: int = 0,
) -> CalibrationComparison:
    """Fit each candidate on the calibration cases and keep the lowest ECE on the report cases.

    The lowest ECE is kept unless its lead is within noise: a simpler candidate whose
    ECE is not significantly higher (the 95% paired-bootstrap interval of the
    difference, over the report cases, contains zero) is kept instead. Simpler maps
    keep every distinct score of the model distinct, so a worklist ordered by score
    keeps its order, and an ECE lead of a few thousandths on a few hundred cases is
    not evidence. A candidate that cannot be fitted (too few cases for isotonic) is
    skipped with its reason recorded.

    Raises:
        CalibrationError: no candidate could be fitted, or bad inputs.
    """
    rz, ry = as_scores_and_labels(report_logits, report_labels, probabilities=False)
    metrics = {"uncalibrated": _scores(sigmoid(rz), ry, n_bins)}
    fitted: dict[str, Calibrator] = {}
    skipped: dict[str, str] = {}
    for name in candidates:
        try:
            calibrator = fit_calibrator(name, cal_logits, cal_labels)
        except CalibrationError as exc:
            if name in ("temperature", "identity"):
                raise
            skipped[name] = str(exc)
            continue
        fitted[name] = calibrator
        metrics[name] = _scores(calibrator.predict_proba(rz), ry, n_bins)
    if not fitted:
        raise CalibrationError(f"no calibrator could be fitted: {skipped}")
    lowest = min(
        fitted,
        key=lambda n: (round(metrics[n]["ece"], 12), metrics[n]["nll"], SIMPLICITY.index(n)),
    )
    probs = {name: c.predict_proba(rz) for name, c in fitted.items()}
    intervals = _ece_difference_intervals(probs, ry, lowest, n_bins, n_boot, seed)
    chosen = lowest
    for name in sorted(fitted, key=SIMPLICITY.index):
        if SIMPLICITY.index(name) >= SIMPLICITY.index(lowest):
            break
        if intervals[name][0] <= 0.0:
            chosen = name
            break
    return CalibrationComparison(
        metrics=metrics,
        chosen=chosen,
        calibrators=fitted,
        skipped=skipped,
        lowest_ece=lowest,
        ece_difference_ci95=intervals,
    )


def _ece_difference_intervals(
    probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    reference: str,
    n_bins: int,
    n_boot: int,
    seed: int,
) -> dict[str, tuple[float, float]]:
    """95% paired-bootstrap intervals of ECE(candidate) - ECE(reference), per candidate."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    diffs: dict[str, list[float]] = {name: [] for name in probs if name != reference}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        base = ece(probs[reference][idx], labels[idx], n_bins)
        for name in diffs:
            diffs[name].append(ece(probs[name][idx], labels[idx], n_bins) - base)
    out = {name: (0.0, 0.0) for name in probs if name == reference}
    for name, values in diffs.items():
        low, high = np.quantile(values, [0.025, 0.975])
        out[name] = (float(low), float(high))
    return out
