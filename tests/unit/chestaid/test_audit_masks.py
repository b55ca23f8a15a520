"""The audit's fixed masks: lung prior, border band, filling, and burned-in text marks."""

from __future__ import annotations

import numpy as np
import pytest

from chestaid.audit.masks import (
    DEFAULT_LUNG_PRIOR,
    area_fraction,
    border_band_mask,
    fill_outside,
    lung_prior_mask,
)
from chestaid.audit.text_marks import text_mark_mask
from chestaid.audit.variants import BORDER, OUTSIDE_LUNGS, TEXT, UNMASKED, make_variants
from chestaid.errors import ConfigurationError


def test_lung_prior_is_two_mirrored_ellipses_of_the_stated_area() -> None:
    mask = lung_prior_mask(400)
    e = DEFAULT_LUNG_PRIOR.right_lung
    assert np.array_equal(mask, mask[:, ::-1]), "the default prior is left-right symmetric"
    assert area_fraction(mask) == pytest.approx(2 * np.pi * e.half_width * e.half_height, rel=0.02)
    assert mask[round(e.centre_y * 400), round(e.centre_x * 400)]
    assert not mask[:, 199:201].any(), "the mediastinum between the lungs is outside"
    assert not mask[0].any() and not mask[-1].any()


def test_lung_prior_keeps_its_shape_on_a_non_square_frame() -> None:
    mask = lung_prior_mask(200, 300)
    assert mask.shape == (200, 300)
    assert area_fraction(mask) == pytest.approx(area_fraction(lung_prior_mask(400)), rel=0.03)


def test_border_band_is_the_stated_fraction_of_each_side() -> None:
    band = border_band_mask(100, fraction=0.12)
    assert band[:12].all() and band[-12:].all() and band[:, :12].all() and band[:, -12:].all()
    assert not band[12:88, 12:88].any()
    assert int(band.sum()) == 100 * 100 - 76 * 76


@pytest.mark.parametrize("fraction", [0.0, 0.5, -0.1])
def test_border_fraction_out_of_range_is_refused(fraction: float) -> None:
    with pytest.raises(ConfigurationError):
        border_band_mask(64, fraction=fraction)


def test_fill_outside_sets_the_hidden_area_to_the_median_of_the_rest() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((20, 20)).astype(np.float32)
    keep = np.zeros((20, 20), dtype=bool)
    keep[5:15, 5:15] = True
    filled = fill_outside(image, keep)
    assert np.array_equal(filled[keep], image[keep])
    assert np.all(filled[~keep] == np.float32(np.median(image[keep])))
    with pytest.raises(ConfigurationError):
        fill_outside(image, np.zeros((20, 20), dtype=bool))


def _with_letter(image: np.ndarray, top: int, left: int) -> np.ndarray:
    out = image.copy()
    out[top : top + 10, left : left + 2] = 1.0  # an "L": a stroke down, a stroke across
    out[top + 8 : top + 10, left : left + 7] = 1.0
    return out


def test_a_bright_letter_in_a_corner_is_found_and_boxed() -> None:
    rng = np.random.default_rng(1)
    image = (0.4 + 0.05 * rng.standard_normal((128, 128))).clip(0, 1).astype(np.float32)
    mask = text_mark_mask(_with_letter(image, 6, 8))
    assert mask[6:16, 8:15].all(), "the letter is covered"
    assert mask.sum() < 20 * 20, "and little else"
    assert not mask[30:].any()


def test_the_same_letter_in_the_middle_or_a_large_bright_area_is_not_text() -> None:
    rng = np.random.default_rng(2)
    image = (0.4 + 0.05 * rng.standard_normal((128, 128))).clip(0, 1).astype(np.float32)
    assert not text_mark_mask(_with_letter(image, 60, 60)).any()
    bright_edge = image.copy()
    bright_edge[:, :20] = 1.0  # a wide bright margin is a border, not a marker
    assert not text_mark_mask(bright_edge).any()
    assert not text_mark_mask(image).any()


def test_variants_hide_what_their_names_say() -> None:
    rng = np.random.default_rng(3)
    image = (0.4 + 0.05 * rng.standard_normal((100, 100))).clip(0, 1).astype(np.float32)
    image = _with_letter(image, 4, 4)
    v = make_variants(image)
    assert v.images[UNMASKED] is image
    assert v.text_area > 0
    assert v.images[TEXT][4:14, 4:11].max() < 0.9, "the letter is gone"
    assert np.array_equal(v.images[TEXT][40:60, 40:60], image[40:60, 40:60])
    band = border_band_mask(100)
    assert np.ptp(v.images[BORDER][band]) == 0 and np.array_equal(
        v.images[BORDER][~band], image[~band]
    )
    lungs = lung_prior_mask(100)
    assert np.ptp(v.images[OUTSIDE_LUNGS][~lungs]) == 0
    assert np.array_equal(v.images[OUTSIDE_LUNGS][lungs], image[lungs])


def test_bright_speckle_near_the_edge_is_not_text() -> None:
    rng = np.random.default_rng(4)
    image = (0.5 + 0.02 * rng.standard_normal((64, 64))).astype(np.float32)
    image[3, 3] = image[60, 5] = image[10, 58] = 1.0  # lone hot pixels
    assert not text_mark_mask(image).any()
    image[3:6, 3:5] = 1.0  # six pixels together: the smallest glyph
    assert text_mark_mask(image)[3:6, 3:5].all()


def test_a_long_thin_wire_along_the_edge_is_not_text() -> None:
    rng = np.random.default_rng(6)
    image = (0.4 + 0.02 * rng.standard_normal((128, 128))).astype(np.float32)
    image[5:120, 6:8] = 1.0  # an ECG lead down the left edge
    assert not text_mark_mask(image).any()
    image[5:15, 20:22] = 1.0  # a letter's stroke beside it still counts
    assert text_mark_mask(image)[5:15, 20:22].all()
