"""A bundle's weights: saved with their checksum, loaded only after verifying them.

Weights are stored with safetensors, so loading never runs code. :func:`load_bundle`
verifies the checksum and the manifest against the network it builds and refuses a
bundle that does not match, with a :class:`~chestaid.errors.BundleError` saying why.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import chestaid
from chestaid.assessment import AssessmentSettings, FeatureDensity
from chestaid.bundle.assessment import load_assessment
from chestaid.bundle.manifest import MANIFEST_NAME, Manifest, read_manifest
from chestaid.bundle.splits import write_splits
from chestaid.bundle.storage import replace_atomically, sha256_file, write_json_atomic
from chestaid.calibration import Calibrator, IdentityCalibration, calibrator_from_dict
from chestaid.calibration.multiclass import MultiClassCalibrator
from chestaid.class_head import ClassHead
from chestaid.errors import BundleError, CalibrationError, ModelError
from chestaid.models import ChestNet, build_model
from chestaid.multiclass_bundle import class_calibrator, normal_index

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "weights.safetensors"


@dataclass
class Bundle:
    """A loaded, verified model bundle."""

    path: Path
    manifest: Manifest
    model: ChestNet
    # For an N-class bundle, the calibrator of the triage log-odds ("not normal"),
    # normally the identity; for a binary bundle, the calibrator of its one logit.
    calibrator: Calibrator
    # The not-assessable checks the bundle was validated with; None for a bundle made
    # before them, which is served as it always was.
    assessment: AssessmentSettings | None = None
    density: FeatureDensity | None = None
    # An N-class bundle's classes, multi-class calibrator and NORMAL class; None for
    # a binary bundle.
    class_head: ClassHead | None = None

    @property
    def class_calibrator(self) -> MultiClassCalibrator | None:
        """The multi-class calibrator of an N-class bundle; None for a binary one."""
        return None if self.class_head is None else self.class_head.calibrator

    @property
    def normal_index(self) -> int | None:
        """The index of the class NORMAL of an N-class bundle; None for a binary one."""
        return None if self.class_head is None else self.class_head.normal_index

    @property
    def threshold(self) -> float | None:
        """The governed threshold on the calibrated score, if one has been set."""
        if self.manifest.threshold is None:
            return None
        return float(self.manifest.threshold["threshold"])


def library_versions() -> dict[str, str]:
    """Versions of the libraries that determine what a bundle computes."""
    # Imported here, for saving a bundle: loading one no longer needs torchvision,
    # whose import costs about 190 MiB of memory.
    import torchvision

    return {
        "chestaid": chestaid.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


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
    replace_atomically(
        weights_path,
        lambda tmp: save_file(state, tmp, metadata={"architecture": manifest.architecture}),
    )
    stored = replace(
        manifest,
        library_versions=library_versions(),
        weights={
            "file": WEIGHTS_NAME,
            "sha256": sha256_file(weights_path),
            "dtype": "float16" if half_precision else "float32",
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
    )
    if splits is not None:
        write_splits(out, splits)
    write_json_atomic(out / MANIFEST_NAME, stored.to_dict())
    logger.info("saved bundle %s version %s", out, stored.version)
    return stored


def load_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Load a bundle, verifying checksum, manifest and weights; the model is in eval mode.

    Raises:
        BundleError: missing files, a checksum mismatch, a manifest that does not
            describe the weights (architecture, outputs, tensor shapes), or a bad
            calibrator.
    """
    p = Path(path)
    manifest = read_manifest(p)
    # An N-class bundle without a class NORMAL is refused before its weights are read.
    try:
        normal = normal_index(manifest.classes) if manifest.num_outputs > 1 else None
    except BundleError as exc:
        raise BundleError(f"bundle {p}: {exc}") from exc
    model = _verified_model(p, manifest)
    if manifest.calibration is None:
        calibrator: Calibrator = IdentityCalibration()
    else:
        try:
            calibrator = calibrator_from_dict(manifest.calibration["calibrator"])
        except (CalibrationError, KeyError, TypeError) as exc:
            raise BundleError(f"bundle {p} has an unusable calibrator: {exc}") from exc
    class_head = (
        None
        if normal is None
        else ClassHead(manifest.classes, _class_calibrator(p, manifest), normal)
    )
    logger.info(
        "loaded bundle %s (%s %s, calibrator %s%s)",
        p,
        manifest.architecture,
        manifest.version,
        calibrator.name,
        ""
        if class_head is None
        else f", {len(manifest.classes)} classes, class calibrator {class_head.calibrator.name}",
    )
    assessment, density = load_assessment(p, manifest)
    return Bundle(
        path=p,
        manifest=manifest,
        model=model,
        calibrator=calibrator,
        assessment=assessment,
        density=density,
        class_head=class_head,
    )


def _class_calibrator(p: Path, manifest: Manifest) -> MultiClassCalibrator:
    """An N-class bundle's multi-class calibrator: its record's, or the identity when
    the bundle is uncalibrated.

    Raises:
        BundleError: a calibrated bundle without a usable ``class_calibrator`` record,
            or one fitted for another number of classes.
    """
    try:
        calibrator = class_calibrator(manifest.calibration)
    except BundleError as exc:
        raise BundleError(f"bundle {p}: {exc}") from exc
    try:
        # A calibrator fitted for another number of classes fails here, not on a patient.
        calibrator.predict_proba(np.zeros((1, len(manifest.classes))))
    except CalibrationError as exc:
        raise BundleError(f"bundle {p} has an unusable class calibrator: {exc}") from exc
    return calibrator


def _verified_model(p: Path, manifest: Manifest) -> ChestNet:
    """The network the manifest describes, with the bundle's weights checked and loaded."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights_name = str(manifest.weights.get("file", WEIGHTS_NAME))
    if Path(weights_name).name != weights_name or weights_name in ("", ".", ".."):
        raise BundleError(f"bundle {p}: weights file {weights_name!r} must be a plain file name")
    weights_path = p / weights_name
    if not weights_path.is_file():
        raise BundleError(f"bundle {p} has no weights file {weights_path.name}")
    expected = manifest.weights.get("sha256")
    actual = sha256_file(weights_path)
    if expected != actual:
        raise BundleError(
            f"weights checksum mismatch in {p}: manifest says {expected}, file is {actual}"
        )
    try:
        model = build_model(
            manifest.architecture,
            num_outputs=manifest.num_outputs,
            orientation_outputs=manifest.orientation_outputs,
            weights_follow=True,
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
    return model
