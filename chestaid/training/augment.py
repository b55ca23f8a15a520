"""Augmentation of training batches, on the training split only.

Two recipes share this code. The *light* one (the first default model's) only rotates a
few degrees and jitters brightness and contrast. The *acquisition* one makes the cues
of how an image was acquired useless for telling the classes apart: both classes are
blurred and sharpened, down- and up-sampled, given noise, put through gamma and window
curves, cropped, scaled, shifted and rotated, and partly occluded. A model that learnt
"blurry means pneumonia" or "bright means normal" from one centre's images is then
wrong on half of its training batches.

Everything works on batches of normalised model inputs of shape (N, 1, S, S): each is
turned back into image values in [0, 1], changed there, clipped as a real image would
be, and normalised again. Randomness comes from a caller's generator, so a seeded run
is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from chestaid.preprocess import PreprocessSpec


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of the random perturbations.

    Sizes (blur sigma, translation) are fractions of the image side, so a recipe means
    the same at every input size. The defaults are the light recipe; the fields after
    ``contrast`` are all off by default.
    """

    rotation_degrees: float = 5.0
    brightness: float = 0.1  # additive, in units of the [0, 1] image
    contrast: float = 0.1  # multiplicative around each image's mean: 1 +- contrast
    crop_scale_min: float = 1.0  # random resized crop: kept area fraction in [min, 1]
    aspect_jitter: float = 0.0  # log-uniform aspect ratio change of the crop: exp(+-x)
    translate: float = 0.0  # extra shift, fraction of the side
    blur_p: float = 0.0  # Gaussian blur...
    blur_sigma: tuple[float, float] = (0.002, 0.03)  # ...sigma as a fraction of the side
    sharpen_p: float = 0.0  # unsharp masking (exclusive with blur)...
    sharpen_amount: tuple[float, float] = (0.5, 1.5)  # ...of this strength
    resample_p: float = 0.0  # down-sampling then up-sampling...
    resample_factor: tuple[float, float] = (0.25, 0.8)  # ...by this factor
    gamma_p: float = 0.0  # gamma curve, log-uniform in [1/gamma_max, gamma_max]
    gamma_max: float = 1.6
    noise_p: float = 0.0  # additive Gaussian noise...
    noise_sd: tuple[float, float] = (0.01, 0.08)  # ...of this standard deviation
    occlusion_p: float = 0.0  # one rectangle of a random grey...
    occlusion_area: tuple[float, float] = (0.02, 0.12)  # ...covering this area fraction


LIGHT = AugmentConfig()

ACQUISITION = AugmentConfig(
    rotation_degrees=15.0,
    brightness=0.1,
    contrast=0.3,
    crop_scale_min=0.65,
    aspect_jitter=0.1,
    translate=0.06,
    blur_p=0.3,
    sharpen_p=0.2,
    resample_p=0.3,
    gamma_p=0.8,
    noise_p=0.3,
    occlusion_p=0.3,
)

