"""Tiny generated chest-like image folders for tests (nothing from outside the tests).

Normal images are smooth noise with two darker 'lung' fields; pneumonia images add a
bright blurred opacity in one lung, so a small model can learn the difference in a
few steps. File names follow the patient-key conventions of the development data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def chest_like(rng: np.random.Generator, size: int, opacity: bool) -> np.ndarray:
    """A float image in [0, 1] of shape (size, size)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = 0.55 + 0.1 * rng.standard_normal((size, size))
    for cx in (0.3, 0.7):
        lung = ((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.3) ** 2 < 1
        image[lung] -= 0.3
    if opacity:
        cx, cy = rng.choice([0.3, 0.7]), rng.uniform(0.4, 0.65)
        blob = np.exp(-(((xx - cx) / 0.09) ** 2 + ((yy - cy) / 0.12) ** 2))
        image += 0.45 * blob
    return np.clip(image, 0.0, 1.0)


def make_image_folder(
    root: Path,
    *,
    patients_per_class: int = 12,
    images_per_patient: int = 2,
    size: int = 64,
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """Write NORMAL/ and PNEUMONIA/ folders under ``root / 'train'``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / "train" / cls).mkdir(parents=True, exist_ok=True)
    for p in range(patients_per_class):
        for i in range(images_per_patient):
            normal = chest_like(rng, size, opacity=False)
            name = f"IM-{p + 1:04d}-{i + 1:04d}{suffix}"
            Image.fromarray((normal * 255).astype(np.uint8)).save(root / "train" / "NORMAL" / name)
            sick = chest_like(rng, size, opacity=True)
            name = f"person{p + 1}_bacteria_{100 * p + i}{suffix}"
            Image.fromarray((sick * 255).astype(np.uint8)).convert("RGB").save(
                root / "train" / "PNEUMONIA" / name
            )
    return root
