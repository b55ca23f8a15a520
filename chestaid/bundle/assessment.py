"""The not-assessable checks stored in a bundle: settings in the manifest, density in a file.

The feature density lives in ``assessment.safetensors``, named with its checksum in
the manifest's ``assessment.feature_density`` record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from chestaid.assessment import AssessmentSettings, FeatureDensity
from chestaid.bundle.manifest import Manifest, read_manifest, update_manifest
from chestaid.bundle.storage import replace_atomically, sha256_file
from chestaid.errors import BundleError

ASSESSMENT_NAME = "assessment.safetensors"


def load_assessment(
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
    if record.get("sha256") != sha256_file(file):
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
        tensors = density.to_tensors()
        replace_atomically(p / ASSESSMENT_NAME, lambda tmp: save_file(tensors, tmp))
        record["feature_density"] = {
            "file": ASSESSMENT_NAME,
            "sha256": sha256_file(p / ASSESSMENT_NAME),
        }
    if fitted_on is not None:
        record["fitted_on"] = dict(fitted_on)
    updated = replace(manifest, assessment=record)
    update_manifest(p, updated)
    return updated
