"""A tiny N-class bundle with random weights and a synthetic folder of its classes.

Nothing is trained: the bundle is a random network saved with a patient-level split of
the folder (``splits.json`` and its fingerprints), as training would leave it, so
``chestaid calibrate`` and ``evaluate`` take the bundle's own calibration and report
cases. Each class's images differ a little (an opacity in a class-specific place), so
the numbers are not all ties, though a random network separates little.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from chestaid.bundle import Manifest, save_bundle
from chestaid.data import discover, fingerprint, split_by_patient, splits_to_json
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from tests.synthetic_data import chest_like

FOUR_CLASSES = ("NORMAL", "BACTERIAL", "VIRAL", "COVID-19")
# Of the backbones, one whose random weights give logits that differ from image to image.
ARCHITECTURE = "densenet121"
FRACTIONS = {"train": 0.2, "validation": 0.1, "calibration": 0.35, "report": 0.35}


def make_class_folder(
    root: Path,
    classes: Sequence[str] = FOUR_CLASSES,
    *,
    patients_per_class: int = 12,
    images_per_patient: int = 2,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write one folder per class under ``root / 'train'``; file names carry the patient."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        for p in range(patients_per_class):
            patient = c * 1000 + p
            for i in range(images_per_patient):
                image = chest_like(rng, size, opacity=c > 0)
                if c > 1:  # the other findings brighten a band of their own
                    band = slice((c * size) // 8, (c * size) // 8 + size // 8)
                    image[band, :] = np.clip(image[band, :] + 0.2, 0.0, 1.0)
                Image.fromarray((image * 255).astype(np.uint8)).save(
                    folder / f"person{patient}_{name.lower()}_{i}.png"
                )
    return root


def make_multiclass_bundle(
    path: Path, data: Path, classes: Sequence[str] = FOUR_CLASSES, *, seed: int = 0
) -> Path:
    """Save a random :data:`ARCHITECTURE` with one logit a class, and the folder's split."""
    base, examples = discover(data, classes=classes)
    parts = split_by_patient(examples, fractions=FRACTIONS, seed=seed)
    torch.manual_seed(seed)
    save_bundle(
        path,
        build_model(ARCHITECTURE, num_outputs=len(classes)).eval(),
        Manifest(
            version="multi-test",
            architecture=ARCHITECTURE,
            classes=tuple(classes),
            preprocessing=PreprocessSpec(input_size=32),
            data_fingerprint={
                "splits": {name: fingerprint(base, items) for name, items in parts.items()}
            },
        ),
        splits=splits_to_json(parts, classes, seed),
    )
    return path
