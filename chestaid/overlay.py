"""Showing a map over a radiograph: the colour table, the display-size image, the blend.

One set of steps for every picture ChestAid makes of a map: the Secondary Capture
sent to the PACS, the web page (which lets the browser do the blend at CSS opacity
alpha, ``(1 - alpha) * grey + alpha * colour`` per channel, exactly
:func:`render_overlay`'s) and ``chestaid predict --cam``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from chestaid.errors import ConfigurationError

DEFAULT_COLORMAP = "jet"


def colormap_lut(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    table = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.asarray(np.round(table * 255), dtype=np.uint8)


@lru_cache(maxsize=1)
def default_lut() -> np.ndarray:
    """The colour table of every output (:data:`DEFAULT_COLORMAP`), built once, read-only."""
    table = colormap_lut()
    table.setflags(write=False)
    return table


def display_image(pixels: np.ndarray, max_side: int = 1024) -> np.ndarray:
    """A 0..1 grey image shrunk (area-averaged) so its longer side is at most ``max_side``."""
    height, width = pixels.shape
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return pixels.astype(np.float32, copy=False)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    return nn.functional.interpolate(t, size=size, mode="area")[0, 0].numpy()


def upsample_map(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample (N, h, w) maps to (N, *size), clipped back to the input range."""
    up = nn.functional.interpolate(
        cam.unsqueeze(1), size=size, mode="bilinear", align_corners=False
    ).squeeze(1)
    return up.clamp(float(cam.min()), float(cam.max()))


def colour_map(cam: np.ndarray, size: tuple[int, int], *, lut: np.ndarray) -> np.ndarray:
    """A 0..1 map upsampled bilinearly to ``size``, rounded to 256 levels and coloured.

    Args:
        cam: map in [0, 1] of any size (h, w).
        size: (height, width) of the image it is shown over.
        lut: a (256, 3) uint8 table from :func:`colormap_lut`.

    Returns:
        RGB uint8 pixels of shape (height, width, 3).
    """
    return np.take(lut, _levels(cam, size), axis=0)


def _levels(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The map upsampled to ``size`` as uint8 levels 0..255 (indices into a colour table)."""
    up = upsample_map(torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None], size)
    # In place on the one upsampled array: a picture of a million pixels is made per
    # study, and each temporary of it costs milliseconds.
    levels = up[0].numpy()
    np.multiply(levels, 255, out=levels)
    np.round(levels, out=levels)
    np.clip(levels, 0, 255, out=levels)
    return levels.astype(np.uint8)


def render_overlay(
    grey: np.ndarray,
    cam: np.ndarray,
    *,
    alpha: float = 0.4,
    colormap: str = DEFAULT_COLORMAP,
    lut: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a 0..1 map, upsampled to the image, over a grey image.

    Args:
        grey: float image in [0, 1], shape (H, W).
        cam: normalised map in [0, 1] of any size (h, w); upsampled bilinearly.
        alpha: opacity of the map, 0..1.
        colormap: matplotlib colormap name (ignored when ``lut`` is given).
        lut: an optional precomputed (256, 3) uint8 table from :func:`colormap_lut`.

    Returns:
        An RGB uint8 array of shape (H, W, 3).

    Raises:
        ConfigurationError: ``alpha`` is outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigurationError(f"alpha must be in [0, 1], got {alpha}")
    table = lut if lut is not None else colormap_lut(colormap)
    # The same float32 arithmetic as (1 - alpha) * grey * 255 + alpha * colour, done in
    # place: alpha * colour is looked up from a scaled table (256 entries, not a million
    # products), and the grey term is added to it.
    blended = np.take(alpha * table.astype(np.float32), _levels(cam, grey.shape), axis=0)
    base = np.clip(grey, 0.0, 1.0).astype(np.float32)
    np.multiply(base, 255.0, out=base)
    np.multiply(base, 1.0 - alpha, out=base)
    np.add(blended, base[..., None], out=blended)
    np.round(blended, out=blended)
    np.clip(blended, 0, 255, out=blended)
    return blended.astype(np.uint8)
