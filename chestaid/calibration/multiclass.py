"""Calibrators for N-class bundles: from N logits to N probabilities that sum to one.

- Temperature scaling, ``softmax(z / T)``: one parameter; keeps every decision and
  the ranking of the classes, fixes over- or under-confidence.
- Vector scaling, ``softmax(a * z + b)``: a slope and an offset per class, so it also
  fixes a class that is systematically over- or under-called (a prevalence shift).

Both are fitted by minimising the negative log-likelihood with a small ridge towards
the identity map, which keeps separable calibration sets finite. Which one a bundle
keeps is chosen by cross-validated NLL (:mod:`chestaid.calibration.multiclass_selection`).

The triage score of an N-class bundle is the calibrated probability of "not normal",
``1 - p[normal]``; :func:`triage_logit` gives its log-odds and :func:`triage_gradient`
the derivative of those log-odds with respect to the raw logits, which is what
Grad-CAM of the triage score needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Self

import numpy as np
from numpy.typing import ArrayLike

from chestaid.calibration.calibrators import TEMPERATURE_BOUNDS
from chestaid.errors import CalibrationError

MIN_PER_CLASS = 2
RIDGE = 1e-4


def softmax(z: ArrayLike) -> np.ndarray:
    """Row-wise softmax of an (n, K) array, stable for large logits."""
    x = np.asarray(z, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def log_softmax(z: ArrayLike) -> np.ndarray:
    """Row-wise log-softmax of an (n, K) array."""
    x = np.asarray(z, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    out: np.ndarray = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return out


def as_logits_and_labels(
    logits: ArrayLike, labels: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Check an (n, K) logit array (K >= 3) and, if given, integer labels in [0, K).

    Raises:
        CalibrationError: wrong shapes, non-finite logits or labels out of range.
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 3:
        raise CalibrationError(
            f"multi-class logits must have shape (n, K) with K >= 3, got {z.shape}"
        )
    if not np.isfinite(z).all():
        raise CalibrationError("multi-class logits must be finite")
    if labels is None:
        return z, None
    y = np.asarray(labels)
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise CalibrationError(f"labels must be {z.shape[0]} integers, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise CalibrationError(f"labels must lie in [0, {z.shape[1]})")
    return z, y.astype(np.int64)


def _fit_data(logits: ArrayLike, labels: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
    z, y = as_logits_and_labels(logits, labels)
    assert y is not None
    counts = np.bincount(y, minlength=z.shape[1])
    if counts.min() < MIN_PER_CLASS:
        raise CalibrationError(
            f"{name} calibration needs at least {MIN_PER_CLASS} cases of each class; "
            f"got {counts.tolist()}"
        )
    return z, y


def multiclass_nll(probs: ArrayLike, labels: ArrayLike, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the true class."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], eps, 1.0))))


class MultiClassCalibrator(Protocol):
    """Maps (n, K) logits to calibrated (n, K) probabilities."""

    @property
    def name(self) -> str:
        """identity, temperature or vector."""
        ...

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Fit on labelled cases; returns self."""
        ...

    def scaled_logits(self, logits: ArrayLike) -> np.ndarray:
        """The calibrated logits, ``slopes * z + offsets``."""
        ...

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """Calibrated probabilities, rows summing to one."""
        ...

    def slopes(self, num_classes: int) -> np.ndarray:
        """d(calibrated logit k)/d(logit k) for each class: the chain rule's factor."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-able parameters, including ``name``."""
        ...


