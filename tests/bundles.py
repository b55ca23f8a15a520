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
from typing import Any

import torch

from chestaid.bundle import (
    MANIFEST_NAME,
    SPLITS_NAME,
    WEIGHTS_NAME,
    Manifest,
    default_bundle_path,
    read_manifest,
    save_bundle,
)
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from tests.multiclass_bundles import FOUR_CLASSES


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


def nclass_bundle(
    path: Path,
    *,
    classes: tuple[str, ...] = FOUR_CLASSES,
    architecture: str = "resnet50",
    input_size: int = 64,
    class_calibrator: dict[str, Any] | None = None,
    threshold: float | None = 0.5,
    seed: int = 0,
    head_scale: float = 0.05,
) -> Path:
    """An N-class bundle with random weights, as ``chestaid calibrate`` leaves one.

    Its calibration record holds ``class_calibrator`` (vector scaling with uneven
    slopes and offsets unless given) and the identity on the triage log-odds; with
    ``threshold`` it is governed (the daemon serves only a governed bundle). Both go
    through :class:`Manifest`, so the governance digest is the one a load checks.
    The random head is scaled by ``head_scale`` so its probabilities are not saturated
    (a random ResNet-50 gives logits of about 20).
    """
    torch.manual_seed(seed)
    model = build_model(architecture, num_outputs=len(classes)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(head_scale)
    k = len(classes)
    record = class_calibrator or {
        "name": "vector",
        "a": [0.8 + 0.1 * i for i in range(k)],
        "b": [0.3 - 0.2 * i for i in range(k)],
    }
    manifest = Manifest(
        version=f"{architecture}-{k}class-test-1",
        architecture=architecture,
        classes=classes,
        preprocessing=PreprocessSpec(input_size=input_size),
        calibration={
            "class_calibrator": record,
            "calibrator": {"name": "identity"},
            "chosen": record["name"],
            "calibration_version": 1,
        },
        threshold=None
        if threshold is None
        else {"threshold": threshold, "target_sensitivity": 0.9, "rule": "test bundle"},
    )
    save_bundle(path, model, manifest)
    return path


def assert_small_half_precision_weights(bundle: Path) -> None:
    """A shipped bundle's weights: every floating tensor in float16, under 20 MiB."""
    from safetensors import safe_open

    path = bundle / WEIGHTS_NAME
    with safe_open(str(path), framework="pt") as fh:
        dtypes = {str(fh.get_tensor(k).dtype) for k in fh.keys()}  # noqa: SIM118
    assert "torch.float16" in dtypes
    assert "torch.float32" not in dtypes
    assert path.stat().st_size < 20 * 2**20


def predict_json(*args: str) -> tuple[dict[str, Any], str]:
    """Run ``chestaid --threads 2 predict --json ARGS`` as a user would: its one record, and
    all it printed (standard output and error)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "chestaid.cli", "--threads", "2", "predict", "--json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    record: dict[str, Any] = json.loads(proc.stdout)
    return record, proc.stdout + proc.stderr
