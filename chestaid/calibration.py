"""Calibrators from a logit to a probability of pneumonia, and the governed threshold.

- Temperature scaling, ``sigmoid(z / T)``: fixes over- or under-confidence, cannot
  move the decision boundary.
- Platt (logistic) recalibration, ``sigmoid(a z + b)``: a slope and an intercept,
  so it also fixes the shift of a new site's prevalence or population.
- Isotonic regression on the logit: any monotone map; needs more cases.

Each is fitted on calibration cases and judged on other cases; every one serialises
to a small JSON-able dict so a bundle or a database row can carry it. The threshold
set on the calibrated score is :mod:`chestaid.threshold`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError
from chestaid.metrics import adaptive_ece, as_scores_and_labels, brier, ece, nll

# The governed threshold lives in its own module; these names stay importable from here.
from chestaid.threshold import GovernedThreshold as GovernedThreshold
from chestaid.threshold import governed_threshold as governed_threshold

MIN_PER_CLASS = 2
MIN_ISOTONIC_CASES = 20
TEMPERATURE_BOUNDS = (0.05, 20.0)


def sigmoid(z: ArrayLike) -> np.ndarray:
    """Numerically stable logistic function."""
    x = np.asarray(z, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _fit_data(logits: ArrayLike, labels: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    z, y = as_scores_and_labels(logits, labels, probabilities=False)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise CalibrationError(
            f"{name} calibration needs at least {MIN_PER_CLASS} cases of each class; "
            f"got {n_pos} pneumonia and {n_neg} normal"
        )
    return z, y


class Calibrator(Protocol):
    """Maps logits to calibrated probabilities of pneumonia."""

    @property
    def name(self) -> str:
        """The calibrator's kind: identity, temperature, platt or isotonic."""
        ...

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Fit on labelled cases; returns self."""
        ...

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities, float64 in [0, 1]."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters, including ``name``."""
        ...


class IdentityCalibration:
    """The uncalibrated baseline: ``sigmoid(z)``."""

    name: ClassVar[str] = "identity"

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Nothing to fit."""
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """``sigmoid(z)``."""
        return sigmoid(logits)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": "identity"}``."""
        return {"name": self.name}


