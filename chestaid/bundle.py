"""Model bundles: a directory holding the weights and a JSON manifest describing them.

Layout::

    BUNDLE/
      manifest.json        architecture, classes, preprocessing, calibration,
                           threshold, data fingerprints, metrics, versions, checksum
      weights.safetensors  the state dict (floating tensors in float16 by default)
      splits.json          the patient-level split the model was developed on (optional)

Weights are stored with safetensors, so loading never runs code. :func:`load_bundle`
verifies the checksum and the manifest against the network it builds and refuses a
bundle that does not match, with a :class:`~chestaid.errors.BundleError` saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

import chestaid
from chestaid.assessment import AssessmentSettings, FeatureDensity
from chestaid.calibration import Calibrator, IdentityCalibration, calibrator_from_dict
from chestaid.errors import BundleError, CalibrationError, ModelError
from chestaid.models import ChestNet, build_model
from chestaid.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
SPLITS_NAME = "splits.json"
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


@dataclass
class Bundle:
    """A loaded, verified model bundle."""

    path: Path
    manifest: Manifest
    model: ChestNet
    calibrator: Calibrator
    # The not-assessable checks the bundle was validated with; None for a bundle made
    # before them, which is served as it always was.
    assessment: AssessmentSettings | None = None
    density: FeatureDensity | None = None

    @property
    def threshold(self) -> float | None:
        """The governed threshold on the calibrated score, if one has been set."""
        if self.manifest.threshold is None:
            return None
        return float(self.manifest.threshold["threshold"])


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine what a bundle computes."""
    return {
        "chestaid": chestaid.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json_atomic(path: Path, payload: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(
    path: str | os.PathLike[str],
    model: ChestNet,
    manifest: Manifest,
    *,
    half_precision: bool = True,
    splits: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write ``model`` and ``manifest`` as a bundle directory; returns the stored manifest.

    The weights' checksum, dtype and library versions are filled in here. Files are
    written to temporary names and renamed, so a crash never leaves a half bundle
    that verifies.
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        if half_precision and t.is_floating_point():
            t = t.to(torch.float16)
        state[key] = t.contiguous()
    weights_path = out / WEIGHTS_NAME
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".weights.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"architecture": manifest.architecture})
        Path(tmp).replace(weights_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stored = replace(
        manifest,
        library_versions=library_versions(),
        weights={
            "file": WEIGHTS_NAME,
            "sha256": _sha256(weights_path),
            "dtype": "float16" if half_precision else "float32",
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
    )
    if splits is not None:
        _write_json_atomic(out / SPLITS_NAME, dict(splits))
    _write_json_atomic(out / MANIFEST_NAME, stored.to_dict())
    logger.info("saved bundle %s version %s", out, stored.version)
    return stored


def update_manifest(path: str | os.PathLike[str], manifest: Manifest) -> None:
    """Rewrite a bundle's manifest (e.g. after calibration); the weights must be unchanged."""
    current = read_manifest(path)
    if manifest.weights != current.weights:
        raise BundleError("update_manifest cannot change the weights record")
    _write_json_atomic(Path(path) / MANIFEST_NAME, manifest.to_dict())


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


def read_splits(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The development split stored with a bundle, or None when it has none."""
    p = Path(path) / SPLITS_NAME
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{p} is not a JSON object")
    return data


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a bundle, verifying checksum, manifest and weights; the model is in eval mode.

    Raises:
        BundleError: missing files, a checksum mismatch, a manifest that does not
            describe the weights (architecture, outputs, tensor shapes), or a bad
            calibrator.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    manifest = read_manifest(p)
    weights_name = str(manifest.weights.get("file", WEIGHTS_NAME))
    if Path(weights_name).name != weights_name or weights_name in ("", ".", ".."):
        raise BundleError(f"bundle {p}: weights file {weights_name!r} must be a plain file name")
    weights_path = p / weights_name
    if not weights_path.is_file():
        raise BundleError(f"bundle {p} has no weights file {weights_path.name}")
    expected = manifest.weights.get("sha256")
    actual = _sha256(weights_path)
    if expected != actual:
        raise BundleError(
            f"weights checksum mismatch in {p}: manifest says {expected}, file is {actual}"
        )
    try:
        model = build_model(
            manifest.architecture,
            num_outputs=manifest.num_outputs,
            orientation_outputs=manifest.orientation_outputs,
        )
    except ModelError as exc:
        raise BundleError(f"bundle {p}: {exc}") from exc
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"cannot read weights of {p}: {exc}") from exc
    reference = model.state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    if missing or unexpected:
        raise BundleError(
            f"weights of {p} do not match architecture {manifest.architecture!r}: "
            f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
        )
    for key, ref in reference.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise BundleError(
                f"weights of {p} do not match the manifest: {key} has shape "
                f"{tuple(state[key].shape)}, {manifest.architecture} expects {tuple(ref.shape)}"
            )
        state[key] = state[key].to(ref.dtype)
    model.load_state_dict(state, strict=True)
    model.eval()
    if manifest.calibration is None:
        calibrator: Calibrator = IdentityCalibration()
    else:
        try:
            calibrator = calibrator_from_dict(manifest.calibration["calibrator"])
        except (CalibrationError, KeyError, TypeError) as exc:
            raise BundleError(f"bundle {p} has an unusable calibrator: {exc}") from exc
    logger.info(
        "loaded bundle %s (%s %s, calibrator %s)",
        p,
        manifest.architecture,
        manifest.version,
        calibrator.name,
    )
    assessment, density = _load_assessment(p, manifest)
    return Bundle(
        path=p,
        manifest=manifest,
        model=model,
        calibrator=calibrator,
        assessment=assessment,
        density=density,
    )


ASSESSMENT_NAME = "assessment.safetensors"


def _load_assessment(
    path: Path, manifest: Manifest
) -> tuple[AssessmentSettings | None, FeatureDensity | None]:
    """The not-assessable checks' settings and feature density, verified by checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if manifest.assessment is None:
        return None, None
    settings = AssessmentSettings.from_dict(manifest.assessment)
    record = (manifest.assessment or {}).get("feature_density")
    if record is None:
        if settings.max_feature_distance is not None:
            raise BundleError(f"bundle {path}: a feature-distance limit without its density")
        return settings, None
    if not isinstance(record, Mapping) or record.get("file") != ASSESSMENT_NAME:
        raise BundleError(
            f"bundle {path}: 'assessment.feature_density' must name {ASSESSMENT_NAME}"
        )
    file = path / ASSESSMENT_NAME
    if not file.is_file():
        raise BundleError(f"bundle {path} has no {ASSESSMENT_NAME}")
    if record.get("sha256") != _sha256(file):
        raise BundleError(f"checksum mismatch of {file}: changed since the bundle was made?")
    try:
        density = FeatureDensity.from_tensors(load_file(str(file)))
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"cannot read {file}: {exc}") from exc
    return settings, density


def save_assessment(
    path: str | os.PathLike[str],
    settings: AssessmentSettings,
    density: FeatureDensity | None,
    *,
    fitted_on: Mapping[str, Any] | None = None,
) -> Manifest:
    """Store the not-assessable checks in a bundle (density file and manifest record)."""
    from safetensors.torch import save_file

    p = Path(path)
    manifest = read_manifest(p)
    record: dict[str, Any] = settings.to_dict()
    if density is not None:
        fd, tmp = tempfile.mkstemp(dir=p, prefix=".assessment.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(density.to_tensors(), tmp)
            Path(tmp).replace(p / ASSESSMENT_NAME)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        record["feature_density"] = {
            "file": ASSESSMENT_NAME,
            "sha256": _sha256(p / ASSESSMENT_NAME),
        }
    if fitted_on is not None:
        record["fitted_on"] = dict(fitted_on)
    updated = replace(manifest, assessment=record)
    update_manifest(p, updated)
    return updated


def default_bundle_path() -> Path:
    """Where the bundled default model lives inside the installed package."""
    return Path(__file__).resolve().parent / "default_model"
