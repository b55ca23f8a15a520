"""The calibrators: maps from a logit to a probability of pneumonia.

- Temperature scaling, ``sigmoid(z / T)``: fixes over- or under-confidence, cannot
  move the decision boundary.
- Platt (logistic) recalibration, ``sigmoid(a z + b)``: a slope and an intercept,
  so it also fixes the shift of a new site's prevalence or population.
- Isotonic regression on the logit: any monotone map; needs more cases.

Every one serialises to a small JSON-able dict so a bundle or a database row can
carry it (:func:`calibrator_from_dict` rebuilds it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike

from chestaid.errors import CalibrationError
from chestaid.metrics import as_scores_and_labels

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
