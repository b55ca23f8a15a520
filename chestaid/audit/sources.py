"""The two sources of the development data, as lists of images with patients (disk I/O).

Source 0 is the pediatric Guangzhou set (a folder with ``NORMAL/`` and ``PNEUMONIA/``,
possibly below ``train/``; patients from the file names). Source 1 is the adult
Hannover COVID-19 set (``images/`` and a ``metadata.csv`` with ``patient_id`` and
``image_id``). Patient keys are prefixed with the source, so they never collide.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chestaid.data import IMAGE_SUFFIXES, find_class_root, patient_from_filename
from chestaid.errors import DatasetError
from chestaid.imaging import read_image
from chestaid.preprocess import PreprocessSpec, preprocess

PEDIATRIC = 0
ADULT = 1
SOURCE_NAMES = {PEDIATRIC: "pediatric (Guangzhou)", ADULT: "adult COVID-19 (Hannover)"}


@dataclass(frozen=True)
class SourceImage:
    """One image file, its source and its patient key."""

    path: Path
    source: int
    patient: str


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def pediatric_images(root: str | os.PathLike[str]) -> list[SourceImage]:
    """The Guangzhou images under ``root`` (``NORMAL/`` and ``PNEUMONIA/``).

    Raises:
        DatasetError: no class folders, or no images.
    """
    base = find_class_root(Path(root), ("NORMAL", "PNEUMONIA"))
    found = [
        SourceImage(p, PEDIATRIC, "guangzhou:" + patient_from_filename(p.name))
        for cls in ("NORMAL", "PNEUMONIA")
        for p in _images_in(base / cls)
    ]
    if not found:
        raise DatasetError(f"{base} has no images in NORMAL/ or PNEUMONIA/")
    return found


def adult_images(root: str | os.PathLike[str]) -> list[SourceImage]:
    """The Hannover images under ``root/images``, with patients from ``root/metadata.csv``.

    Raises:
        DatasetError: a missing folder or CSV, or an image the CSV does not list.
    """
    folder, table = Path(root) / "images", Path(root) / "metadata.csv"
    if not folder.is_dir():
        raise DatasetError(f"{root} has no images/ folder")
    try:
        with table.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"cannot read {table}: {exc}") from exc
    if rows and not {"patient_id", "image_id"} <= set(rows[0]):
        raise DatasetError(f"{table} needs the columns patient_id and image_id")
    patient_of = {row["image_id"].strip(): row["patient_id"].strip() for row in rows}
    found = []
    for p in _images_in(folder):
        if p.stem not in patient_of:
            raise DatasetError(f"{table} has no row for image {p.name}")
        found.append(SourceImage(p, ADULT, "hannover:" + patient_of[p.stem]))
    if not found:
        raise DatasetError(f"{folder} has no images")
    return found


def load_square(path: Path, size: int) -> np.ndarray:
    """A file as a grey image in [0, 1], stretched to ``size`` x ``size`` as the model's
    preprocessing stretches it."""
    pixels = read_image(path).pixels
    return preprocess(pixels, PreprocessSpec(input_size=size, mean=0.0, std=1.0))[0].numpy()


def load_squares(images: Sequence[SourceImage], size: int) -> np.ndarray:
    """Every image of ``images`` by :func:`load_square`, shape (N, size, size)."""
    return np.stack([load_square(i.path, size) for i in images]).astype(np.float32)
