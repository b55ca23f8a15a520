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

    edge_fraction: float = 0.20
    min_lift: float = 0.25
    max_area: float = 0.01
    min_pixels: int = 6  # fewer is speckle, not a glyph
    min_contrast: float = 0.25
    pad: float = 0.01

    def to_dict(self) -> dict[str, Any]:
        """The parameters, for a report."""
        return asdict(self)


DEFAULT_TEXT_MARKS = TextMarkSettings()


def text_mark_mask(
    pixels: np.ndarray, settings: TextMarkSettings = DEFAULT_TEXT_MARKS
) -> np.ndarray:
    """``True`` over the bounding boxes of burned-in text and markers found in ``pixels``.

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
    level = max(float(np.quantile(img, 0.995)), float(np.median(img)) + settings.min_lift)
    labels, count = ndimage.label(img >= level, structure=np.ones((3, 3), dtype=bool))
    mask = np.zeros((h, w), dtype=bool)
    if count == 0:
        return mask
    band = border_band_mask(h, w, settings.edge_fraction)
    ring = max(2, round(0.02 * max(h, w)))
    pad_y, pad_x = max(1, round(settings.pad * h)), max(1, round(settings.pad * w))
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        component = labels[box] == index
        if not settings.min_pixels <= component.sum() <= settings.max_area * h * w:
            continue
        cy = round((box[0].start + box[0].stop - 1) / 2)
        cx = round((box[1].start + box[1].stop - 1) / 2)
        if not band[cy, cx]:
            continue
        y0, y1 = max(0, box[0].start - ring), min(h, box[0].stop + ring)
        x0, x1 = max(0, box[1].start - ring), min(w, box[1].stop + ring)
        around = np.ones((y1 - y0, x1 - x0), dtype=bool)
        around[box[0].start - y0 : box[0].stop - y0, box[1].start - x0 : box[1].stop - x0] = False
        if not around.any():
            continue
        surround = float(np.median(img[y0:y1, x0:x1][around]))
        if float(img[box][component].mean()) - surround < settings.min_contrast:
            continue
        mask[
            max(0, box[0].start - pad_y) : min(h, box[0].stop + pad_y),
            max(0, box[1].start - pad_x) : min(w, box[1].stop + pad_x),
        ] = True
    return mask
