"""Tiny generated folders for the source audit: an adult source and an N-class data folder.

The pediatric source is :func:`tests.synthetic_data.make_image_folder`. The adult
images here carry a bright corner marker, as burned-in markers do.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from tests.synthetic_data import chest_like

FOUR_CLASSES = ("NORMAL", "BACTERIAL", "VIRAL", "COVID-19")


def _marked(rng: np.random.Generator, size: int) -> np.ndarray:
    image = chest_like(rng, size, opacity=True)
    image[2:6, 2] = 1.0  # an 'L' in the top-left corner, one pixel thin
    image[5, 2:6] = 1.0
    return image


def _save(image: np.ndarray, path: Path) -> None:
    Image.fromarray((image * 255).astype(np.uint8)).save(path)


def make_adult_folder(
    root: Path, *, patients: int = 6, images_per_patient: int = 2, size: int = 48, seed: int = 1
) -> Path:
    """Write ``images/*.png`` and ``metadata.csv`` (patient_id, image_id) under ``root``."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(patients):
        for i in range(images_per_patient):
            image_id = f"{p:02x}{i:02x}abcd"
            _save(_marked(rng, size), root / "images" / f"{image_id}.png")
            rows.append({"patient_id": f"pat{p:03d}", "image_id": image_id, "modality": "CR"})
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["patient_id", "image_id", "modality"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def make_four_class_folder(
    root: Path, *, patients_per_class: int = 4, size: int = 48, seed: int = 2
) -> Path:
    """A folder per class of :data:`FOUR_CLASSES` (one image per patient) and patients.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for cls in FOUR_CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for p in range(patients_per_class):
            image = (
                _marked(rng, size) if cls == "COVID-19" else chest_like(rng, size, cls != "NORMAL")
            )
            name = f"{cls.lower()}-{p}.png"
            _save(image, root / cls / name)
            rows.append({"file": f"{cls}/{name}", "patient": f"{cls}-{p}"})
    with (root / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "patient"])
        writer.writeheader()
        writer.writerows(rows)
    return root