class _Affine:
    """Shared parts of the per-class affine calibrators."""

    name: ClassVar[str] = ""

    def __init__(self, a: ArrayLike, b: ArrayLike) -> None:
        self.a = np.asarray(a, dtype=np.float64).reshape(-1)
        self.b = np.asarray(b, dtype=np.float64).reshape(-1)
        if self.a.shape != self.b.shape:
            raise CalibrationError(f"{self.name}: slopes and offsets differ in length")
        if not (np.isfinite(self.a).all() and np.isfinite(self.b).all()):
            raise CalibrationError(f"{self.name}: parameters must be finite")

    def _broadcast(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.a.size == 1:
            return np.full(k, self.a[0]), np.full(k, self.b[0])
        if self.a.size != k:
            raise CalibrationError(
                f"{self.name} calibrator was fitted for {self.a.size} classes, given {k}"
            )
        return self.a, self.b

    def scaled_logits(self, logits: ArrayLike) -> np.ndarray:
        """``a * z + b``, per class."""
        z, _ = as_logits_and_labels(logits)
        a, b = self._broadcast(z.shape[1])
        out: np.ndarray = z * a + b
        return out

    def predict_proba(self, logits: ArrayLike) -> np.ndarray:
        """``softmax(a * z + b)``."""
        return softmax(self.scaled_logits(logits))

    def slopes(self, num_classes: int) -> np.ndarray:
        """The per-class slope ``a``."""
        return self._broadcast(num_classes)[0].copy()


class IdentityMultiClass(_Affine):
    """The uncalibrated baseline: ``softmax(z)``."""

    name: ClassVar[str] = "identity"

    def __init__(self) -> None:
        super().__init__([1.0], [0.0])

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Nothing to fit."""
        return self

    def to_dict(self) -> dict[str, Any]:
        """``{"name": "identity"}``."""
        return {"name": self.name}


class MultiTemperature(_Affine):
    """``softmax(z / T)`` with ``T`` fitted by minimising the NLL."""

    name: ClassVar[str] = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        if not temperature > 0:
            raise CalibrationError(f"temperature must be positive, got {temperature}")
        super().__init__([1.0 / temperature], [0.0])

    @property
    def temperature(self) -> float:
        """``T``."""
        return float(1.0 / self.a[0])

    def fit(self, logits: ArrayLike, labels: ArrayLike) -> Self:
        """Fit ``T`` in log space within the binary calibrator's bounds."""
        from scipy.optimize import minimize_scalar

        z, y = _fit_data(logits, labels, self.name)
        rows = np.arange(len(y))

        def loss(log_t: float) -> float:
            return float(-np.mean(log_softmax(z / np.exp(log_t))[rows, y]))

        lo, hi = np.log(TEMPERATURE_BOUNDS)
        result = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        self.a = np.array([float(np.exp(-result.x))])
        self.b = np.array([0.0])
        return self

    def to_dict(self) -> dict[str, Any]:
        """Name and temperature."""
        return {"name": self.name, "temperature": self.temperature}


class VectorScaling(_Affine):
    """``softmax(a * z + b)`` with a slope and an offset per class."""

    name: ClassVar[str] = "vector"

    def __init__(self, a: ArrayLike = (1.0,), b: ArrayLike = (0.0,)) -> None:
        super().__init__(a, b)

    def fit(self, logits: ArrayLike, labels: ArrayLike, *, l2: float = RIDGE) -> Self:
        """L-BFGS-B on the NLL plus ``l2/2 * (|a - 1|^2 + |b|^2)``, with its exact gradient.

        The offsets are defined up to a common constant; the ridge fixes it at mean zero.
        """
        from scipy.optimize import minimize

        z, y = _fit_data(logits, labels, self.name)
        n, k = z.shape
        onehot = np.eye(k)[y]

        def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = w[:k], w[k:]
            s = z * a + b
            logp = log_softmax(s)
            nll = -float(np.mean(logp[np.arange(n), y]))
            d = (np.exp(logp) - onehot) / n  # d NLL / d s
            grad_a = (d * z).sum(axis=0) + l2 * (a - 1.0)
            grad_b = d.sum(axis=0) + l2 * b
            ridge = 0.5 * l2 * float(np.sum((a - 1.0) ** 2) + np.sum(b**2))
            return nll + ridge, np.concatenate([grad_a, grad_b])

        start = np.concatenate([np.ones(k), np.zeros(k)])
        # Slopes stay positive (within the temperatures' bounds): a negative one would
        # reverse the ranking of a class, which no calibration should do.
        low, high = 1.0 / TEMPERATURE_BOUNDS[1], 1.0 / TEMPERATURE_BOUNDS[0]
        result = minimize(
            loss_and_grad,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=[(low, high)] * k + [(None, None)] * k,
            options={"maxiter": 500},
        )
        if not np.isfinite(result.x).all():
            raise CalibrationError("vector scaling did not converge to finite parameters")
        self.a, self.b = result.x[:k].copy(), result.x[k:].copy()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Name, slopes ``a`` and offsets ``b``."""
        return {"name": self.name, "a": self.a.tolist(), "b": self.b.tolist()}


MULTICLASS_CALIBRATORS: dict[str, type[IdentityMultiClass | MultiTemperature | VectorScaling]] = {
    "identity": IdentityMultiClass,
    "temperature": MultiTemperature,
    "vector": VectorScaling,
}
MULTICLASS_SIMPLICITY = ("identity", "temperature", "vector")


def fit_multiclass(name: str, logits: ArrayLike, labels: ArrayLike) -> MultiClassCalibrator:
    """Fit the multi-class calibrator called ``name`` (identity, temperature or vector)."""
    cls = MULTICLASS_CALIBRATORS.get(name)
    if cls is None:
        raise CalibrationError(
            f"unknown multi-class calibrator {name!r}; choose from "
            + ", ".join(MULTICLASS_CALIBRATORS)
        )
    return cls().fit(logits, labels)


def multiclass_from_dict(d: Mapping[str, Any]) -> MultiClassCalibrator:
    """Rebuild a multi-class calibrator from its :meth:`to_dict` record."""
    if not isinstance(d, Mapping):
        raise CalibrationError("a calibrator record must be a mapping")
    name = d.get("name")
    try:
        if name == "identity":
            return IdentityMultiClass()
        if name == "temperature":
            return MultiTemperature(float(d["temperature"]))
        if name == "vector":
            return VectorScaling(
                [float(v) for v in d["a"]],
                [float(v) for v in d["b"]],
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"multi-class calibrator record {name!r} lacks or garbles a parameter: {exc}"
        ) from exc
    raise CalibrationError(f"unknown multi-class calibrator {name!r}")


def triage_logit(probs: ArrayLike, normal_index: int) -> np.ndarray:
    """Log-odds of "not normal", ``log((1 - p_normal) / p_normal)``, from calibrated probabilities."""
    p = np.asarray(probs, dtype=np.float64)
    normal = np.clip(p[:, normal_index], 1e-15, 1.0 - 1e-15)
    out: np.ndarray = np.log1p(-normal) - np.log(normal)
    return out


def triage_gradient(
    calibrator: MultiClassCalibrator, logits: ArrayLike, normal_index: int
) -> np.ndarray:
    """d(triage log-odds)/d(raw logit k), shape (n, K).

    With calibrated logits ``s``, the log-odds are ``logsumexp(s[k != normal]) - s[normal]``,
    whose derivative is the softmax over the other classes for ``k != normal`` and
    ``-1`` for the normal class; the calibrator's slope multiplies each.
    """
    z, _ = as_logits_and_labels(logits)
    s = calibrator.scaled_logits(z)
    others = s.copy()
    others[:, normal_index] = -np.inf
    others = others - others.max(axis=1, keepdims=True)
    e = np.exp(others)
    g = e / e.sum(axis=1, keepdims=True)
    g[:, normal_index] = -1.0
    out: np.ndarray = g * calibrator.slopes(z.shape[1])
    return out
