"""Fixed geometric masks of a square, stretched radiograph frame: lung prior and border band.

There is no lung segmentation model in ChestAid. The lung fields are a fixed
anatomical *prior*: two ellipses placed where the lungs of a frontal (PA/AP)
radiograph, stretched to a square, usually lie. It is right on average and wrong
on any one image that is shifted, rotated or framed differently; every figure
computed with it says so. Masks are boolean arrays, ``True`` inside the region.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from chestaid.errors import ConfigurationError


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in frame coordinates (0..1 across, 0..1 down)."""

    centre_x: float
    centre_y: float
    half_width: float
    half_height: float


@dataclass(frozen=True)
class LungPrior:
    """The two lung-field ellipses; the defaults are the prior every report states."""

    # The patient's right lung is on the image's left in a frontal view.
    right_lung: Ellipse = Ellipse(0.28, 0.46, 0.16, 0.30)
    left_lung: Ellipse = Ellipse(0.72, 0.46, 0.16, 0.30)

    def to_dict(self) -> dict[str, Any]:
        """The parameters, for a report."""
        return {"right_lung": asdict(self.right_lung), "left_lung": asdict(self.left_lung)}


DEFAULT_LUNG_PRIOR = LungPrior()
DEFAULT_BORDER_FRACTION = 0.12


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    if height < 1 or width < 1:
        raise ConfigurationError(f"a mask needs a positive size, got {height} x {width}")
    # Pixel centres, so a mask is the same shape at every resolution.
    yy = (np.arange(height, dtype=np.float64)[:, None] + 0.5) / height
    xx = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / width
    return yy, xx


def lung_prior_mask(
    height: int, width: int | None = None, prior: LungPrior = DEFAULT_LUNG_PRIOR
) -> np.ndarray:
    """``True`` inside either lung ellipse of ``prior``, for a frame of the given size."""
    yy, xx = _grid(height, height if width is None else width)
    inside = np.zeros((yy.shape[0], xx.shape[1]), dtype=bool)
    for e in (prior.right_lung, prior.left_lung):
        inside |= ((xx - e.centre_x) / e.half_width) ** 2 + (
            (yy - e.centre_y) / e.half_height
        ) ** 2 <= 1.0
    return inside


def border_band_mask(
    height: int, width: int | None = None, fraction: float = DEFAULT_BORDER_FRACTION
) -> np.ndarray:
    """``True`` in the outer frame band ``fraction`` of each side deep (at least one pixel).

    Raises:
        ConfigurationError: ``fraction`` not in (0, 0.5).
    """
    if not 0.0 < fraction < 0.5:
        raise ConfigurationError(f"border fraction must lie in (0, 0.5), got {fraction}")
    w = height if width is None else width
    _grid(height, w)  # checks the size
    deep_y, deep_x = max(1, round(fraction * height)), max(1, round(fraction * w))
    rows = (np.arange(height) < deep_y) | (np.arange(height) >= height - deep_y)
    cols = (np.arange(w) < deep_x) | (np.arange(w) >= w - deep_x)
    band: np.ndarray = rows[:, None] | cols[None, :]
    return band


def fill_outside(pixels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy of ``pixels`` with everything outside ``keep`` set to the median of the kept
    pixels: the hidden area keeps no structure and no extreme value of its own.

    Raises:
        ConfigurationError: shapes differ, or nothing is kept.
    """
    if pixels.shape != keep.shape:
        raise ConfigurationError(f"mask shape {keep.shape} differs from image {pixels.shape}")
    if not keep.any():
        raise ConfigurationError("the mask keeps no pixel")
    out = np.array(pixels, dtype=np.float32, copy=True)
    out[~keep] = np.float32(np.median(pixels[keep]))
    return out


def area_fraction(mask: np.ndarray) -> float:
    """The share of the frame a mask covers."""
    return float(np.mean(mask))
