"""Image corruptions for robustness testing: pure functions on a grey image in [0, 1].

Every corruption has the signature ``f(pixels, severity, rng) -> pixels``: a 2-D
float image in [0, 1] in, a new float32 image of the same shape in [0, 1] out. Only
``noise`` draws from ``rng``; the others ignore it. They act on the grey image as
decoded, *before* :func:`chestaid.preprocess.preprocess`, the way a different
scanner, film digitiser or PACS would have changed it.

The registry :data:`CORRUPTIONS` and what ``severity`` means for each entry (with the
value at which the function is the identity, where one exists):

``blur``        Gaussian blur; sigma = severity x the image side along each axis
                (so severity x the model input size after the stretch to square).
                Identity at 0.
``downsample``  down-sampling to severity x each side, then back up (bilinear,
                anti-aliased down). Identity at 1.
``noise``       additive Gaussian noise of standard deviation ``severity`` in image
                units, clipped to [0, 1]. Identity at 0.
``gamma``       x ** severity (below 1 brightens, above 1 darkens). Identity at 1.
``contrast``    a window change: mean + severity x (x - mean), clipped. Identity at 1.
``jpeg``        JPEG re-encoding at quality ``severity`` (1-95) by Pillow after
                quantising to 8 bits. No identity: every quality quantises.
``rotate``      rotation by ``severity`` degrees counter-clockwise as displayed,
                about the centre, corners filled black. Identity at 0; 90 equals
                ``np.rot90`` on a square image.
``crop``        central crop keeping ``severity`` of each side, resized back to the
                original shape. Identity at 1.
``quarter_turn`` ``np.rot90`` by ``severity`` (0-3) counter-clockwise quarter turns;
                a non-square image changes shape. Identity at 0.
``invert``      grey-scale inversion mixed in by ``severity``:
                (1 - s) x + s (1 - x); 1 is full inversion, 0 the identity.

The severities the robustness report uses are fixed here, so reports of different
models are comparable:

=============  ==========================  ==============================
family         severities                  meaning
=============  ==========================  ==============================
blur           0.01, 0.02                  sigma 1% and 2% of the side
downsample     0.5, 0.25                   half and a quarter of the side
noise          0.05, 0.1                   noise sd in [0, 1] image units
gamma          0.6, 1.6                    exposure: brighter, darker
jpeg           30, 10                      JPEG quality
rotate         10, 20                      degrees
crop           0.8, 0.65                   share of the side kept
=============  ==========================  ==============================

Normals are also shifted by blur (2% and 5%), gamma (0.6, 1.6) and a window change
(contrast 0.7) to see whether acquisition alone makes them look like pneumonia
(:data:`NORMAL_SHIFT_SEVERITIES`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Final

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch.nn import functional as F

from chestaid.errors import ConfigurationError, ImageError

Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _checked(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ImageError(f"expected a non-empty 2-D grey image, got shape {pixels.shape}")
    return np.asarray(pixels, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)
    return out


def resize(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a grey image to ``shape`` (anti-aliased when reducing)."""
    x = _checked(pixels)
    if x.shape == shape:
        return x.copy()
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    out = F.interpolate(t, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return _unit(out[0, 0].numpy())


def blur(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur with sigma = ``severity`` x the side along each axis."""
    x = _checked(pixels)
    if severity < 0:
        raise ConfigurationError(f"blur severity must be >= 0, got {severity}")
    if severity == 0:
        return x.copy()
    sigma = (severity * x.shape[0], severity * x.shape[1])
    return _unit(ndimage.gaussian_filter(x, sigma=sigma, mode="nearest"))


def downsample(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Reduce each side to ``severity`` of itself, then enlarge back to the original shape."""
    x = _checked(pixels)
    if not 0 < severity <= 1:
        raise ConfigurationError(f"downsample severity must be in (0, 1], got {severity}")
    if severity == 1:
        return x.copy()
    small = (max(1, round(x.shape[0] * severity)), max(1, round(x.shape[1] * severity)))
    return resize(resize(x, small), (x.shape[0], x.shape[1]))


def noise(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of sd ``severity``, clipped to [0, 1]."""
    x = _checked(pixels)
    if severity < 0:
        raise ConfigurationError(f"noise severity must be >= 0, got {severity}")
    if severity == 0:
        return x.copy()
    return _unit(x + rng.normal(0.0, severity, size=x.shape))


def gamma(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure change x ** ``severity``."""
    x = _checked(pixels)
    if severity <= 0:
        raise ConfigurationError(f"gamma must be positive, got {severity}")
    return _unit(np.power(np.clip(x, 0.0, 1.0), severity))


def contrast(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Window change: scale deviations from the image mean by ``severity``."""
    x = _checked(pixels)
    if severity < 0:
        raise ConfigurationError(f"contrast factor must be >= 0, got {severity}")
    mean = float(x.mean())
    return _unit(mean + severity * (x - mean))


def jpeg(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Re-encode as an 8-bit JPEG of quality ``severity`` and decode again."""
    x = _checked(pixels)
    quality = round(severity)
    if not 1 <= quality <= 95:
        raise ConfigurationError(f"JPEG quality must be 1-95, got {severity}")
    grey = Image.fromarray(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    grey.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("L"), dtype=np.float32) / 255.0


def rotate(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate by ``severity`` degrees counter-clockwise (as displayed), corners black."""
    x = _checked(pixels)
    if severity == 0:
        return x.copy()
    return _unit(ndimage.rotate(x, severity, reshape=False, order=1, mode="constant", cval=0.0))


def crop(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Keep the central ``severity`` of each side and resize it back to the original shape."""
    x = _checked(pixels)
    if not 0 < severity <= 1:
        raise ConfigurationError(f"crop severity must be in (0, 1], got {severity}")
    if severity == 1:
        return x.copy()
    h, w = x.shape
    ch, cw = max(1, round(h * severity)), max(1, round(w * severity))
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize(x[top : top + ch, left : left + cw], (h, w))


def quarter_turn(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """``np.rot90`` by ``severity`` counter-clockwise quarter turns (0-3)."""
    x = _checked(pixels)
    k = int(severity)
    if k != severity or k not in (0, 1, 2, 3):
        raise ConfigurationError(f"quarter turns must be 0, 1, 2 or 3, got {severity}")
    return np.ascontiguousarray(np.rot90(x, k))


def invert(pixels: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Grey-scale inversion, mixed in by ``severity`` (1 = 1 - x)."""
    x = _checked(pixels)
    if not 0 <= severity <= 1:
        raise ConfigurationError(f"invert severity must be in [0, 1], got {severity}")
    return _unit((1.0 - severity) * x + severity * (1.0 - x))


CORRUPTIONS: Final[Mapping[str, Corruption]] = {
    "blur": blur,
    "downsample": downsample,
    "noise": noise,
    "gamma": gamma,
    "contrast": contrast,
    "jpeg": jpeg,
    "rotate": rotate,
    "crop": crop,
    "quarter_turn": quarter_turn,
    "invert": invert,
}

# The families and severities of the report's ROC-AUC section, mildest first.
REPORT_SEVERITIES: Final[Mapping[str, tuple[float, ...]]] = {
    "blur": (0.01, 0.02),
    "downsample": (0.5, 0.25),
    "noise": (0.05, 0.1),
    "gamma": (0.6, 1.6),
    "jpeg": (30, 10),
    "rotate": (10, 20),
    "crop": (0.8, 0.65),
}

# Acquisition shifts a normal radiograph must survive without being flagged.
NORMAL_SHIFT_SEVERITIES: Final[Mapping[str, tuple[float, ...]]] = {
    "blur": (0.02, 0.05),
    "gamma": (0.6, 1.6),
    "contrast": (0.7,),
}


def corrupt(
    pixels: np.ndarray, family: str, severity: float, rng: np.random.Generator
) -> np.ndarray:
    """Apply the registered corruption ``family`` at ``severity``.

    Raises:
        ConfigurationError: unknown family or a severity outside its range.
        ImageError: not a non-empty 2-D image.
    """
    try:
        function = CORRUPTIONS[family]
    except KeyError as exc:
        raise ConfigurationError(
            f"unknown corruption {family!r}; known: {', '.join(CORRUPTIONS)}"
        ) from exc
    return function(pixels, severity, rng)


def featureless_images(size: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs with nothing to judge, of shape (size, size) in [0, 1].

    Black, uniform grey 0.25 / 0.5 / 0.75, white, Gaussian noise (mean 0.5, sd 0.2,
    clipped; seeded), and a smooth top-to-bottom gradient from 0 to 1.
    """
    if size < 1:
        raise ConfigurationError(f"size must be positive, got {size}")
    rng = np.random.default_rng(seed)
    ramp = np.repeat(np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None], size, axis=1)
    images = {
        "black": np.zeros((size, size), np.float32),
        "grey 0.25": np.full((size, size), 0.25, np.float32),
        "grey 0.5": np.full((size, size), 0.5, np.float32),
        "grey 0.75": np.full((size, size), 0.75, np.float32),
        "white": np.ones((size, size), np.float32),
        "noise 0.5+-0.2": _unit(rng.normal(0.5, 0.2, size=(size, size))),
        "gradient": ramp,
    }
    return images


_LABELS: Final[Mapping[str, str]] = {
    "blur": "blur sigma {:.0%}",
    "downsample": "downsample x{:g}",
    "noise": "noise sd {:g}",
    "gamma": "gamma {:g}",
    "contrast": "contrast x{:g}",
    "jpeg": "JPEG q{:g}",
    "rotate": "rotate {:g} deg",
    "crop": "crop keep {:.0%}",
    "quarter_turn": "rot90 k={:g}",
    "invert": "inverted {:.0%}",
}


def describe(family: str, severity: float) -> str:
    """A short label for a corruption at a severity, e.g. ``blur sigma 2%``."""
    template = _LABELS.get(family, family + " {:g}")
    return template.format(severity)
