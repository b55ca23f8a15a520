"""The bundled default model: it loads, is governed, and scores a synthetic DICOM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from chestaid.bundle import MANIFEST_NAME, default_bundle_path, load_bundle
from chestaid.imaging import read_image
from chestaid.inference import Scorer
from chestaid.sample import SAMPLE_PATIENT_ID, synthetic_dx
from tests.bundles import assert_small_half_precision_weights, predict_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_bundle(load_bundle(default_bundle_path()))


def test_the_default_bundle_is_a_calibrated_governed_densenet() -> None:
    bundle = load_bundle(default_bundle_path())
    manifest = bundle.manifest
    assert manifest.architecture == "densenet121"
    assert manifest.classes == ("NORMAL", "PNEUMONIA")
    assert manifest.is_calibrated
    assert bundle.calibrator.name in {"temperature", "platt", "isotonic"}
    assert bundle.threshold is not None and 0.0 < bundle.threshold < 1.0
    raw = json.loads((default_bundle_path() / MANIFEST_NAME).read_text())
    assert raw["threshold"]["target_sensitivity"] == pytest.approx(0.90)
    counts = raw["data_fingerprint"]["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == 5216, "the whole shared training split"


def test_the_default_bundle_is_2_0_with_its_not_assessable_checks() -> None:
    bundle = load_bundle(default_bundle_path())
    manifest = bundle.manifest
    assert manifest.version == "densenet121-kermany-2.0"
    assert manifest.orientation_outputs == 8
    assert bundle.assessment is not None
    assert bundle.density is not None
    assert bundle.assessment.max_feature_distance is not None
    fitted_on = (manifest.assessment or {}).get("fitted_on", {})
    assert fitted_on, "the record says what the checks were fitted on"


@pytest.mark.parametrize(
    "name",
    ["black", "grey 0.25", "grey 0.5", "grey 0.75", "white", "noise"],
)
def test_featureless_images_are_not_assessable_and_never_flagged(scorer: Scorer, name: str) -> None:
    images = {
        "black": np.zeros((512, 512), np.float32),
        "grey 0.25": np.full((512, 512), 0.25, np.float32),
        "grey 0.5": np.full((512, 512), 0.5, np.float32),
        "grey 0.75": np.full((512, 512), 0.75, np.float32),
        "white": np.ones((512, 512), np.float32),
        "noise": np.clip(np.random.default_rng(0).normal(0.5, 0.2, (512, 512)), 0, 1),
    }
    prediction = scorer.score_pixels(images[name].astype(np.float32))
    assert not prediction.assessment.assessable
    assert prediction.assessment.reason in {"featureless", "noise"}
    assert not prediction.above_threshold


def test_weights_are_half_precision_safetensors() -> None:
    assert_small_half_precision_weights(default_bundle_path())


def test_the_default_model_card_sits_beside_the_bundle() -> None:
    card = (default_bundle_path() / "MODEL_CARD.md").read_text()
    for needed in ("Intended use", "CC BY 4.0", "Kermany", "recalibrat", "ROC-AUC"):
        assert needed in card


def test_scores_a_synthetic_dicom_with_its_grad_cam(scorer: Scorer, tmp_path: Path) -> None:
    path = tmp_path / "sample.dcm"
    synthetic_dx(path, rows=600, cols=500, seed=3)
    image, prediction = scorer.score_file(path)
    assert image.modality == "DX"
    assert 0.0 <= prediction.score <= 1.0
    assert prediction.above_threshold == (
        prediction.score >= prediction.threshold and prediction.assessment.assessable
    )
    assert prediction.model_version == scorer.model_version
    side = scorer.spec.input_size // 32  # DenseNet-121's last feature map
    assert prediction.cam.shape == (side, side)
    assert np.isfinite(prediction.cam).all()
    assert 0.0 <= float(prediction.cam.min()) <= float(prediction.cam.max()) <= 1.0


def test_different_images_get_different_scores(scorer: Scorer) -> None:
    flat = np.full((256, 256), 0.5, dtype=np.float32)
    ramp = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (256, 1))
    assert scorer.score_pixels(flat).logit != pytest.approx(scorer.score_pixels(ramp).logit)


def test_the_quick_start_predicts_on_a_generated_dicom(tmp_path: Path) -> None:
    dicom = tmp_path / "sample.dcm"
    made = subprocess.run(
        [sys.executable, "-m", "chestaid.cli", "sample", str(dicom), "--rows", "512"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert read_image(dicom).modality == "DX"
    record, printed = predict_json(str(dicom))
    manifest = json.loads((default_bundle_path() / MANIFEST_NAME).read_text())
    assert record["model_version"] == manifest["version"]
    assert record["runtime"] == "torch-f32"  # what scored it: PyTorch unless asked otherwise
    assert record["threshold"] == pytest.approx(manifest["threshold"]["threshold"])
    assert SAMPLE_PATIENT_ID not in printed
