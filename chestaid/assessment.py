"""Whether an image is a judgeable frontal chest radiograph: the "not assessable" outcome.

A model trained on chest radiographs gives *some* score to any array it is fed: a
black frame, noise, a radiograph on its side or with its grey scale inverted. Those
scores mean nothing, and shown as a priority they mislead. So every prediction
carries an :class:`Assessment`; when it says ``assessable=False`` the score is kept
for audit only and must not be banded, flagged or overlaid.

Three checks, cheapest first, all on what one forward pass already gives:

1. *Image statistics* of the model input (pure arithmetic, any bundle): an image with
   almost no grey-level spread is ``featureless``; one whose spread is almost all at
   the scale of pixels rather than anatomy (what a blur of 2% of the side removes) is
   ``noise``.
2. *The orientation head* (bundles trained with it): an auxiliary head on the pooled
   features, trained to tell which of the four quarter turns, with or without grey
   inversion, an upright radiograph was given. It sees anatomy, so it answers for
   radiographs and not for arbitrary pictures. An ``inverted`` grey scale is reported;
   a turn the head is certain of is undone and the image scored upright
   (``quarter_turns``); an uncertain one is ``orientation``.
3. *A density of the network's own features* (bundles that have one): the distance of
   the image's pooled features from those of the development radiographs (a
   probabilistic-PCA Mahalanobis distance). Beyond a threshold set on held-out
   development images the image is ``unfamiliar``: most likely not a frontal chest
   radiograph at all.

The reasons are stable codes, stored by the service and shown to people with their
``detail`` sentence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import torch
from torch.nn import functional as F

from chestaid.errors import BundleError

REASONS: Final = ("featureless", "noise", "orientation", "inverted", "unfamiliar")


@dataclass(frozen=True)
class Assessment:
    """The verdict on whether an image can be scored as a frontal chest radiograph."""

    assessable: bool
    reason: str | None = None  # one of REASONS when not assessable
    detail: str = ""  # one sentence for people
    quarter_turns: int = 0  # counter-clockwise quarter turns applied before scoring (0-3)

    def __post_init__(self) -> None:
        if self.assessable and self.reason is not None:
            raise ValueError("an assessable image has no reason")
        if not self.assessable and self.reason not in REASONS:
            raise ValueError(f"unknown not-assessable reason {self.reason!r}")
        if self.quarter_turns not in (0, 1, 2, 3):
            raise ValueError(f"quarter_turns must be 0-3, got {self.quarter_turns}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``chestaid predict --json`` and the service."""
        return {
            "assessable": self.assessable,
            "reason": self.reason,
            "detail": self.detail,
            "quarter_turns": self.quarter_turns,
        }


ASSESSABLE: Final = Assessment(assessable=True)


def not_assessable(reason: str, detail: str) -> Assessment:
    """An assessment saying the image cannot be judged, for ``reason`` (one of REASONS)."""
    return Assessment(assessable=False, reason=reason, detail=detail)


