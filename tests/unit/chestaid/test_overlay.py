"""The overlay blend, computed in place, gives the pixels of its plain formula exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from chestaid.overlay import colour_map, default_lut, render_overlay, upsample_map


def _plain_colours(cam: np.ndarray, size: tuple[int, int], lut: np.ndarray) -> np.ndarray:
    up = upsample_map(torch.from_numpy(cam.astype(np.float32))[None], size)[0].numpy()
    return lut[np.clip(np.round(up * 255), 0, 255).astype(np.uint8)]


def _plain_blend(grey: np.ndarray, cam: np.ndarray, alpha: float, lut: np.ndarray) -> np.ndarray:
    """``(1 - alpha) * grey * 255 + alpha * colour`` in float32, rounded: the stated blend."""
    colours = _plain_colours(cam, grey.shape, lut).astype(np.float32)
    base = np.clip(grey, 0.0, 1.0).astype(np.float32)[..., None] * 255.0
    blended = (1.0 - alpha) * base + alpha * colours
    return np.asarray(np.clip(np.round(blended), 0, 255), dtype=np.uint8)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alpha", [0.0, 0.35, 0.4, 1.0])
def test_render_overlay_equals_the_plain_formula(seed: int, alpha: float) -> None:
    rng = np.random.default_rng(seed)
    cam = rng.random((7 + seed, 5 + seed)).astype(np.float32)
    # Grey values outside [0, 1] too: the blend clips them.
    grey = (rng.random((97 + seed, 80)) * 1.4 - 0.2).astype(np.float32)
    lut = default_lut()
    assert np.array_equal(
        render_overlay(grey, cam, alpha=alpha, lut=lut), _plain_blend(grey, cam, alpha, lut)
    )


def test_render_overlay_keeps_its_inputs() -> None:
    rng = np.random.default_rng(7)
    cam = rng.random((8, 8)).astype(np.float32)
    grey = rng.random((64, 50)).astype(np.float32)
    cam_before, grey_before = cam.copy(), grey.copy()
    render_overlay(grey, cam, alpha=0.35, lut=default_lut())
    assert np.array_equal(cam, cam_before)
    assert np.array_equal(grey, grey_before)


def test_colour_map_equals_the_table_lookup() -> None:
    rng = np.random.default_rng(3)
    cam = rng.random((10, 8)).astype(np.float32)
    lut = default_lut()
    out = colour_map(cam, (120, 90), lut=lut)
    assert out.dtype == np.uint8
    assert np.array_equal(out, _plain_colours(cam, (120, 90), lut))
