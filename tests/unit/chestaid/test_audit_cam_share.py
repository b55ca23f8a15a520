"""Grad-CAM mass outside the lung prior, on hand-made feature maps and coverage grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestaid.audit.cam_share import inside_fraction, outside_share, share_summary, shares_by_class
from chestaid.errors import ConfigurationError
from chestaid.gradcam import class_activation_map


def test_inside_fraction_averages_the_mask_onto_the_grid() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[:, :3] = True  # columns 0-2: the first grid column whole, half of the second
    cover = inside_fraction(mask, 4, 4)
    assert cover.shape == (4, 4)
    assert np.allclose(cover[:, 0], 1.0) and np.allclose(cover[:, 1], 0.5)
    assert np.allclose(cover[:, 2:], 0.0)


def test_outside_share_of_cams_from_a_hand_made_feature_map() -> None:
    fmap = torch.zeros(1, 2, 4, 4)
    fmap[0, 0, :, 2:] = 1.0  # channel 0 fires only in the right half
    fmap[0, 1] = 1.0  # channel 1 everywhere
    head = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [3.0, 1.0]])
    inside = np.zeros((4, 4))
    inside[:, :2] = 1.0  # the "lungs" are the left half
    cams = np.stack([class_activation_map(fmap, head, k)[0].numpy() for k in range(4)])
    share = outside_share(cams, inside)
    assert share[0] == pytest.approx(1.0)
    assert share[1] == pytest.approx(0.5)
    assert np.isnan(share[2]), "an all-zero map has no share"
    # right half 3 + 1 = 4 per cell, left half 1 per cell: 4 / (4 + 1) outside
    assert share[3] == pytest.approx(0.8)


def test_partial_coverage_counts_the_covered_part_of_a_cell_as_inside() -> None:
    cams = np.ones((1, 1, 2))
    assert outside_share(cams, np.array([[0.25, 1.0]]))[0] == pytest.approx(0.375)


def test_outside_share_refuses_negative_maps_and_wrong_grids() -> None:
    with pytest.raises(ConfigurationError):
        outside_share(-np.ones((1, 2, 2)), np.ones((2, 2)))
    with pytest.raises(ConfigurationError):
        outside_share(np.ones((1, 2, 2)), np.ones((3, 3)))


def test_summaries_per_class_leave_zero_maps_out_and_count_them() -> None:
    predicted = np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan])
    true = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9])
    labels = np.array([0, 0, 0, 0, 0, 1])
    by_class = shares_by_class(predicted, true, labels, ["A", "B"])
    a = by_class["A"]["predicted_class_cam"]
    assert a["n"] == 5 and a["zero_maps"] == 0
    assert a["mean"] == pytest.approx(0.3) and a["median"] == pytest.approx(0.3)
    assert a["q25"] == pytest.approx(0.2) and a["q75"] == pytest.approx(0.4)
    b = by_class["B"]["predicted_class_cam"]
    assert b["zero_maps"] == 1 and b["mean"] is None
    assert by_class["B"]["true_class_cam"]["mean"] == pytest.approx(0.9)
    assert share_summary(np.array([]))["n"] == 0
