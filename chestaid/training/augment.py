"""Soft augmentation of training batches: small rotations, light brightness and contrast.

Applied to model inputs after the shared preprocessing, on the training split only.
Randomness comes from a caller's generator, so a seeded run is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from chestaid.preprocess import PreprocessSpec


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random perturbations (symmetric around no change)."""

    rotation_degrees: float = 5.0
    brightness: float = 0.1  # additive, in units of the [0, 1] image
    contrast: float = 0.1  # multiplicative around each image's mean: 1 +- contrast


def augment_batch(
    x: torch.Tensor, spec: PreprocessSpec, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Randomly rotate and jitter a batch of normalised inputs of shape (N, 1, S, S).

    Rotation uses bilinear resampling and fills the corners with black (image value 0).
    """
    n = x.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2.0 - 1.0) * limit

    angles = uniform(math.radians(config.rotation_degrees))
    cos, sin = torch.cos(angles), torch.sin(angles)
    zeros = torch.zeros(n)
    theta = torch.stack(
        [torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    black = (0.0 - spec.mean) / spec.std
    # Shift so black is 0 before sampling: grid_sample pads with zeros.
    rotated = F.grid_sample(
        x - black, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    rotated = rotated + black
    contrast = (1.0 + uniform(config.contrast)).view(n, 1, 1, 1).to(x.dtype)
    brightness = (uniform(config.brightness) / spec.std).view(n, 1, 1, 1).to(x.dtype)
    mean = rotated.mean(dim=(1, 2, 3), keepdim=True)
    return (rotated - mean) * contrast + mean + brightness
