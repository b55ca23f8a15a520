"""How much of a Grad-CAM map lies outside the lung prior.

The map is the ReLU'd, unnormalised Grad-CAM of one logit on the model's feature
grid (h x w). The lung prior, drawn at the model's input size, is averaged onto the
same grid, so each cell carries the fraction of its area inside the lungs; the
share outside is ``sum(cam * (1 - inside)) / sum(cam)``. A map that is zero
everywhere has no share (NaN) and is counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from chestaid.errors import ConfigurationError


def inside_fraction(mask: np.ndarray, grid_height: int, grid_width: int) -> np.ndarray:
    """The share of each cell of an (h, w) grid that ``mask`` covers, by area averaging."""
    t = torch.from_numpy(np.asarray(mask, dtype=np.float32))[None, None]
    out: np.ndarray = F.adaptive_avg_pool2d(t, (grid_height, grid_width))[0, 0].numpy()
    return out.astype(np.float64)


def outside_share(cams: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Share of each map's mass outside the region whose per-cell coverage is ``inside``.

    Args:
        cams: non-negative maps, shape (N, h, w).
        inside: per-cell coverage in [0, 1], shape (h, w).

    Returns:
        Shape (N,): the outside share in [0, 1], NaN for an all-zero map.

    Raises:
        ConfigurationError: shapes that do not fit, or negative map values.
    """
    if cams.ndim != 3 or cams.shape[1:] != inside.shape:
        raise ConfigurationError(f"maps of shape {cams.shape} do not fit a grid {inside.shape}")
    if (cams < 0).any():
        raise ConfigurationError("Grad-CAM maps must be ReLU'd (non-negative)")
    total = cams.sum(axis=(1, 2), dtype=np.float64)
    outside = (cams * (1.0 - inside)[None]).sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, outside / np.where(total > 0, total, 1.0), np.nan)


def share_summary(shares: np.ndarray) -> dict[str, Any]:
    """Mean and quartiles of the defined shares, with counts of all and of zero maps."""
    defined = shares[~np.isnan(shares)]
    if defined.size == 0:
        stats: dict[str, Any] = dict.fromkeys(("mean", "q25", "median", "q75"))
    else:
        q25, median, q75 = np.quantile(defined, [0.25, 0.5, 0.75])
        stats = {
            "mean": float(defined.mean()),
            "q25": float(q25),
            "median": float(median),
            "q75": float(q75),
        }
    return {"n": int(shares.size), "zero_maps": int(shares.size - defined.size), **stats}


def shares_by_class(
    predicted_share: np.ndarray,
    true_share: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per true class: the summaries of the predicted-class and the true-class map shares."""
    return {
        name: {
            "predicted_class_cam": share_summary(predicted_share[labels == k]),
            "true_class_cam": share_summary(true_share[labels == k]),
        }
        for k, name in enumerate(classes)
    }
