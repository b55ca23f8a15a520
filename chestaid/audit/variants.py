"""The masked versions of an image the audit scores beside the image itself.

Each hidden area is filled with the median of the pixels left visible
(:func:`chestaid.audit.masks.fill_outside`). Masks are drawn on the image at its own
size, in frame coordinates, before the model's preprocessing stretches it to a square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chestaid.audit.masks import (
    DEFAULT_BORDER_FRACTION,
    DEFAULT_LUNG_PRIOR,
    LungPrior,
    border_band_mask,
    fill_outside,
    lung_prior_mask,
)
from chestaid.audit.text_marks import DEFAULT_TEXT_MARKS, TextMarkSettings, text_mark_mask

UNMASKED = "unmasked"
BORDER = "border_masked"
TEXT = "text_masked"
OUTSIDE_LUNGS = "outside_lungs_masked"
VARIANTS = (UNMASKED, BORDER, TEXT, OUTSIDE_LUNGS)
VARIANT_TEXT = {
    UNMASKED: "the image as it is",
    BORDER: "the outer border band hidden",
    TEXT: "detected burned-in text and markers hidden",
    OUTSIDE_LUNGS: "everything outside the lung prior hidden",
}


@dataclass(frozen=True)
class MaskSettings:
    """The geometry behind every variant."""

    lung_prior: LungPrior = DEFAULT_LUNG_PRIOR
    border_fraction: float = DEFAULT_BORDER_FRACTION
    text_marks: TextMarkSettings = DEFAULT_TEXT_MARKS


DEFAULT_MASK_SETTINGS = MaskSettings()


@dataclass(frozen=True)
class Variants:
    """An image's variants by name, and how much the text detector hid."""

    images: dict[str, np.ndarray]
    text_area: float  # share of the frame hidden as text (0 when none was found)


def make_variants(pixels: np.ndarray, settings: MaskSettings = DEFAULT_MASK_SETTINGS) -> Variants:
    """Every variant of a grey image in [0, 1] of shape (H, W)."""
    h, w = pixels.shape
    text = text_mark_mask(pixels, settings.text_marks)
    images = {
        UNMASKED: pixels,
        BORDER: fill_outside(pixels, ~border_band_mask(h, w, settings.border_fraction)),
        TEXT: fill_outside(pixels, ~text) if text.any() else pixels,
        OUTSIDE_LUNGS: fill_outside(pixels, lung_prior_mask(h, w, settings.lung_prior)),
    }
    return Variants(images, float(text.mean()))
