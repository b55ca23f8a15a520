"""Deletion/keep curves and the randomisation check behave as their definitions say."""

from __future__ import annotations

import numpy as np
import torch

from chestaid.models import build_model
from chestaid.saliency import (
    evaluate_saliency,
    perturbation_curves,
    random_maps,
    rank_correlations,
    top_fraction_mask,
)


def test_top_fraction_mask_counts() -> None:
    maps = torch.arange(100, dtype=torch.float32).view(1, 10, 10)
    mask = top_fraction_mask(maps, 0.05)
    assert int(mask.sum()) == 5
    assert bool(mask[0, 9, 9]) and not bool(mask[0, 0, 0])


def test_a_faithful_map_beats_a_random_one_on_a_known_scorer() -> None:
    # The "model" scores the mean brightness of a known square: the ideal map is that square.
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:16, 8:16] = 1.0
    truth = torch.zeros(4, 32, 32)
    truth[:, 8:16, 8:16] = 1.0

    def score(batch: torch.Tensor) -> np.ndarray:
        return batch[:, 0, 8:16, 8:16].mean(dim=(1, 2)).numpy().astype(np.float64)

    good = perturbation_curves(score, x, truth + 1e-3 * torch.rand(4, 32, 32))
    rand = perturbation_curves(score, x, random_maps(truth, seed=0))
    assert good.deletion_auc < rand.deletion_auc
    assert good.keep_auc > rand.keep_auc
    assert good.deletion[0] < good.original


def test_rank_correlation_of_identical_and_flat_maps() -> None:
    a = torch.rand(3, 7, 7)
    assert np.allclose(rank_correlations(a, a), 1.0)
    assert np.allclose(rank_correlations(a, -a), -1.0)
    assert rank_correlations(a, torch.zeros(3, 7, 7)).tolist() == [0.0, 0.0, 0.0]


def test_evaluate_saliency_reports_every_part() -> None:
    torch.manual_seed(0)
    model = build_model("resnet50").eval()
    x = torch.randn(3, 1, 64, 64)

    @torch.inference_mode()
    def score(batch: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(model(batch)[:, 0]).numpy().astype(np.float64)

    report = evaluate_saliency(model, score, x, batch_size=2)
    assert report["n_images"] == 3
    for name in ("gradcam", "random"):
        assert report[name]["fractions"] == [0.01, 0.05, 0.1, 0.2, 0.3, 0.5]
        assert len(report[name]["deletion"]) == 6
        assert 0.0 <= report[name]["keep_auc"] <= 1.0
    assert -1.0 <= report["randomisation"]["trained_vs_reinitialised_spearman_mean"] <= 1.0
