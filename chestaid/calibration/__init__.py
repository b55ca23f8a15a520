"""Calibrators from a logit to a probability of pneumonia, and choosing among them.

- :mod:`~chestaid.calibration.calibrators`: identity, temperature, Platt and
  isotonic calibration, fitted on calibration cases, each serialised to a small
  JSON-able dict so a bundle or a database row can carry it;
- :mod:`~chestaid.calibration.selection`: the one a bundle keeps, judged on other
  (report) cases;
- :mod:`~chestaid.calibration.local`: the recalibration of a new site, chosen by
  cross-validated NLL on its own cases.

The threshold set on the calibrated score is :mod:`chestaid.threshold`'s; it and
every name above stay importable from ``chestaid.calibration``.
"""

from __future__ import annotations

from chestaid.calibration.calibrators import (
    MIN_ISOTONIC_CASES,
    MIN_PER_CLASS,
    SIMPLICITY,
    TEMPERATURE_BOUNDS,
    Calibrator,
    IdentityCalibration,
    IsotonicCalibration,
    PlattScaling,
    TemperatureScaling,
    calibrator_from_dict,
    fit_calibrator,
    sigmoid,
)
from chestaid.calibration.local import LOCAL_METHODS, LocalCalibration, select_local_calibration
from chestaid.calibration.selection import CalibrationComparison, fit_and_select
from chestaid.threshold import GovernedThreshold, governed_threshold

__all__ = [
    "LOCAL_METHODS",
    "MIN_ISOTONIC_CASES",
    "MIN_PER_CLASS",
    "SIMPLICITY",
    "TEMPERATURE_BOUNDS",
    "CalibrationComparison",
    "Calibrator",
    "GovernedThreshold",
    "IdentityCalibration",
    "IsotonicCalibration",
    "LocalCalibration",
    "PlattScaling",
    "TemperatureScaling",
    "calibrator_from_dict",
    "fit_and_select",
    "fit_calibrator",
    "governed_threshold",
    "select_local_calibration",
    "sigmoid",
]
