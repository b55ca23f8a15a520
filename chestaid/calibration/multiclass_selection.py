"""Choosing an N-class bundle's calibrator: cross-validated NLL, grouped by patient.

Temperature scaling (one parameter) and vector scaling (a slope and an offset per
class) are each fitted K times on the calibration cases, every time without one fold
of patients, and judged on that fold: every case then has an out-of-fold probability
from a calibrator that never saw its patient. The one with the lowest mean out-of-fold
NLL is kept, unless a simpler one is within noise of it: the 95% patient-bootstrap
interval of the paired difference in NLL (simpler minus lowest) reaches zero. Vector
scaling has 2K parameters and follows a small calibration set's chance imbalances;
temperature scaling keeps every decision of the model and needs evidence to be left.

The uncalibrated model (identity) is measured beside them as the baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from chestaid.calibration.multiclass import (
    MULTICLASS_SIMPLICITY,
    IdentityMultiClass,
    MultiClassCalibrator,
    as_logits_and_labels,
    fit_multiclass,
)
from chestaid.errors import CalibrationError
from chestaid.multiclass_metrics import classwise_ece, multiclass_brier, top_label_ece
from chestaid.patient_bootstrap import bootstrap_summary

DEFAULT_CANDIDATES = ("temperature", "vector")
DEFAULT_FOLDS = 5
RULE = (
    "lowest cross-validated NLL (folds grouped by patient), unless a simpler calibrator's "
    "95% patient-bootstrap interval of the paired NLL difference reaches zero"
)
_EPS = 1e-12


@dataclass(frozen=True)
class MultiClassSelection:
    """Each candidate's cross-validated measures, the one kept, and each refitted on all cases.

    ``out_of_fold`` holds each candidate's probabilities for every case from the fold
    that left the case's patient out (the identity's are its plain softmax).
    """

    chosen: str
    lowest_nll: str
    calibrators: dict[str, MultiClassCalibrator]
    metrics: dict[str, dict[str, float]]
    nll_difference_ci95: dict[str, tuple[float, float]]
    out_of_fold: dict[str, np.ndarray] = field(repr=False)
    folds: int
    n_cases: int
    n_patients: int

    @property
    def calibrator(self) -> MultiClassCalibrator:
        """The chosen calibrator, fitted on every calibration case."""
        return self.calibrators[self.chosen]

    def to_dict(self) -> dict[str, Any]:
        """The comparison as plain values (the manifest's ``comparison`` record)."""
        return {
            "metrics": self.metrics,
            "chosen": self.chosen,
            "lowest_nll": self.lowest_nll,
            "nll_difference_vs_lowest_ci95": {
                k: list(v) for k, v in self.nll_difference_ci95.items()
            },
            "rule": RULE,
            "folds": self.folds,
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
            "parameters": {k: c.to_dict() for k, c in self.calibrators.items()},
        }


def calibration_measures(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """NLL, top-label ECE, classwise ECE and Brier of class probabilities."""
    return {
        "nll": float(np.mean(_case_nll(probs, labels))),
        "ece": top_label_ece(probs, labels),
        "classwise_ece": classwise_ece(probs, labels),
        "brier": multiclass_brier(probs, labels),
    }


def _case_nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out: np.ndarray = -np.log(np.clip(probs[np.arange(labels.size), labels], _EPS, 1.0))
    return out


def patient_folds(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number per case: whole patients to a fold, classes spread over the folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.empty(labels.size, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(labels.size), labels, groups)):
        assignment[held_out] = fold
    return assignment


def select_multiclass_calibration(
    logits: ArrayLike,
    labels: ArrayLike,
    groups: ArrayLike,
    *,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    folds: int = DEFAULT_FOLDS,
    n_boot: int = 1000,
    seed: int = 0,
) -> MultiClassSelection:
    """Fit and compare multi-class calibrators by patient-grouped cross-validation.

    Args:
        logits: raw logits, shape (n, K), K >= 3.
        labels: the class of each case.
        groups: the patient of each case (no patient in two folds).
        candidates: calibrators to choose from (``temperature``, ``vector``, ``identity``).
        folds: how many folds; fewer when there are fewer patients.
        n_boot: patient-bootstrap resamples for the noise of the NLL differences.
        seed: of the folds and the bootstrap.

    Returns:
        The comparison, with the chosen calibrator refitted on all cases.

    Raises:
        CalibrationError: fewer than two patients, an unknown candidate, or a fold whose
            remaining cases lack a class.
    """
    z, y = as_logits_and_labels(logits, labels)
    assert y is not None
    keys = np.asarray(groups)
    if keys.shape != y.shape:
        raise CalibrationError(f"{keys.size} patient keys for {y.size} cases")
    unknown = [c for c in candidates if c not in MULTICLASS_SIMPLICITY]
    if unknown or not candidates:
        raise CalibrationError(f"unknown or no multi-class calibrators: {unknown or candidates}")
    n_patients = int(np.unique(keys).size)
    k = min(folds, n_patients)
    if k < 2:
        raise CalibrationError("cross-validation needs cases of at least two patients")
    assignment = patient_folds(y, keys, k, seed)
    oof: dict[str, np.ndarray] = {"identity": IdentityMultiClass().predict_proba(z)}
    for name in candidates:
        if name == "identity":
            continue
        probs = np.empty_like(z)
        for fold in range(k):
            held = assignment == fold
            try:
                fitted = fit_multiclass(name, z[~held], y[~held])
            except CalibrationError as exc:
                raise CalibrationError(
                    f"{k}-fold cross-validation of {name} scaling: {exc} "
                    "(too few patients of a class for the folds)"
                ) from exc
            probs[held] = fitted.predict_proba(z[held])
        oof[name] = probs
    metrics = {name: calibration_measures(p, y) for name, p in oof.items()}
    lowest = min(
        candidates, key=lambda n: (round(metrics[n]["nll"], 12), MULTICLASS_SIMPLICITY.index(n))
    )
    per_case = {name: _case_nll(oof[name], y) for name in oof}
    differences = bootstrap_summary(
        lambda idx: {
            name: float(np.mean(per_case[name][idx] - per_case[lowest][idx])) for name in oof
        },
        keys,
        y,
        n_boot=n_boot,
        seed=seed,
    )
    intervals = {
        name: (float(d["ci95"][0]), float(d["ci95"][1])) for name, d in differences.items()
    }
    chosen = lowest
    for name in sorted(candidates, key=MULTICLASS_SIMPLICITY.index):
        if MULTICLASS_SIMPLICITY.index(name) >= MULTICLASS_SIMPLICITY.index(lowest):
            break
        if intervals[name][0] <= 0.0:
            chosen = name
            break
    refitted = {name: fit_multiclass(name, z, y) for name in ("identity", *candidates)}
    return MultiClassSelection(
        chosen=chosen,
        lowest_nll=lowest,
        calibrators=refitted,
        metrics=metrics,
        nll_difference_ci95=intervals,
        out_of_fold=oof,
        folds=k,
        n_cases=int(y.size),
        n_patients=n_patients,
    )
