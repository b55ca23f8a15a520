"""Model bundles: a directory holding the weights and a JSON manifest describing them.

Layout::

    BUNDLE/
      manifest.json            architecture, classes, preprocessing, calibration,
                               threshold, data fingerprints, metrics, versions, checksum
      weights.safetensors      the state dict (floating tensors in float16 by default)
      splits.json              the patient-level split the model was developed on (optional)
      assessment.safetensors   the not-assessable checks' feature density (optional)

The pieces: :mod:`~chestaid.bundle.manifest` (the manifest, parsed and checked),
:mod:`~chestaid.bundle.weights` (save and verified load), :mod:`~chestaid.bundle.splits`,
:mod:`~chestaid.bundle.assessment` and :mod:`~chestaid.bundle.storage` (atomic writes
and checksums). Every public name is importable from ``chestaid.bundle``.
"""

from __future__ import annotations

from pathlib import Path

from chestaid.bundle.assessment import ASSESSMENT_NAME, save_assessment
from chestaid.bundle.manifest import (
    DEFAULT_CLASSES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    governance_digest,
    read_manifest,
    update_manifest,
)
from chestaid.bundle.splits import SPLITS_NAME, read_splits
from chestaid.bundle.weights import (
    WEIGHTS_NAME,
    Bundle,
    library_versions,
    load_bundle,
    save_bundle,
)
from chestaid.errors import BundleError

__all__ = [
    "ASSESSMENT_NAME",
    "BUILTIN_BUNDLES",
    "DEFAULT_CLASSES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SPLITS_NAME",
    "WEIGHTS_NAME",
    "Bundle",
    "Manifest",
    "builtin_bundle_path",
    "default_bundle_path",
    "governance_digest",
    "library_versions",
    "load_bundle",
    "read_manifest",
    "read_splits",
    "save_assessment",
    "save_bundle",
    "update_manifest",
]


# The models that ship inside the package, by the name a site chooses them with: the
# pneumonia model is the default; "findings" tells COVID-19, viral and bacterial
# pneumonia and normal apart (its triage score is the probability of "not normal").
BUILTIN_BUNDLES = {"pneumonia": "default_model", "findings": "findings_model"}


def default_bundle_path() -> Path:
    """Where the bundled default model lives inside the installed package."""
    return builtin_bundle_path("pneumonia")


def builtin_bundle_path(name: str) -> Path:
    """Where the bundled model called ``name`` (a key of ``BUILTIN_BUNDLES``) lives.

    Raises:
        BundleError: no bundled model has that name.
    """
    folder = BUILTIN_BUNDLES.get(name)
    if folder is None:
        raise BundleError(
            f"no bundled model is called {name!r}; there are {', '.join(sorted(BUILTIN_BUNDLES))}"
        )
    return Path(__file__).resolve().parent.parent / folder