@dataclass(frozen=True)
class AssessmentSettings:
    """The thresholds of the checks; stored in a bundle's manifest as ``assessment``.

    The defaults of the image statistics hold for any bundle; the feature threshold
    exists only where a density was fitted (``chestaid assess``).
    """

    min_spread: float = 0.04  # grey-level standard deviation below which: featureless
    min_structure: float = 0.2  # share of variance surviving a 2% blur below which: noise
    inverted_probability: float = 0.8  # P(inverted) at or above which: inverted
    certain_turn: float = 0.9  # P(a turn) at or above which the image is turned upright
    min_upright: float = 0.4  # P(upright) below which: orientation
    max_feature_distance: float | None = None  # beyond which: unfamiliar

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the manifest."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AssessmentSettings:
        """Parse a manifest record (None gives the defaults).

        Raises:
            BundleError: unknown keys or values that are not numbers.
        """
        if d is None:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"feature_density", "fitted_on"}
        if unknown:
            raise BundleError(f"manifest 'assessment' has unknown keys: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key in known & set(d):
            value = d[key]
            if value is None and key == "max_feature_distance":
                values[key] = None
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BundleError(f"manifest 'assessment.{key}' must be a number")
            values[key] = float(value)
        return cls(**values)


def image_statistics(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Grey-level spread and structure share of images in [0, 1], shape (N, 1, S, S).

    Returns:
        ``spread``: each image's standard deviation; ``structure``: the share of its
        variance that survives a Gaussian blur of 2% of the side (anatomy survives
        it, pixel noise does not). Pure: no disk, no clock, no randomness.
    """
    x = x.float()
    size = x.shape[-1]
    sigma = max(0.5, 0.02 * size)
    radius = max(1, min(math.ceil(3.0 * sigma), size // 2 - 1))
    xs = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (xs / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(F.conv2d(padded, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))
    variance = x.var(dim=(1, 2, 3))
    kept = blurred.var(dim=(1, 2, 3))
    structure = torch.where(variance > 0, kept / variance.clamp_min(1e-12), torch.zeros_like(kept))
    return variance.sqrt().cpu().numpy(), structure.clamp(0.0, 1.0).cpu().numpy()


class FeatureDensity:
    """A probabilistic-PCA Gaussian of pooled features, for a distance to the training data.

    The top ``k`` principal directions are whitened by their own variances; what is
    left outside them is measured against their mean variance. The distance is the
    square root of that Mahalanobis sum divided by the feature count, so that
    typical development images sit near 1.
    """

    def __init__(
        self, mean: np.ndarray, basis: np.ndarray, variances: np.ndarray, residual: float
    ) -> None:
        self.mean = np.asarray(mean, dtype=np.float64)
        self.basis = np.asarray(basis, dtype=np.float64)  # (C, k), orthonormal columns
        self.variances = np.asarray(variances, dtype=np.float64)  # (k,)
        self.residual = float(residual)
        if self.basis.shape != (self.mean.size, self.variances.size):
            raise BundleError("feature density: basis does not fit its mean and variances")
        if not (self.variances > 0).all() or not self.residual > 0:
            raise BundleError("feature density: variances must be positive")

    @classmethod
    def fit(cls, features: np.ndarray, *, components: int = 32) -> FeatureDensity:
        """Fit on features of shape (N, C) of development images."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < components + 2:
            raise ValueError(f"need more than {components + 1} feature rows, got {f.shape}")
        mean = f.mean(axis=0)
        centred = f - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        eig = s**2 / (f.shape[0] - 1)
        k = min(components, eig.size - 1)
        residual = float(eig[k:].mean()) if eig[k:].size else float(eig[-1])
        floor = max(residual, 1e-12)
        return cls(mean, vt[:k].T, np.maximum(eig[:k], floor), floor)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Distances (N,) of features of shape (N, C); about 1 for the fitted data."""
        f = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        projected = f @ self.basis
        inside = (projected**2 / self.variances).sum(axis=1)
        outside = ((f**2).sum(axis=1) - (projected**2).sum(axis=1)).clip(min=0.0) / self.residual
        return np.asarray(np.sqrt((inside + outside) / self.mean.size))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors stored in a bundle's ``assessment.safetensors``."""
        return {
            "mean": torch.from_numpy(np.ascontiguousarray(self.mean, dtype=np.float32)),
            "basis": torch.from_numpy(np.ascontiguousarray(self.basis, dtype=np.float32)),
            "variances": torch.from_numpy(np.ascontiguousarray(self.variances, dtype=np.float32)),
            "residual": torch.tensor([self.residual], dtype=torch.float32),
        }

    @classmethod
    def from_tensors(cls, t: Mapping[str, torch.Tensor]) -> FeatureDensity:
        """Rebuild from :meth:`to_tensors`; raises BundleError when a tensor is missing."""
        try:
            return cls(
                t["mean"].double().numpy(),
                t["basis"].double().numpy(),
                t["variances"].double().numpy(),
                float(t["residual"][0]),
            )
        except (KeyError, IndexError) as exc:
            raise BundleError(f"feature density lacks a tensor: {exc}") from exc


@dataclass(frozen=True)
class Evidence:
    """What the checks measured for one image."""

    spread: float
    structure: float
    orientation: np.ndarray | None  # probabilities of the 8 orientation classes
    feature_distance: float | None


def turn_probabilities(orientation: np.ndarray) -> tuple[np.ndarray, float]:
    """P(each of the 4 quarter turns) and P(inverted) from the 8 class probabilities."""
    p = np.asarray(orientation, dtype=np.float64)
    return p[:4] + p[4:8], float(p[4:8].sum())


def assess(evidence: Evidence, settings: AssessmentSettings) -> Assessment | int:
    """Judge one image: an :class:`Assessment`, or the quarter turns to undo first.

    An ``int`` k means: the orientation head is certain the image was turned by k
    counter-clockwise quarter turns; turn it back by ``(4 - k) % 4`` and assess again.
    """
    if evidence.spread < settings.min_spread:
        return not_assessable(
            "featureless",
            f"the image is blank or almost uniform (grey-level spread {evidence.spread:.3f})",
        )
    if evidence.structure < settings.min_structure:
        return not_assessable(
            "noise",
            "the image holds no structure at the scale of anatomy "
            f"(structure {evidence.structure:.2f}): noise or a test pattern",
        )
    if evidence.orientation is not None:
        turns, inverted = turn_probabilities(evidence.orientation)
        if inverted >= settings.inverted_probability:
            return not_assessable(
                "inverted",
                f"the grey scale looks inverted (bone dark, air bright; P {inverted:.2f}): "
                "check the photometric interpretation",
            )
        k = int(np.argmax(turns))
        if k != 0 and turns[k] >= settings.certain_turn:
            return k
        # More likely turned than upright, but not certainly: scored as it lies, a turned
        # pneumonia could pass as normal, so a person looks instead.
        if k != 0 or turns[0] < settings.min_upright:
            return not_assessable(
                "orientation",
                f"the image does not look upright (P upright {turns[0]:.2f}) and its "
                "orientation is not certain enough to turn it",
            )
    limit = settings.max_feature_distance
    distance = evidence.feature_distance
    if limit is not None and distance is not None and distance > limit:
        return not_assessable(
            "unfamiliar",
            f"the image is unlike the chest radiographs the model was developed on "
            f"(distance {distance:.2f}, limit {limit:.2f}): "
            "most likely not a frontal chest radiograph",
        )
    return ASSESSABLE
