"""Bootstrap intervals that resample patients, not images, for many metrics at once.

Images of one patient are not independent (same chest, same day, often the same
finding), so an interval that resamples images is too narrow wherever patients have
several. Here every resample draws whole patients with replacement, within each class
(a patient's class is the most common label of its images), so each resample keeps
the number of patients of every class and per-class areas stay defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError


def patient_members(groups: ArrayLike) -> list[np.ndarray]:
    """The case indices of each patient, patients in sorted key order."""
    keys = np.asarray(groups)
    if keys.ndim != 1:
        raise CalibrationError(f"patient keys must be 1-D, got shape {keys.shape}")
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def patient_resamples(
    groups: ArrayLike, labels: ArrayLike, *, n_boot: int, seed: int = 0
) -> Iterator[np.ndarray]:
    """``n_boot`` resamples, each the case indices of patients drawn with replacement.

    Patients are drawn within their class, as many of each class as there are; a patient
    drawn twice brings every one of its images twice.

    Raises:
        CalibrationError: keys and labels of different lengths, or no cases.
    """
    y = np.asarray(labels, dtype=np.int64)
    keys = np.asarray(groups)
    if keys.shape != y.shape or y.size == 0:
        raise CalibrationError(f"{keys.size} patient keys for {y.size} labels")
    members = patient_members(keys)
    unit_class = np.array([np.bincount(y[m]).argmax() for m in members])
    strata = [np.flatnonzero(unit_class == c) for c in np.unique(unit_class)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        units = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in strata])
        yield np.concatenate([members[u] for u in units])


def bootstrap_summary(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    groups: ArrayLike,
    labels: ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Any]]:
    """Point estimates and percentile intervals of every number ``statistic`` gives.

    Args:
        statistic: case indices -> {name: value}; called once on all cases and once a
            resample. A value may be nan on a resample (an area with a class absent):
            such resamples are left out of that name's interval.
        groups: a patient key per case.
        labels: a class per case (for the stratification).

    Returns:
        ``{name: {"value": v, "ci95": [low, high], "resamples": m}}`` (``ci95`` says
        the level for alpha 0.05; ``resamples`` is how many had the value defined).
    """
    y = np.asarray(labels, dtype=np.int64)
    point = dict(statistic(np.arange(y.size)))
    draws: dict[str, list[float]] = {name: [] for name in point}
    for idx in patient_resamples(groups, y, n_boot=n_boot, seed=seed):
        for name, value in statistic(idx).items():
            if name in draws and np.isfinite(value):
                draws[name].append(float(value))
    out: dict[str, dict[str, Any]] = {}
    for name, value in point.items():
        values = draws[name]
        if values:
            low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
            interval = [float(low), float(high)]
        else:
            interval = [float("nan"), float("nan")]
        out[name] = {"value": float(value), "ci95": interval, "resamples": len(values)}
    return out
