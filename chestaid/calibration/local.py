"""Recalibration for a new site: calibrators compared by cross-validated NLL on its own cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from chestaid.calibration.calibrators import Calibrator, fit_calibrator
from chestaid.errors import CalibrationError
from chestaid.metrics import ece, nll

LOCAL_METHODS = ("temperature", "platt", "isotonic")


@dataclass(frozen=True)
class LocalCalibration:
    """Calibrators compared by cross-validation on local cases, and the one chosen.

    ``out_of_fold`` are the chosen method's probabilities for each case from a model
    fitted without that case: honest estimates of how it calibrates new cases.
    """

    chosen: str
    calibrator: Calibrator
    cv_nll: dict[str, float]
    cv_ece: dict[str, float]
    out_of_fold: np.ndarray
    n_cases: int

    def to_dict(self) -> dict[str, Any]:
        """The comparison as plain values."""
        return {
            "chosen": self.chosen,
            "calibrator": self.calibrator.to_dict(),
            "cv_nll": self.cv_nll,
            "cv_ece": self.cv_ece,
            "n_cases": self.n_cases,
        }


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per case, each fold holding its share of positives and negatives."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(labels.size, dtype=int)
    for cls in (0, 1):
        index = np.flatnonzero(labels == cls)
        rng.shuffle(index)
        assignment[index] = np.arange(index.size) % folds
    return assignment


def select_local_calibration(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    folds: int = 5,
    seed: int = 0,
    min_isotonic_cases: int = 300,
) -> LocalCalibration:
    """Choose a recalibration for a new site by cross-validated NLL on its own cases.

    Temperature scaling cannot move the decision boundary; at a new site the error is
    usually a shift of the intercept, so Platt scaling on the logit (slope and
    intercept) is compared beside it, and isotonic regression only with at least
    ``min_isotonic_cases`` cases. The one with the lowest out-of-fold NLL is chosen
    and refitted on all cases.

    Raises:
        CalibrationError: fewer than ``2 * folds`` cases, or a class with fewer than
            ``folds`` cases.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(int).ravel()
    if z.size != y.size or z.size < 2 * folds:
        raise CalibrationError(f"need at least {2 * folds} cases with logits and labels")
    if min(int(y.sum()), int((1 - y).sum())) < folds:
        raise CalibrationError(f"need at least {folds} positive and {folds} negative cases")
    methods = [m for m in LOCAL_METHODS if m != "isotonic" or z.size >= min_isotonic_cases]
    fold_of = _stratified_folds(y, folds, seed)
    oof = {m: np.empty(z.size) for m in methods}
    for k in range(folds):
        test = fold_of == k
        for m in methods:
            oof[m][test] = fit_calibrator(m, z[~test], y[~test]).predict_proba(z[test])
    cv_nll = {m: float(nll(oof[m], y)) for m in methods}
    cv_ece = {m: float(ece(oof[m], y, n_bins=10)) for m in methods}
    chosen = min(methods, key=lambda m: cv_nll[m])
    return LocalCalibration(
        chosen=chosen,
        calibrator=fit_calibrator(chosen, z, y),
        cv_nll=cv_nll,
        cv_ece=cv_ece,
        out_of_fold=oof[chosen],
        n_cases=int(z.size),
    )
