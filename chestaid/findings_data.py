"""The N-class development layout: COVID-19, viral and bacterial pneumonia, and normal.

The shared data hold two collections: the pediatric pneumonia set (``NORMAL/`` and
``PNEUMONIA/``, whose file names say ``bacteria`` or ``virus``) and the adult
COVID-19 set of one hospital (``images/`` with ``metadata.csv`` naming each image's
patient). :func:`build_layout` lays them out as a folder per class, the layout every
ChestAid command reads, with links to the original files (nothing is copied) and a
``patients.csv`` that keys every image to its patient, so splits stay by patient
across both collections. A ``layout.json`` records where each class came from:
the COVID-19 class is the only adult class and the only one from its hospital,
which is what the shortcut audit (``chestaid audit``) is about.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chestaid.data import IMAGE_SUFFIXES, patient_from_filename
from chestaid.errors import DatasetError

FOUR_CLASSES = ("NORMAL", "BACTERIAL", "VIRAL", "COVID-19")
# The reference system's three classes: no bacterial pneumonia.
THREE_CLASSES = ("NORMAL", "VIRAL", "COVID-19")
LAYOUTS: dict[str, tuple[str, ...]] = {"four": FOUR_CLASSES, "three": THREE_CLASSES}
PATIENTS_CSV = "patients.csv"
LAYOUT_JSON = "layout.json"
SOURCE_PEDIATRIC = "pediatric"
SOURCE_ADULT = "adult-covid"

_PNEUMONIA_KIND = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)
_KIND_CLASS = {"bacteria": "BACTERIAL", "virus": "VIRAL"}


@dataclass(frozen=True)
class LaidOut:
    """One image of the layout: where it came from and where its link is."""

    source_path: Path
    cls: str
    relpath: str  # relative to the layout root
    patient: str
    source: str  # SOURCE_PEDIATRIC or SOURCE_ADULT


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _pediatric_root(root: Path) -> Path:
    for candidate in (root, root / "train"):
        if (candidate / "NORMAL").is_dir() and (candidate / "PNEUMONIA").is_dir():
            return candidate
    raise DatasetError(f"{root} has no NORMAL/ and PNEUMONIA/ folders (nor under train/)")


def pediatric_images(root: Path, classes: Sequence[str]) -> list[LaidOut]:
    """The pediatric images of ``classes``, pneumonia split by the kind its file name says.

    Raises:
        DatasetError: missing folders, or a pneumonia file name that names no kind.
    """
    base = _pediatric_root(root)
    out: list[LaidOut] = []
    if "NORMAL" in classes:
        out += [
            LaidOut(
                p, "NORMAL", f"NORMAL/{p.name}", patient_from_filename(p.name), SOURCE_PEDIATRIC
            )
            for p in _images(base / "NORMAL")
        ]
    for p in _images(base / "PNEUMONIA"):
        match = _PNEUMONIA_KIND.search(p.name)
        if match is None:
            raise DatasetError(f"{p.name}: a pneumonia file name must say 'bacteria' or 'virus'")
        cls = _KIND_CLASS[match.group(1).lower()]
        if cls in classes:
            out.append(
                LaidOut(p, cls, f"{cls}/{p.name}", patient_from_filename(p.name), SOURCE_PEDIATRIC)
            )
    return out


def adult_covid_images(root: Path) -> list[LaidOut]:
    """The adult COVID-19 images, keyed to the patients ``metadata.csv`` names.

    Raises:
        DatasetError: no metadata, a metadata row without its image, or an image without a row.
    """
    metadata = root / "metadata.csv"
    try:
        with metadata.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"cannot read {metadata}: {exc}") from exc
    if not rows or not {"patient_id", "image_id"} <= set(rows[0]):
        raise DatasetError(f"{metadata} needs the columns patient_id and image_id")
    by_stem = {p.stem: p for p in _images(root / "images")}
    out: list[LaidOut] = []
    for row in rows:
        path = by_stem.pop(row["image_id"].strip(), None)
        if path is None:
            raise DatasetError(f"{metadata}: image {row['image_id']!r} is not in images/")
        patient = f"adult-{row['patient_id'].strip()}"
        out.append(LaidOut(path, "COVID-19", f"COVID-19/{path.name}", patient, SOURCE_ADULT))
    if by_stem:
        raise DatasetError(f"{len(by_stem)} images in {root / 'images'} have no metadata row")
    return sorted(out, key=lambda item: item.relpath)


def build_layout(
    pediatric: str | os.PathLike[str],
    adult_covid: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    classes: Sequence[str] = FOUR_CLASSES,
) -> dict[str, Any]:
    """Write the folder-per-class layout of ``classes`` with links, patients and sources.

    An existing layout is rebuilt in place (its links and files are replaced). Returns
    the summary also written to ``layout.json``.

    Raises:
        DatasetError: unusable inputs, an unknown class, or a patient in two classes.
    """
    unknown = set(classes) - set(FOUR_CLASSES)
    if unknown:
        raise DatasetError(f"unknown classes {sorted(unknown)}; known: {', '.join(FOUR_CLASSES)}")
    items = pediatric_images(Path(pediatric), classes)
    if "COVID-19" in classes:
        items += adult_covid_images(Path(adult_covid))
    root = Path(out)
    for cls in classes:
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_symlink() or old.is_file():
                old.unlink()
    for item in items:
        (root / item.relpath).symlink_to(item.source_path.resolve())
    with (root / PATIENTS_CSV).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient", "source"])
        for item in items:
            writer.writerow([item.relpath, item.patient, item.source])
    summary = {
        "classes": list(classes),
        "images": dict(Counter(item.cls for item in items)),
        "patients": {cls: len({i.patient for i in items if i.cls == cls}) for cls in classes},
        "sources": {cls: sorted({i.source for i in items if i.cls == cls}) for cls in classes},
        # The pediatric set numbers its patients in the file names; a number that occurs
        # with both kinds of pneumonia is kept as one patient (a split keeps its images
        # together), the cautious reading.
        "patients_in_two_classes": len(_patients_in_several_classes(items)),
    }
    (root / LAYOUT_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _patients_in_several_classes(items: Sequence[LaidOut]) -> list[str]:
    """Patients with images in more than one class (a split keeps them in one part)."""
    classes_of: dict[str, set[str]] = {}
    for item in items:
        classes_of.setdefault(item.patient, set()).add(item.cls)
    return sorted(p for p, seen in classes_of.items() if len(seen) > 1)


def read_sources(root: str | os.PathLike[str]) -> dict[str, str]:
    """{relative path: source} from a layout's ``patients.csv``."""
    path = Path(root) / PATIENTS_CSV
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return {row["file"]: row.get("source") or "" for row in csv.DictReader(fh)}
    except (OSError, KeyError) as exc:
        raise DatasetError(f"cannot read the sources in {path}: {exc}") from exc
