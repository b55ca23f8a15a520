"""What a result keeps of its image: the Grad-CAM map as text, and simple image statistics.

The map is stored on the result at feature-map resolution (a few rows of a few
values), as a compact JSON list of rows: ``[[0.0,0.1234,...],...]``. Row 0 is the
top of the image and column 0 its left edge, as the image is displayed; the map
covers the whole image (the model input is the image stretched to a square), so a
reader upsamples it to the image's rows and columns to overlay it. Values are in
[0, 1], rounded to four decimals.

The statistics (mean and standard deviation of the decoded 0..1 grey image, and its
size) are what label-free drift watches besides the logits.

Everything here is pure: no disk, no database, no clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.errors import DaemonError

CAM_DECIMALS = 4


class CamError(DaemonError):
    """A Grad-CAM map, or its stored text, is not a finite 2-D map of values in [0, 1]."""


class ImageStatisticsError(DaemonError):
    """Statistics were asked of something that is not a non-empty 2-D image."""


def _check_cam(cam: np.ndarray) -> None:
    if cam.ndim != 2 or cam.size == 0:
        raise CamError(f"a map must be a non-empty 2-D array, got shape {cam.shape}")
    if not (np.issubdtype(cam.dtype, np.floating) or np.issubdtype(cam.dtype, np.integer)):
        raise CamError(f"a map must hold real numbers, got dtype {cam.dtype}")
    if not np.isfinite(cam).all():
        raise CamError("a map must hold finite values only")
    low, high = float(cam.min()), float(cam.max())
    if low < 0.0 or high > 1.0:
        raise CamError(f"a map's values must be in [0, 1], got {low:g} to {high:g}")


def encode_cam(cam: np.ndarray) -> str:
    """The compact JSON text of a map: a list of rows, values rounded to 4 decimals.

    Args:
        cam: the map, shape (rows, cols), values in [0, 1]; row 0 is the image's top.

    Returns:
        JSON such as ``[[0.0,0.5],[1.0,0.25]]``, with no spaces.

    Raises:
        CamError: not a non-empty 2-D array of real numbers, or a value not finite or
            outside [0, 1].
    """
    _check_cam(cam)
    rows = np.round(cam.astype(np.float64), CAM_DECIMALS).tolist()
    return json.dumps(rows, separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise CamError(f"a stored map must hold finite numbers, found {name}")


def decode_cam(text: str) -> np.ndarray:
    """The map stored by :func:`encode_cam`, as float32 of shape (rows, cols).

    Args:
        text: the JSON list of rows.

    Returns:
        The map; row 0 is the image's top, column 0 its left edge.

    Raises:
        CamError: not JSON, not a non-empty rectangular list of rows of numbers, or a
            value not finite or outside [0, 1].
    """
    try:
        rows = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, TypeError, RecursionError) as exc:
        raise CamError(f"a stored map is not readable JSON: {exc}") from exc
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise CamError("a stored map must be a non-empty list of rows")
    width = len(rows[0])
    if width == 0 or any(len(r) != width for r in rows):
        raise CamError("a stored map's rows must be non-empty and of one length")
    for row in rows:
        for value in row:
            # bool is an int to Python, but true/false in a map is a corrupt row.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CamError(f"a stored map must hold numbers only, found {value!r}")
    cam = np.array(rows, dtype=np.float64)
    _check_cam(cam)
    return cam.astype(np.float32)


@dataclass(frozen=True)
class ImageStatistics:
    """Mean and standard deviation of a decoded 0..1 grey image, and its size."""

    mean: float
    std: float
    rows: int
    cols: int


def image_statistics(
    pixels: np.ndarray, *, shape: tuple[int, int] | None = None
) -> ImageStatistics:
    """Mean, (population) standard deviation and size of a grey image.

    Args:
        pixels: the decoded image, shape (rows, cols), normally float in [0, 1].
        shape: the image's stored (rows, cols) when it was decoded at a reduced
            resolution; None when ``pixels`` is the image at its stored size.

    Returns:
        The statistics, accumulated in float64.

    Raises:
        ImageStatisticsError: not a non-empty 2-D array, or the statistics are not finite.
    """
    if pixels.ndim != 2 or pixels.size == 0:
        raise ImageStatisticsError(f"expected a non-empty 2-D image, got shape {pixels.shape}")
    mean = float(np.mean(pixels, dtype=np.float64))
    std = _std_about(pixels, mean)
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ImageStatisticsError("the image holds values that are not finite")
    rows, cols = pixels.shape if shape is None else shape
    return ImageStatistics(mean=mean, std=std, rows=int(rows), cols=int(cols))


# Rows per step of the deviations: a few hundred kilobytes of doubles, so the step's
# buffer stays in the cache instead of a double copy of the whole image (40 MB for a
# 2500 x 2048 radiograph) going through memory three times.
_STD_BLOCK_ELEMENTS = 1 << 16


def _std_about(pixels: np.ndarray, mean: float) -> float:
    """The population standard deviation about ``mean``, in float64, a block of rows at a time.

    The same two-pass formula as ``np.std(pixels, dtype=np.float64)``; the sums are
    only taken in another order (equal to within rounding).
    """
    rows, cols = pixels.shape
    step = max(1, _STD_BLOCK_ELEMENTS // max(cols, 1))
    buffer = np.empty((min(step, rows), cols), dtype=np.float64)
    total = 0.0
    for start in range(0, rows, step):
        block = pixels[start : start + step]
        deviations = buffer[: block.shape[0]]
        np.subtract(block, mean, out=deviations, dtype=np.float64)
        np.multiply(deviations, deviations, out=deviations)
        total += float(deviations.sum())
    return math.sqrt(total / pixels.size)
