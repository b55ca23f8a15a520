"""Development data: a folder per class, patient keys, patient-level splits, fingerprints.

A data folder holds one sub-folder per class (``NORMAL/``, ``PNEUMONIA/``) with
``.jpeg``/``.jpg``/``.png``/``.dcm`` files, possibly below a ``train/`` level.
Splits are made by patient, never by image: every image of a patient lands in the
same split, so no patient is both trained on and evaluated on.
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chestaid.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".dcm", ".dicom"})
DEFAULT_CLASSES = ("NORMAL", "PNEUMONIA")
SPLIT_NAMES = ("train", "validation", "calibration", "report")
DEFAULT_FRACTIONS: Mapping[str, float] = {
    "train": 0.70,
    "validation": 0.10,
    "calibration": 0.10,
    "report": 0.10,
}


@dataclass(frozen=True)
class Example:
    """One image of the development data."""

    relpath: str  # relative to the data root, with forward slashes
    label: int  # index into the class list
    patient: str


# Patient keys in the file names of the Kermany pneumonia data:
#   person1234_bacteria_5678.jpeg -> person1234
#   IM-0115-0001.jpeg -> IM-0115 ; NORMAL2-IM-1427-0001.jpeg -> NORMAL2-IM-1427
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_"),
    re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+"),
)


def patient_from_filename(name: str) -> str:
    """The patient key a file name carries, or the file's stem when none is recognised."""
    base = Path(name).name
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(base)
        if match:
            return match.group(1)
    return Path(base).stem


def read_patient_csv(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a CSV with columns ``file`` and ``patient`` into {file name: patient key}.

    ``file`` may be a bare file name or a path relative to the data root.
    """
    mapping: dict[str, str] = {}
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"file", "patient"} <= set(reader.fieldnames):
                raise DatasetError(f"{path}: a patient CSV needs the columns 'file' and 'patient'")
            for row in reader:
                mapping[row["file"].strip()] = row["patient"].strip()
    except OSError as exc:
        raise DatasetError(f"cannot read patient CSV {path}: {exc}") from exc
    return mapping


def find_class_root(root: Path, classes: Sequence[str]) -> Path:
    """The folder holding the class sub-folders: ``root`` itself or its ``train/``."""
    for candidate in (root, root / "train"):
        if all((candidate / c).is_dir() for c in classes):
            return candidate
    raise DatasetError(
        f"{root} has no class folders {', '.join(classes)} (nor under {root / 'train'})"
    )


def discover(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] = DEFAULT_CLASSES,
    patient_key: Callable[[str], str] | None = None,
    patient_csv: str | os.PathLike[str] | None = None,
) -> tuple[Path, list[Example]]:
    """List the images of a folder-per-class data set.

    Args:
        root: the data folder (class folders directly inside, or under ``train/``).
        classes: class folder names; their order defines the label indices.
        patient_key: file name -> patient key (default :func:`patient_from_filename`).
        patient_csv: optional CSV of patient ids that overrides ``patient_key``.

    Returns:
        The folder the relative paths are relative to, and the examples sorted by path.

    Raises:
        DatasetError: missing class folders, an empty class, or a file the CSV lacks.
    """
    base = find_class_root(Path(root), classes)
    from_csv = read_patient_csv(patient_csv) if patient_csv is not None else None
    key = patient_key or patient_from_filename
    examples: list[Example] = []
    for label, cls in enumerate(classes):
        files = sorted(
            p for p in (base / cls).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise DatasetError(f"class folder {base / cls} has no .jpeg/.png/.dcm images")
        for f in files:
            rel = f.relative_to(base).as_posix()
            if from_csv is not None:
                patient = from_csv.get(rel) or from_csv.get(f.name)
                if patient is None:
                    raise DatasetError(f"patient CSV {patient_csv} has no row for {rel}")
            else:
                patient = key(f.name)
            examples.append(Example(relpath=rel, label=label, patient=patient))
    return base, examples


def split_by_patient(
    examples: Sequence[Example],
    *,
    fractions: Mapping[str, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> dict[str, list[Example]]:
    """Split examples into named parts by patient, stratified by each patient's class.

    Patients are shuffled with ``seed`` within each class and dealt out so that each
    part receives about its fraction of the class's *images*. Every patient's images
    go to exactly one part.

    Raises:
        DatasetError: fractions that do not sum to 1, or a part left without a class.
    """
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6 or any(f <= 0 for f in fractions.values()):
        raise DatasetError(f"split fractions must be positive and sum to 1, got {dict(fractions)}")
    by_patient: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_patient[ex.patient].append(ex)
    by_class: dict[int, list[str]] = defaultdict(list)
    for patient, items in sorted(by_patient.items()):
        labels = [e.label for e in items]
        by_class[max(set(labels), key=labels.count)].append(patient)
    rng = random.Random(seed)
    names = list(fractions)
    parts: dict[str, list[Example]] = {n: [] for n in names}
    for label in sorted(by_class):
        patients = by_class[label]
        rng.shuffle(patients)
        n_images = sum(len(by_patient[p]) for p in patients)
        targets = {n: fractions[n] * n_images for n in names}
        counts = dict.fromkeys(names, 0)
        for patient in patients:
            # Give the patient to the part furthest below its target share.
            name = max(names, key=lambda n: (targets[n] - counts[n]) / targets[n])
            parts[name].extend(by_patient[patient])
            counts[name] += len(by_patient[patient])
    for name, items in parts.items():
        present = {e.label for e in items}
        if len(present) < len(by_class):
            raise DatasetError(
                f"split {name!r} received no images of some class: too few patients for these fractions"
            )
        items.sort(key=lambda e: e.relpath)
    return parts


def keyed_by_image(examples: Sequence[Example]) -> list[Example]:
    """The examples with each image as its own "patient": a random split by image.

    Only for reproducing designs that split that way; a patient's images then land on
    both sides of the split, which is the leak a patient-level split prevents.
    """
    return [Example(relpath=e.relpath, label=e.label, patient=e.relpath) for e in examples]


def fingerprint(base: Path, examples: Iterable[Example]) -> str:
    """SHA-256 over the sorted relative paths, labels and file contents of ``examples``."""
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: e.relpath):
        digest.update(f"{ex.relpath}\0{ex.label}\0".encode())
        digest.update(hashlib.sha256((base / ex.relpath).read_bytes()).digest())
    return digest.hexdigest()


def splits_to_json(
    parts: Mapping[str, Sequence[Example]], classes: Sequence[str], seed: int
) -> dict[str, Any]:
    """The JSON form of a split, stored in a bundle as ``splits.json``."""
    return {
        "classes": list(classes),
        "seed": seed,
        "parts": {
            name: [[e.relpath, e.label, e.patient] for e in items] for name, items in parts.items()
        },
    }


def splits_from_json(data: Mapping[str, Any]) -> dict[str, list[Example]]:
    """Inverse of :func:`splits_to_json`."""
    try:
        return {
            name: [Example(relpath=str(r), label=int(lab), patient=str(p)) for r, lab, p in items]
            for name, items in data["parts"].items()
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"malformed split record: {exc}") from exc