RECIPES: dict[str, AugmentConfig] = {"light": LIGHT, "acquisition": ACQUISITION}


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _chosen(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one image (1, 1, S, S), reflecting at the borders."""
    radius = max(1, min(math.ceil(3.0 * sigma), img.shape[-1] // 2 - 1))
    xs = torch.arange(-radius, radius + 1, dtype=img.dtype)
    kernel = torch.exp(-0.5 * (xs / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(img, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def _geometry(img: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop, aspect change, shift and rotation in one resampling."""
    n = img.shape[0]
    angles = _uniform(n, -1.0, 1.0, generator) * math.radians(config.rotation_degrees)
    area = _uniform(n, config.crop_scale_min, 1.0, generator)
    log_aspect = _uniform(n, -1.0, 1.0, generator) * config.aspect_jitter
    sx = torch.sqrt(area * torch.exp(log_aspect)).clamp(max=1.0)
    sy = torch.sqrt(area / torch.exp(log_aspect)).clamp(max=1.0)
    # The crop may sit anywhere inside the image, plus a little extra shift.
    tx = _uniform(n, -1.0, 1.0, generator) * ((1.0 - sx) + 2.0 * config.translate)
    ty = _uniform(n, -1.0, 1.0, generator) * ((1.0 - sy) + 2.0 * config.translate)
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.stack(
        [
            torch.stack([cos * sx, -sin * sy, tx], 1),
            torch.stack([sin * sx, cos * sy, ty], 1),
        ],
        1,
    ).to(img.dtype)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    # Outside the image is black (0), as on a rotated or shifted radiograph.
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _sharpness_and_resolution(
    img: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    n, size = img.shape[0], img.shape[-1]
    blur = _chosen(n, config.blur_p, generator)
    sharpen = ~blur & _chosen(n, config.sharpen_p / max(1e-9, 1.0 - config.blur_p), generator)
    resample = _chosen(n, config.resample_p, generator)
    sigmas = _uniform(n, *config.blur_sigma, generator) * size
    amounts = _uniform(n, *config.sharpen_amount, generator)
    factors = _uniform(n, *config.resample_factor, generator)
    out = img.clone()
    for i in range(n):
        one = out[i : i + 1]
        if blur[i]:
            one = _gaussian_blur(one, max(float(sigmas[i]), 0.3))
        elif sharpen[i]:
            soft = _gaussian_blur(one, max(1.0, 0.01 * size))
            one = one + float(amounts[i]) * (one - soft)
        if resample[i]:
            small = max(8, round(size * float(factors[i])))
            one = F.interpolate(one, size=(small, small), mode="bilinear", antialias=True)
            one = F.interpolate(one, size=(size, size), mode="bilinear", align_corners=False)
        out[i : i + 1] = one
    return out


def _grey_levels(
    img: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    n = img.shape[0]
    img = img.clamp(0.0, 1.0)
    if config.gamma_p > 0:
        log_gamma = _uniform(n, -1.0, 1.0, generator) * math.log(config.gamma_max)
        use = _chosen(n, config.gamma_p, generator)
        gamma = torch.where(use, torch.exp(log_gamma), torch.ones(n)).view(n, 1, 1, 1)
        img = img.clamp_min(1e-6) ** gamma.to(img.dtype)
    contrast = (1.0 + _uniform(n, -1.0, 1.0, generator) * config.contrast).view(n, 1, 1, 1)
    brightness = (_uniform(n, -1.0, 1.0, generator) * config.brightness).view(n, 1, 1, 1)
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * contrast.to(img.dtype) + mean + brightness.to(img.dtype)
    if config.noise_p > 0:
        sd = _uniform(n, *config.noise_sd, generator) * _chosen(n, config.noise_p, generator)
        noise = torch.randn(img.shape, generator=generator, dtype=img.dtype)
        img = img + noise * sd.view(n, 1, 1, 1).to(img.dtype)
    return img.clamp(0.0, 1.0)


def _occlude(img: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    n, size = img.shape[0], img.shape[-1]
    use = _chosen(n, config.occlusion_p, generator)
    area = _uniform(n, *config.occlusion_area, generator)
    aspect = torch.exp(_uniform(n, -0.7, 0.7, generator))
    grey = torch.rand(n, generator=generator)
    corner = torch.rand(n, 2, generator=generator)
    out = img.clone()
    for i in range(n):
        if not use[i]:
            continue
        h = max(1, min(size, round(size * math.sqrt(float(area[i] * aspect[i])))))
        w = max(1, min(size, round(size * math.sqrt(float(area[i] / aspect[i])))))
        top = int(float(corner[i, 0]) * (size - h + 1))
        left = int(float(corner[i, 1]) * (size - w + 1))
        out[i, :, top : top + h, left : left + w] = float(grey[i])
    return out


def augment_batch(
    x: torch.Tensor, spec: PreprocessSpec, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Randomly perturb a batch of normalised inputs of shape (N, 1, S, S).

    Args:
        x: model inputs, standardised with ``spec``.
        spec: the preprocessing that standardised them.
        config: the recipe's ranges and probabilities.
        generator: the source of randomness (seed it for a repeatable run).

    Returns:
        A new batch of the same shape, standardised the same way.
    """
    img = x * spec.std + spec.mean
    img = _geometry(img, config, generator)
    if config.blur_p > 0 or config.sharpen_p > 0 or config.resample_p > 0:
        img = _sharpness_and_resolution(img, config, generator)
    img = _grey_levels(img, config, generator)
    if config.occlusion_p > 0:
        img = _occlude(img, config, generator)
    return (img - spec.mean) / spec.std


# The auxiliary task: which of these was applied to an upright, correctly displayed image.
# Index = quarter_turns + 4 * inverted; class 0 is "upright, grey scale as acquired".
ORIENTATION_CLASSES = 8


def orientation_transform(img: torch.Tensor, label: int) -> torch.Tensor:
    """Apply orientation class ``label`` to images in [0, 1] of shape (..., S, S).

    ``label % 4`` counter-clockwise quarter turns, then grey-scale inversion when
    ``label >= 4``.
    """
    turns, inverted = label % 4, label >= 4
    out = torch.rot90(img, turns, dims=(-2, -1)) if turns else img
    return 1.0 - out if inverted else out


def orientation_batch(
    x: torch.Tensor,
    spec: PreprocessSpec,
    fraction: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn and/or invert a random ``fraction`` of a normalised batch.

    Returns the new batch and the orientation class of every item (0 for the items
    left as they were, which keep their pneumonia label; the others are used for the
    auxiliary task only).
    """
    n = x.shape[0]
    labels = torch.zeros(n, dtype=torch.long)
    changed = _chosen(n, fraction, generator)
    drawn = torch.randint(1, ORIENTATION_CLASSES, (n,), generator=generator)
    labels[changed] = drawn[changed]
    out = x.clone()
    for i in torch.nonzero(changed).flatten().tolist():
        img = x[i] * spec.std + spec.mean
        out[i] = (orientation_transform(img, int(labels[i])) - spec.mean) / spec.std
    return out, labels
