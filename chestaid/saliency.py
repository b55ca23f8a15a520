"""How faithful are the Grad-CAM maps? Deletion and keep curves, and a randomisation check.

- Deletion: replace the top-k% pixels of the map by a blurred copy of the image and
  score again; a faithful map makes the score fall fast (low area under the curve).
- Keep: replace everything *but* the top-k% pixels; a faithful map keeps the score
  high (high area under the curve).
- Model randomisation (Adebayo et al., 2018): maps of the trained model against maps
  of the same architecture with re-initialised weights; a map that explains the model
  must change when the weights do (low rank correlation).

Each is reported beside a random-map baseline, which any useful map must beat.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch.nn import functional as F

from chestaid.gradcam import class_activation_map, normalise_map
from chestaid.models import ChestNet, reinitialise
from chestaid.overlay import upsample_map

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.20, 0.30, 0.50)


@dataclass(frozen=True)
class PerturbationCurves:
    """Mean scores after deleting or keeping the top fractions of a map."""

    fractions: tuple[float, ...]
    original: float  # mean score of the unperturbed images
    deletion: tuple[float, ...]
    keep: tuple[float, ...]

    @property
    def deletion_auc(self) -> float:
        """Normalised area under the deletion curve over the fractions (lower is better)."""
        return _normalised_area(self.fractions, self.deletion)

    @property
    def keep_auc(self) -> float:
        """Normalised area under the keep curve over the fractions (higher is better)."""
        return _normalised_area(self.fractions, self.keep)

    def to_dict(self) -> dict[str, Any]:
        """JSON form, curves and areas."""
        return {
            "fractions": list(self.fractions),
            "original": self.original,
            "deletion": list(self.deletion),
            "keep": list(self.keep),
            "deletion_auc": self.deletion_auc,
            "keep_auc": self.keep_auc,
        }


def _normalised_area(x: Sequence[float], y: Sequence[float]) -> float:
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) < 2:
        return float(ys.mean())
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def blurred_baseline(x: torch.Tensor, factor: int = 16) -> torch.Tensor:
    """A strongly blurred copy of a (N, 1, S, S) batch, used to 'remove' pixels."""
    size = x.shape[-2:]
    small = F.avg_pool2d(x, kernel_size=factor, stride=factor, ceil_mode=True)
    return F.interpolate(small, size=size, mode="bilinear", align_corners=False)


def top_fraction_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean (N, S, S) masks of each map's top ``fraction`` of pixels (ties broken by order)."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    k = max(1, round(fraction * flat.shape[1]))
    idx = torch.topk(flat, k, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask.view_as(maps)


def perturbation_curves(
    score: Callable[[torch.Tensor], np.ndarray],
    x: torch.Tensor,
    maps: torch.Tensor,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> PerturbationCurves:
    """Deletion and keep curves of ``maps`` (N, S, S) for inputs ``x`` (N, 1, S, S).

    ``score`` maps a batch of inputs to an array of N scores (e.g. calibrated probabilities).
    """
    baseline = blurred_baseline(x)
    deletion, keep = [], []
    for fraction in fractions:
        mask = top_fraction_mask(maps, fraction).unsqueeze(1)
        deletion.append(float(np.mean(score(torch.where(mask, baseline, x)))))
        keep.append(float(np.mean(score(torch.where(mask, x, baseline)))))
    return PerturbationCurves(
        fractions=tuple(float(f) for f in fractions),
        original=float(np.mean(score(x))),
        deletion=tuple(deletion),
        keep=tuple(keep),
    )


@torch.inference_mode()
def gradcam_maps(model: ChestNet, x: torch.Tensor) -> torch.Tensor:
    """Normalised Grad-CAM maps of the first logit, upsampled to the input size (N, S, S)."""
    _, fmap = model.forward_with_features(x)
    cams = normalise_map(class_activation_map(fmap, model.classifier.weight, 0))
    return upsample_map(cams, (x.shape[-2], x.shape[-1]))


def random_maps(like: torch.Tensor, *, seed: int, cells: int = 7) -> torch.Tensor:
    """Smooth random maps shaped like (N, S, S) Grad-CAM maps: the baseline any map must beat."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(like.shape[0], cells, cells, generator=generator)
    return upsample_map(coarse, (like.shape[-2], like.shape[-1]))


def rank_correlations(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation between corresponding maps of two (N, h, w) batches.

    A flat map has no ranking; its correlation counts as 0.
    """
    out = []
    for ma, mb in zip(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1), strict=True):
        va, vb = ma.numpy(), mb.numpy()
        if np.ptp(va) == 0 or np.ptp(vb) == 0:
            out.append(0.0)
            continue
        out.append(float(spearmanr(va, vb).statistic))
    return np.asarray(out)


def randomisation_check(model: ChestNet, x: torch.Tensor, *, seed: int = 0) -> dict[str, float]:
    """Rank correlation of maps from ``model`` and from a re-initialised copy, and a random baseline."""
    trained = gradcam_maps(model, x)
    scrambled = reinitialise(copy.deepcopy(model), seed=seed).eval()
    randomised = gradcam_maps(scrambled, x)
    baseline = random_maps(trained, seed=seed)
    model_corr = rank_correlations(trained, randomised)
    random_corr = rank_correlations(trained, baseline)
    return {
        "trained_vs_reinitialised_spearman_mean": float(model_corr.mean()),
        "trained_vs_reinitialised_spearman_sd": float(model_corr.std()),
        "trained_vs_random_map_spearman_mean": float(random_corr.mean()),
        "n_images": int(x.shape[0]),
    }


def evaluate_saliency(
    model: ChestNet,
    score: Callable[[torch.Tensor], np.ndarray],
    x: torch.Tensor,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    batch_size: int = 32,
    randomisation: bool = True,
) -> dict[str, Any]:
    """Deletion/keep curves for Grad-CAM and random maps, and the randomisation check.

    Args:
        model: the trained network (eval mode).
        score: batch of inputs -> scores of the explained class.
        x: model inputs (N, 1, S, S), usually positive cases.
        fractions: the top-k fractions to delete or keep.
        seed: seeds the random maps and the re-initialisation.
        batch_size: images scored at once.
        randomisation: also run the model-randomisation check.
    """
    model.eval()
    curves: dict[str, list[PerturbationCurves]] = {"gradcam": [], "random": []}
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size]
        cams = gradcam_maps(model, chunk)
        curves["gradcam"].append(perturbation_curves(score, chunk, cams, fractions))
        curves["random"].append(
            perturbation_curves(score, chunk, random_maps(cams, seed=seed + start), fractions)
        )
    weights = [min(batch_size, x.shape[0] - s) for s in range(0, x.shape[0], batch_size)]
    result: dict[str, Any] = {
        name: _weighted_mean(parts, weights).to_dict() for name, parts in curves.items()
    }
    if randomisation:
        result["randomisation"] = randomisation_check(model, x[: min(32, x.shape[0])], seed=seed)
    result["n_images"] = int(x.shape[0])
    return result


def _weighted_mean(
    parts: Sequence[PerturbationCurves], weights: Sequence[int]
) -> PerturbationCurves:
    w = np.asarray(weights, dtype=np.float64) / sum(weights)

    def avg(values: Sequence[Sequence[float]]) -> tuple[float, ...]:
        return tuple(float(v) for v in np.average(np.asarray(values), axis=0, weights=w))

    return PerturbationCurves(
        fractions=parts[0].fractions,
        original=float(np.average([p.original for p in parts], weights=w)),
        deletion=avg([p.deletion for p in parts]),
        keep=avg([p.keep for p in parts]),
    )
