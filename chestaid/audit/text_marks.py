"""Burned-in text and markers: small, bright, high-contrast blobs near the frame's edge.

The method and its parameters are stated in every report
(:data:`chestaid.audit.statements.TEXT_MARK_NOTE`); dark text on a bright field,
and text inside the lung fields, are not looked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from chestaid.audit.masks import border_band_mask
from chestaid.errors import ConfigurationError


@dataclass(frozen=True)
class TextMarkSettings:
    """The detector's parameters; the defaults are the ones reports state."""

    opening: float = 0.08  # side of the opening's square, as a share of the image's side
    min_contrast: float = 0.35  # how far a glyph rises above its opened surroundings
    edge_fraction: float = 0.20
    max_extent: float = 0.10  # a glyph's bounding box, as a share of each side
    min_pixels: int = 6  # fewer is speckle, not a glyph
    pad: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        """The parameters, for a report."""
        return asdict(self)


DEFAULT_TEXT_MARKS = TextMarkSettings()


def text_mark_mask(
    pixels: np.ndarray, settings: TextMarkSettings = DEFAULT_TEXT_MARKS
) -> np.ndarray:
    """``True`` over the bounding boxes of burned-in text and markers found in ``pixels``.

    A white top-hat (the image minus its grey opening by a square wider than a glyph's
    stroke) keeps what is small and brighter than its surroundings; its components
    that rise by ``min_contrast``, have at least ``min_pixels`` pixels, fit a box of
    ``max_extent`` of each side and have their centre in the outer ``edge_fraction``
    band count as glyphs. Wires are too long and bones too wide or too faint to count,
    mostly: the report states what the detector misses and hides by mistake.

    Args:
        pixels: grey image in [0, 1], shape (H, W).
        settings: the detector's parameters.

    Returns:
        A boolean mask of the image's shape (all ``False`` when nothing is found).

    Raises:
        ConfigurationError: not a 2-D image.
    """
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ConfigurationError(f"expected a 2-D grey image, got shape {pixels.shape}")
    h, w = pixels.shape
    img = np.asarray(pixels, dtype=np.float32)
    side = max(3, round(settings.opening * max(h, w)))
    tophat = img - ndimage.grey_opening(img, size=(side, side))
    labels, _ = ndimage.label(tophat >= settings.min_contrast, structure=np.ones((3, 3), bool))
    band = border_band_mask(h, w, settings.edge_fraction)
    pad_y, pad_x = max(1, round(settings.pad * h)), max(1, round(settings.pad * w))
    mask = np.zeros((h, w), dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None or int(np.sum(labels[box] == index)) < settings.min_pixels:
            continue
        rows, cols = box
        if rows.stop - rows.start > settings.max_extent * h:
            continue
        if cols.stop - cols.start > settings.max_extent * w:
            continue
        if not band[(rows.start + rows.stop - 1) // 2, (cols.start + cols.stop - 1) // 2]:
            continue
        mask[
            max(0, rows.start - pad_y) : min(h, rows.stop + pad_y),
            max(0, cols.start - pad_x) : min(w, cols.stop + pad_x),
        ] = True
    return mask
