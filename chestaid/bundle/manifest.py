"""A bundle's ``manifest.json``: what the weights are, how to use them, and who governs them.

:class:`Manifest` is parsed and checked key by key; the records that govern triage
(calibration, threshold, not-assessable checks) carry a digest, so a hand edit is
refused rather than served.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chestaid.bundle.storage import write_json_atomic
from chestaid.errors import BundleError
from chestaid.preprocess import PreprocessSpec

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DEFAULT_CLASSES = ("NORMAL", "PNEUMONIA")


def governance_digest(calibration: Any, threshold: Any, assessment: Any = None) -> str:
    """SHA-256 of the canonical JSON of the records that govern triage.

    The calibrator and threshold, and the not-assessable checks' settings where a
    bundle has them (a manifest without them keeps the digest it always had).
    """
    record = {"calibration": calibration, "threshold": threshold}
    if assessment is not None:
        record["assessment"] = assessment
    canonical = json.dumps(
        record,
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """Everything needed to rebuild, verify and govern a model, as stored in JSON."""

    version: str
    architecture: str
    classes: tuple[str, ...]
    preprocessing: PreprocessSpec
    calibration: dict[str, Any] | None = None
    threshold: dict[str, Any] | None = None
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    name: str = "chestaid-pneumonia"
    format_version: int = FORMAT_VERSION
    orientation_outputs: int = 0  # size of the orientation head; 0 for none
    assessment: dict[str, Any] | None = None  # the not-assessable checks' settings

    @property
    def num_outputs(self) -> int:
        """One logit for two classes, otherwise one per class."""
        return 1 if len(self.classes) == 2 else len(self.classes)

    @property
    def is_calibrated(self) -> bool:
        """Whether a calibrator has been fitted and stored."""
        return self.calibration is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``manifest.json``."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "num_outputs": self.num_outputs,
            "in_channels": 1,
            "classes": list(self.classes),
            "input_size": self.preprocessing.input_size,
            "preprocessing": self.preprocessing.to_dict(),
            "calibration": self.calibration,
            "threshold": self.threshold,
            "governance_sha256": governance_digest(
                self.calibration, self.threshold, self.assessment
            ),
            "data_fingerprint": self.data_fingerprint,
            "metrics": self.metrics,
            "training": self.training,
            "library_versions": self.library_versions,
            "weights": self.weights,
            "orientation_outputs": self.orientation_outputs,
            "assessment": self.assessment,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Manifest:
        """Parse and check a manifest; raises :class:`BundleError` naming the bad key."""
        if not isinstance(d, Mapping):
            raise BundleError("manifest is not a JSON object")
        fmt = d.get("format_version")
        if fmt != FORMAT_VERSION:
            raise BundleError(
                f"manifest format_version {fmt!r} is not supported (this ChestAid reads {FORMAT_VERSION})"
            )
        for key in ("version", "architecture", "classes", "preprocessing", "weights"):
            if key not in d:
                raise BundleError(f"manifest lacks the key {key!r}")
        classes = d["classes"]
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or not all(isinstance(c, str) for c in classes)
        ):
            raise BundleError("manifest 'classes' must list at least two class names")
        preprocessing = PreprocessSpec.from_dict(d["preprocessing"])
        if d.get("input_size", preprocessing.input_size) != preprocessing.input_size:
            raise BundleError("manifest 'input_size' disagrees with its preprocessing")
        for key in ("calibration", "threshold", "assessment"):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise BundleError(f"manifest {key!r} must be a JSON object or null")
        for key in ("weights", "data_fingerprint", "metrics", "training", "library_versions"):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise BundleError(f"manifest {key!r} must be a JSON object")
        governing = (d.get("calibration"), d.get("threshold"), d.get("assessment"))
        if any(record is not None for record in governing):
            # These records govern triage: a hand edit must not pass unseen.
            stored = d.get("governance_sha256")
            if stored != governance_digest(*governing):
                raise BundleError(
                    "manifest calibration/threshold do not match their governance_sha256: "
                    "edited by hand? Recalibrate with 'chestaid calibrate' instead"
                )
        manifest = cls(
            version=str(d["version"]),
            architecture=str(d["architecture"]),
            classes=tuple(classes),
            preprocessing=preprocessing,
            calibration=d.get("calibration"),
            threshold=d.get("threshold"),
            data_fingerprint=dict(d.get("data_fingerprint") or {}),
            metrics=dict(d.get("metrics") or {}),
            training=dict(d.get("training") or {}),
            library_versions=dict(d.get("library_versions") or {}),
            weights=dict(d["weights"]),
            name=str(d.get("name", "chestaid-pneumonia")),
            orientation_outputs=int(d.get("orientation_outputs") or 0),
            assessment=d.get("assessment"),
        )
        if "num_outputs" in d and d["num_outputs"] != manifest.num_outputs:
            raise BundleError(
                f"manifest says num_outputs={d['num_outputs']} but lists {len(classes)} classes"
            )
        if manifest.threshold is not None:
            try:
                value = float(manifest.threshold.get("threshold", -1))
            except (TypeError, ValueError) as exc:
                raise BundleError(f"manifest 'threshold.threshold' is not a number: {exc}") from exc
            if not 0.0 <= value <= 1.0:
                raise BundleError("manifest 'threshold.threshold' must be a probability in [0, 1]")
        return manifest


def update_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Rewrite a bundle's manifest (e.g. after calibration); the weights must be unchanged."""
    current = read_manifest(path)
    if manifest.weights != current.weights:
        raise BundleError("update_manifest cannot change the weights record")
    write_json_atomic(Path(path) / MANIFEST_NAME, manifest.to_dict())


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check ``manifest.json`` of a bundle directory, without loading weights."""
    p = Path(path)
    if not p.is_dir():
        raise BundleError(f"model bundle not found: {p} is not a directory")
    manifest_path = p / MANIFEST_NAME
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{p} is not a model bundle: it has no {MANIFEST_NAME}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc
    return Manifest.from_dict(raw)
