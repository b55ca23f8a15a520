"""An N-class bundle and the labelled images to audit it on (disk I/O).

The network is built from the bundle's manifest and its verified weights without
its calibrator: the audit uses raw logits. The cases are the bundle's report split
when it stores ``splits.json``, otherwise every image of the data folder.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

from chestaid.audit.model_scoring import AuditModel
from chestaid.bundle import read_manifest, read_splits
from chestaid.bundle.weights import _verified_model
from chestaid.data import Example, discover, splits_from_json
from chestaid.errors import BundleError, DatasetError

logger = logging.getLogger(__name__)

PATIENTS_CSV = "patients.csv"


def load_audit_model(path: str | os.PathLike[str]) -> AuditModel:
    """The bundle's network (weights checksum-verified), class names and preprocessing.

    Raises:
        BundleError: as for reading a bundle.
        ConfigurationError: a bundle that is not N-class.
    """
    p = Path(path)
    manifest = read_manifest(p)
    # The verified weight loader alone: the audit needs neither calibrator nor checks.
    model = _verified_model(p, manifest)
    return AuditModel(model, manifest.classes, manifest.preprocessing)


@dataclass(frozen=True)
class AuditCases:
    """The labelled images to audit on, and where they came from."""

    base: Path
    examples: list[Example]
    source: str  # "report split of the bundle" or "all images"


def audit_cases(
    bundle: str | os.PathLike[str], data_dir: str | os.PathLike[str], classes: tuple[str, ...]
) -> AuditCases:
    """The bundle's report split of ``data_dir``, or all its images when it has no split.

    Patients come from ``patients.csv`` in the data folder when there is one.

    Raises:
        DatasetError: missing class folders or files the split names.
        BundleError: a split whose classes differ from the bundle's.
    """
    root = Path(data_dir)
    csv_path = root / PATIENTS_CSV
    base, examples = discover(
        root, classes=classes, patient_csv=csv_path if csv_path.is_file() else None
    )
    stored = read_splits(bundle)
    if stored is None:
        return AuditCases(base, examples, "all images (the bundle stores no split)")
    if tuple(stored.get("classes", ())) != classes:
        raise BundleError("the bundle's splits.json lists other classes than its manifest")
    report = splits_from_json(stored).get("report")
    if not report:
        raise BundleError("the bundle's splits.json has no report part")
    missing = [e.relpath for e in report if not (base / e.relpath).is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} images of the report split are not in {root} (e.g. {missing[0]})"
        )
    return AuditCases(base, list(report), "report split of the bundle")


def at_most_per_class(cases: AuditCases, limit: int, *, seed: int = 0) -> AuditCases:
    """A seeded random sample of at most ``limit`` images of each class (all of a smaller class).

    The model's forward passes dominate the audit's time (four variants of each image),
    so a long report split can be sampled down; the report says so.
    """
    rng = random.Random(seed)
    chosen: list[Example] = []
    sampled = False
    for label in sorted({e.label for e in cases.examples}):
        members = [e for e in cases.examples if e.label == label]
        if len(members) > limit:
            members = rng.sample(members, limit)
            sampled = True
        chosen.extend(members)
    if not sampled:
        return cases
    chosen.sort(key=lambda e: e.relpath)
    note = f"{cases.source}, a seeded random sample of at most {limit} images per class"
    return AuditCases(cases.base, chosen, note)