class TemperatureScaling:
    """``sigmoid(z / T)`` with ``T > 0`` fitted by minimising the NLL."""

    name: ClassVar[str] = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise CalibrationError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Fit ``T`` in log space within :data:`TEMPERATURE_BOUNDS` (bounded for separable data)."""
        from scipy.optimize import minimize_scalar

        z, y = _fit_data(logits, labels, self.name)

        def loss(log_t: float) -> float:
            q = np.clip(sigmoid(z / np.exp(log_t)), 1e-12, 1 - 1e-12)
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

        lo, hi = np.log(TEMPERATURE_BOUNDS)
        result = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        self.temperature = float(np.exp(result.x))
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """``sigmoid(z / T)``."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        """Name and temperature."""
        return {"name": self.name, "temperature": self.temperature}


class PlattScaling:
    """``sigmoid(a z + b)``: logistic recalibration with a slope and an intercept."""

    name: ClassVar[str] = "platt"

    def __init__(self, a: float = 1.0, b: float = 0.0) -> None:
        self.a, self.b = float(a), float(b)

    def fit(self, logits: ArrayLike, labels: ArrayLike, *, l2: float = 1e-4) -> Self:
        """Damped Newton on the NLL with a tiny ridge towards the identity map.

        The ridge keeps separable data finite; the step is halved until the loss falls,
        so the iteration cannot overshoot on steep or shifted logits.
        """
        z, y = _fit_data(logits, labels, self.name)
        x = np.column_stack([z, np.ones_like(z)])
        prior = np.array([1.0, 0.0])

        def loss(w: np.ndarray) -> float:
            q = np.clip(sigmoid(x @ w), 1e-12, 1 - 1e-12)
            ridge = 0.5 * l2 * float(np.sum((w - prior) ** 2))
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))) + ridge

        w = prior.copy()
        current = loss(w)
        for _ in range(200):
            p = sigmoid(x @ w)
            grad = x.T @ (p - y) / len(y) + l2 * (w - prior)
            hess = (x.T * (p * (1 - p))) @ x / len(y) + l2 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            scale = 1.0
            while scale > 1e-8 and loss(w - scale * step) > current:
                scale /= 2
            w = w - scale * step
            previous, current = current, loss(w)
            if previous - current < 1e-12:
                break
        self.a, self.b = float(w[0]), float(w[1])
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """``sigmoid(a z + b)``."""
        return sigmoid(self.a * np.asarray(logits, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        """Name, slope ``a`` and intercept ``b``."""
        return {"name": self.name, "a": self.a, "b": self.b}


class IsotonicCalibration:
    """A monotone step map from logit to probability (isotonic regression).

    Outputs are kept within ``[1/(n+1), n/(n+1)]`` for ``n`` fitting cases.
    """

    name: ClassVar[str] = "isotonic"

    def __init__(self, x: Sequence[float] = (), y: Sequence[float] = ()) -> None:
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        if self.x.shape != self.y.shape:
            raise CalibrationError("isotonic thresholds x and y differ in length")

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Fit with scikit-learn; keeps only the thresholds, so a loaded one needs no sklearn."""
        from sklearn.isotonic import IsotonicRegression

        z, y = _fit_data(logits, labels, self.name)
        if len(z) < MIN_ISOTONIC_CASES:
            raise CalibrationError(
                f"isotonic calibration needs at least {MIN_ISOTONIC_CASES} cases; got {len(z)}"
            )
        # n cases cannot support a probability closer to 0 or 1 than about 1/(n + 1):
        # a plateau of exact 0s or 1s would claim certainty the sample cannot give.
        floor = 1.0 / (len(z) + 1)
        model = IsotonicRegression(out_of_bounds="clip", y_min=floor, y_max=1.0 - floor)
        model.fit(z, y)
        self.x = np.asarray(model.X_thresholds_, dtype=np.float64)
        self.y = np.asarray(model.y_thresholds_, dtype=np.float64)
        return self

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """Linear interpolation between the thresholds, clipped at both ends."""
        if self.x.size == 0:
            raise CalibrationError("isotonic calibrator used before it was fitted")
        return np.interp(np.asarray(logits, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, Any]:
        """Name and the threshold arrays."""
        return {"name": self.name, "x": self.x.tolist(), "y": self.y.tolist()}


_CALIBRATORS: dict[
    str, type[IdentityCalibration | TemperatureScaling | PlattScaling | IsotonicCalibration]
] = {
    "identity": IdentityCalibration,
    "temperature": TemperatureScaling,
    "platt": PlattScaling,
    "isotonic": IsotonicCalibration,
}
SIMPLICITY = ("identity", "temperature", "platt", "isotonic")


def fit_calibrator(name: str, logits: ArrayLike, labels: ArrayLike) -> Calibrator:
    """Fit the calibrator called ``name`` (temperature, platt, isotonic or identity)."""
    cls = _CALIBRATORS.get(name)
    if cls is None:
        raise CalibrationError(
            f"unknown calibrator {name!r}; choose from {', '.join(_CALIBRATORS)}"
        )
    return cls().fit(logits, labels)


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    """Rebuild a calibrator from :meth:`to_dict` output."""
    if not isinstance(d, Mapping):
        raise CalibrationError("a calibrator record must be a mapping")
    name = d.get("name")
    try:
        if name == "identity":
            return IdentityCalibration()
        if name == "temperature":
            return TemperatureScaling(float(d["temperature"]))
        if name == "platt":
            return PlattScaling(float(d["a"]), float(d["b"]))
        if name == "isotonic":
            return IsotonicCalibration(d["x"], d["y"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"calibrator record {name!r} lacks or garbles a parameter: {exc}"
        ) from exc
    raise CalibrationError(f"unknown calibrator {name!r}")


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
