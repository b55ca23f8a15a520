"""The grey image every reader gives: float32 pixels in [0, 1], 1 = bright as displayed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_PIXELS = 40_000_000


@dataclass(frozen=True)
class GreyImage:
    """A decoded radiograph: float32 pixels in [0, 1], 1 = bright as displayed."""

    pixels: np.ndarray
    source_format: str  # "dicom", "png" or "jpeg"
    modality: str | None
    photometric: str | None
    bits_stored: int | None
