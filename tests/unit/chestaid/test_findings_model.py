"""The bundled four-class model: it loads, is calibrated and governed, says what its
shortcut audit found, and scores a synthetic DICOM with a probability for every class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chestaid.bundle import MANIFEST_NAME, builtin_bundle_path, load_bundle
from chestaid.inference import Scorer
from chestaid.sample import synthetic_dx
from tests.bundles import assert_small_half_precision_weights, predict_json
from tests.multiclass_bundles import FOUR_CLASSES

pytestmark = pytest.mark.slow

# NORMAL 1341, BACTERIAL 2530, VIRAL 1345 (the pediatric set's training folder) and
# COVID-19 243 (the adult set): the whole four-class layout of the shared data.
LAYOUT_IMAGES = 5459


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.from_bundle(load_bundle(builtin_bundle_path("findings")))


def test_the_findings_bundle_is_a_calibrated_governed_four_class_densenet() -> None:
    bundle = load_bundle(builtin_bundle_path("findings"))
    manifest = bundle.manifest
    assert manifest.architecture == "densenet121"
    assert manifest.classes == FOUR_CLASSES
    assert manifest.is_calibrated
    assert bundle.threshold is not None and 0.0 < bundle.threshold < 1.0
    raw = json.loads((builtin_bundle_path("findings") / MANIFEST_NAME).read_text())
    assert raw["calibration"]["chosen"] in {"temperature", "vector"}
    assert raw["threshold"]["target_sensitivity"] == pytest.approx(0.90)
    counts = raw["data_fingerprint"]["counts"]
    assert sum(sum(c.values()) for c in counts.values()) == LAYOUT_IMAGES
    assert (builtin_bundle_path("findings") / "splits.json").is_file(), "kept out of refits"
    assert bundle.assessment is not None and bundle.density is not None
    assert bundle.assessment.max_feature_distance is not None


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_featureless_images_are_not_assessable_and_never_flagged(
    scorer: Scorer, value: float
) -> None:
    prediction = scorer.score_pixels(np.full((512, 512), value, np.float32))
    assert not prediction.assessment.assessable
    assert prediction.assessment.reason == "featureless"
    assert not prediction.above_threshold


def test_its_weights_are_half_precision_and_small() -> None:
    assert_small_half_precision_weights(builtin_bundle_path("findings"))


def test_its_model_card_states_the_shortcut_audit_and_what_it_cannot_show() -> None:
    card = (builtin_bundle_path("findings") / "MODEL_CARD.md").read_text()
    for needed in ("does not diagnose", "shortcut", "lungs masked", "outside the lung", "cannot"):
        assert needed in card, needed
    version = load_bundle(builtin_bundle_path("findings")).manifest.version
    assert version in card


def test_scores_a_synthetic_dicom_with_every_class_probability(
    scorer: Scorer, tmp_path: Path
) -> None:
    path = tmp_path / "sample.dcm"
    synthetic_dx(path, rows=600, cols=500, seed=5)
    _, prediction = scorer.score_file(path)
    named = dict(prediction.class_probabilities)
    assert list(named) == list(FOUR_CLASSES)
    assert sum(named.values()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.score == pytest.approx(1.0 - named["NORMAL"], abs=1e-5)
    assert prediction.cam.shape == (scorer.spec.input_size // 32,) * 2
    assert np.isfinite(prediction.cam).all()


def test_predict_serves_it_by_name(tmp_path: Path) -> None:
    dicom = tmp_path / "sample.dcm"
    synthetic_dx(dicom, rows=512, cols=512, seed=2)
    record, _ = predict_json("--builtin", "findings", str(dicom))
    assert record["model_version"] == load_bundle(builtin_bundle_path("findings")).manifest.version
    assert list(record["class_probabilities"]) == list(FOUR_CLASSES)
