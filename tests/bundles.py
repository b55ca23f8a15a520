"""Model bundles for service tests.

The service's tests send synthetic phantoms (``tests.dicom_factory``), which the bundled
model's not-assessable checks rightly refuse as unlike any chest radiograph. To exercise
the scored path (bands, Grad-CAM, feedback), the daemon and the web app in tests serve
:func:`unchecked_default_bundle`: the bundled model's own weights, calibration and
threshold, with its assessment record left out, as a bundle published before the checks
existed is served. The not-assessed path has tests of its own, with the checks on.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path

from chestaid.bundle import (
    MANIFEST_NAME,
    SPLITS_NAME,
    WEIGHTS_NAME,
    default_bundle_path,
    read_manifest,
)


@functools.cache
def unchecked_default_bundle() -> Path:
    """A copy of the bundled model without its not-assessable checks (one per process)."""
    source = default_bundle_path()
    target = Path(tempfile.mkdtemp(prefix="chestaid-unchecked-bundle-"))
    atexit.register(shutil.rmtree, target, True)
    for name in (WEIGHTS_NAME, SPLITS_NAME):
        if (source / name).is_file():
            (target / name).symlink_to((source / name).resolve())
    manifest = dataclasses.replace(read_manifest(source), assessment=None)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=2), "utf-8")
    return target


@functools.cache
def fast_unchecked_bundle() -> Path:
    """:func:`unchecked_default_bundle` scoring at 64 x 64 instead of its own size (about
    half the model's time), for tests that score many images and judge no score."""
    source = unchecked_default_bundle()
    target = Path(tempfile.mkdtemp(prefix="chestaid-fast-bundle-"))
    atexit.register(shutil.rmtree, target, True)
    for item in source.iterdir():
        if item.name != MANIFEST_NAME:
            (target / item.name).symlink_to(item.resolve())
    manifest = read_manifest(source)
    manifest = dataclasses.replace(
        manifest, preprocessing=dataclasses.replace(manifest.preprocessing, input_size=64)
    )
    (target / MANIFEST_NAME).write_text(json.dumps(manifest.to_dict(), indent=2), "utf-8")
    return target
