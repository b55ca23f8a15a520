"""The one preprocessing function shared by training, evaluation and serving.

A grey image in [0, 1] (from :mod:`chestaid.imaging`) is stretched to a square of
the model's input size with an anti-aliased bilinear resize (the development images
were stretched to square, so serving stretches too) and standardised. The exact
recipe is recorded in every model bundle's manifest and checked when it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from chestaid.errors import BundleError, ConfigurationError, ImageError
from chestaid.imaging import DEFAULT_MAX_PIXELS, read_image

PREPROCESS_VERSION = 1
_KEYS = frozenset({"version", "input_size", "mean", "std", "resize", "interpolation", "channels"})


@dataclass(frozen=True)
class PreprocessSpec:
    """Input size and standardisation of model inputs."""

    input_size: int = 224
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        if self.input_size < 8:
            raise ConfigurationError(f"input_size must be at least 8, got {self.input_size}")
        if not self.std > 0:
            raise ConfigurationError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in a bundle manifest."""
        return {
            "version": PREPROCESS_VERSION,
            "input_size": self.input_size,
            "mean": self.mean,
            "std": self.std,
            "resize": "stretch",
            "interpolation": "bilinear-antialias",
            "channels": 1,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessSpec:
        """Parse a manifest's preprocessing record; refuses anything this version cannot do.

        Raises:
            BundleError: unknown version, keys, resize mode, or bad values.
        """
        if not isinstance(d, Mapping):
            raise BundleError("preprocessing record must be a JSON object")
        unknown = set(d) - _KEYS
        if unknown:
            raise BundleError(
                f"preprocessing record has unknown keys: {', '.join(sorted(unknown))}"
            )
        if d.get("version") != PREPROCESS_VERSION:
            raise BundleError(
                f"preprocessing version {d.get('version')!r} is not supported (this ChestAid has {PREPROCESS_VERSION})"
            )
        expected = {"resize": "stretch", "interpolation": "bilinear-antialias", "channels": 1}
        for key, value in expected.items():
            if d.get(key, value) != value:
                raise BundleError(
                    f"preprocessing {key}={d[key]!r} is not supported (only {value!r})"
                )
        try:
            return cls(input_size=int(d["input_size"]), mean=float(d["mean"]), std=float(d["std"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"preprocessing record is incomplete or invalid: {exc}") from exc


def preprocess(pixels: np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """Grey image in [0, 1], shape (H, W) -> model input of shape (1, S, S), float32.

    Pure: no disk, no clock, no randomness.

    Raises:
        ImageError: not a non-empty 2-D array.
    """
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ImageError(f"expected a non-empty 2-D grey image, got shape {pixels.shape}")
    size = spec.input_size
    t = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))[None, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(
            t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return ((t - spec.mean) / spec.std)[0]


def load_model_input(
    path: str | os.PathLike[str], spec: PreprocessSpec, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """Read a DICOM, PNG or JPEG file and preprocess it: what training, evaluation and serving share."""
    return preprocess(read_image(path, max_pixels=max_pixels).pixels, spec)
