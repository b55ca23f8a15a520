"""Model bundles: save, load, verify, refuse."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from chestaid.bundle import (
    MANIFEST_NAME,
    WEIGHTS_NAME,
    Manifest,
    governance_digest,
    load_bundle,
    read_manifest,
    save_bundle,
    update_manifest,
)
from chestaid.calibration import TemperatureScaling
from chestaid.errors import BundleError
from chestaid.inference import Scorer
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec


def _manifest(arch: str = "densenet121") -> Manifest:
    return Manifest(
        version="test-1",
        architecture=arch,
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=PreprocessSpec(input_size=64),
    )


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model("densenet121").eval()
    save_bundle(tmp_path / "b", model, _manifest())
    return tmp_path / "b"


def test_round_trip_gives_the_same_scores_in_half_precision(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet50").eval()
    stored = save_bundle(tmp_path / "b", model, _manifest("resnet50"))
    assert stored.weights["dtype"] == "float16"
    assert len(stored.weights["sha256"]) == 64
    assert stored.library_versions["torch"] == torch.__version__
    bundle = load_bundle(tmp_path / "b")
    assert not bundle.model.training
    x = torch.randn(2, 1, 64, 64)
    with torch.inference_mode():
        ref = model(x)
        got = bundle.model(x)
    assert torch.allclose(ref, got, atol=5e-2 * float(ref.abs().max()) + 1e-3)
    size_mib = (tmp_path / "b" / WEIGHTS_NAME).stat().st_size / 2**20
    assert size_mib < 55, "resnet50 in half precision is about 45 MiB"


def test_uncalibrated_bundle_has_no_threshold(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir)
    assert bundle.threshold is None
    assert bundle.calibrator.name == "identity"
    assert not bundle.manifest.is_calibrated


def test_tampered_weights_are_refused(bundle_dir: Path) -> None:
    weights = bundle_dir / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        load_bundle(bundle_dir)


def test_manifest_naming_another_architecture_is_refused(bundle_dir: Path) -> None:
    raw = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    raw["architecture"] = "resnet50"
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="do not match architecture"):
        load_bundle(bundle_dir)


def test_manifest_with_other_classes_is_refused(bundle_dir: Path) -> None:
    raw = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    raw["classes"] = ["NORMAL", "BACTERIAL", "VIRAL"]
    raw["num_outputs"] = 3
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="shape"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("architecture"), "architecture"),
        (lambda m: m.update(format_version=99), "format_version"),
        (lambda m: m.update(classes=["ONE"]), "classes"),
        (lambda m: m.update(num_outputs=2), "num_outputs"),
        (lambda m: m.update(threshold={"threshold": 1.5}), "probability in"),
        (lambda m: m.update(threshold={"threshold": "abc"}), "not a number"),
        (lambda m: m.update(threshold=0.5), "'threshold' must be a JSON object"),
        (lambda m: m.update(weights="x"), "'weights' must be a JSON object"),
        (lambda m: m.update(data_fingerprint=[1]), "'data_fingerprint' must be a JSON object"),
        (lambda m: m["weights"].update(file="../weights.safetensors"), "plain file name"),
        (lambda m: m.update(architecture="vgg11"), "unknown architecture"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(
    bundle_dir: Path, edit: object, message: str
) -> None:
    raw = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    edit(raw)  # type: ignore[operator]
    # Re-stamp the governance digest, so each check is reached on its own.
    raw["governance_sha256"] = governance_digest(raw.get("calibration"), raw.get("threshold"))
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_dir)


def test_a_hand_edited_threshold_is_refused(bundle_dir: Path) -> None:
    manifest = read_manifest(bundle_dir)
    update_manifest(bundle_dir, replace(manifest, threshold={"threshold": 0.4}))
    assert load_bundle(bundle_dir).threshold == pytest.approx(0.4)
    raw = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    raw["threshold"]["threshold"] = 0.9
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="governance_sha256"):
        load_bundle(bundle_dir)


def test_missing_or_unreadable_bundles(tmp_path: Path, bundle_dir: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path / "empty")
    (bundle_dir / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match="cannot read"):
        load_bundle(bundle_dir)


def test_calibration_stored_in_the_manifest_is_used(bundle_dir: Path) -> None:
    manifest = read_manifest(bundle_dir)
    calibrator = TemperatureScaling().fit(
        np.array([-3.0, -1.0, 0.5, 2.0, -2.0, 3.0]), np.array([0, 0, 1, 1, 1, 0])
    )
    update_manifest(
        bundle_dir,
        replace(
            manifest,
            calibration={"calibrator": calibrator.to_dict()},
            threshold={"threshold": 0.3, "target_sensitivity": 0.9},
        ),
    )
    bundle = load_bundle(bundle_dir)
    assert bundle.calibrator.name == "temperature"
    assert bundle.threshold == pytest.approx(0.3)
    scorer = Scorer.from_bundle(bundle)
    pred = scorer.score_pixels(np.random.default_rng(0).random((80, 64), dtype=np.float32))
    assert pred.score == pytest.approx(float(calibrator.predict_proba(np.array([pred.logit]))[0]))
    assert pred.above_threshold == (pred.score >= 0.3)
    assert pred.cam.shape == (2, 2) and pred.cam.min() >= 0.0 and pred.cam.max() <= 1.0


def test_update_manifest_cannot_swap_weights(bundle_dir: Path) -> None:
    manifest = read_manifest(bundle_dir)
    with pytest.raises(BundleError):
        update_manifest(bundle_dir, replace(manifest, weights={"sha256": "0" * 64}))


def test_bad_calibrator_in_manifest_is_a_bundle_error(bundle_dir: Path) -> None:
    raw = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    raw["calibration"] = {"calibrator": {"name": "magic"}}
    raw["governance_sha256"] = governance_digest(raw["calibration"], raw.get("threshold"))
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="calibrator"):
        load_bundle(bundle_dir)
