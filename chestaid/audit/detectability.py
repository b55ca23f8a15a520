"""How well the *source* of an image can be told from a region of it.

A deliberately simple, fixed classifier: the region's pixels downsampled to a
``grid`` x ``grid`` image plus the histogram of the region's grey values, scaled,
into an L2-regularised logistic regression (C fixed, not tuned). Scores are
out-of-fold, from patient-grouped, source-stratified cross-validation, so no
patient is both fitted and scored; the ROC-AUC's interval is a bootstrap over
patients. A high figure shows that the region carries the source; a figure near
0.5 shows only that *this* classifier cannot find it there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from chestaid.errors import ConfigurationError
from chestaid.metrics import bootstrap_ci, roc_auc

FEATURE_GRID = 32
HISTOGRAM_BINS = 32
REGULARISATION_C = 0.1
FOLDS = 5


def region_features(
    images: np.ndarray, keep: np.ndarray, *, grid: int = FEATURE_GRID, bins: int = HISTOGRAM_BINS
) -> np.ndarray:
    """Features of the kept region of each image: a coarse picture and a grey histogram.

    Pixels outside ``keep`` contribute nothing: they are zeroed before the area-average
    downsampling (the same zeros for every image) and left out of the histogram.

    Args:
        images: grey images in [0, 1], shape (N, S, S).
        keep: boolean mask of shape (S, S), ``True`` where pixels are used.
        grid: side of the downsampled picture.
        bins: histogram bins over [0, 1].

    Returns:
        Array of shape (N, grid * grid + bins), float64.

    Raises:
        ConfigurationError: shapes that do not fit, or an empty region.
    """
    if images.ndim != 3 or images.shape[1:] != keep.shape:
        raise ConfigurationError(
            f"images of shape {images.shape} do not fit a mask of shape {keep.shape}"
        )
    if not keep.any():
        raise ConfigurationError("the region keeps no pixel")
    kept = torch.from_numpy(np.where(keep[None], images, 0.0).astype(np.float32))[:, None]
    coarse = F.adaptive_avg_pool2d(kept, grid).reshape(len(images), -1).numpy()
    values = images[:, keep]
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    hist = np.stack([np.bincount(row, minlength=bins) for row in index]) / values.shape[1]
    return np.concatenate([coarse.astype(np.float64), hist], axis=1)


def out_of_fold_scores(
    features: np.ndarray, sources: np.ndarray, groups: np.ndarray, *, seed: int = 0
) -> np.ndarray:
    """Out-of-fold probability of source 1 for each image, by patient-grouped CV.

    Raises:
        ConfigurationError: one source only, or fewer patients of a source than folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(sources, dtype=np.int64)
    for s in (0, 1):
        patients = len(set(np.asarray(groups)[y == s]))
        if patients < FOLDS:
            raise ConfigurationError(
                f"source {s} has {patients} patients; {FOLDS}-fold grouped CV needs {FOLDS}"
            )
    scores = np.full(len(y), np.nan)
    folds = StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    for train, test in folds.split(features, y, groups):
        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=REGULARISATION_C, class_weight="balanced", max_iter=2000),
        )
        model.fit(features[train], y[train])
        scores[test] = model.predict_proba(features[test])[:, 1]
    return scores


@dataclass(frozen=True)
class Detectability:
    """The source's detectability from one region."""

    region: str
    roc_auc: float
    ci95: tuple[float, float]
    area_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "region": self.region,
            "roc_auc": self.roc_auc,
            "ci95": list(self.ci95),
            "area_fraction": self.area_fraction,
        }


def source_detectability(
    region: str,
    images: np.ndarray,
    keep: np.ndarray,
    sources: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int = 0,
    n_boot: int = 1000,
) -> Detectability:
    """ROC-AUC (with a patient-bootstrap 95% interval) of telling source 1 from 0 by ``keep``.

    Args:
        region: the region's name, for the report.
        images: grey images in [0, 1], shape (N, S, S).
        keep: the region, boolean (S, S).
        sources: 0 or 1 per image.
        groups: patient key per image (unique across sources).
        seed: seeds the folds and the bootstrap.
        n_boot: bootstrap resamples.
    """
    scores = out_of_fold_scores(region_features(images, keep), sources, groups, seed=seed)
    point, low, high = bootstrap_ci(
        roc_auc, scores, sources, n_boot=n_boot, seed=seed, clusters=groups
    )
    return Detectability(region, point, (low, high), float(np.mean(keep)))
