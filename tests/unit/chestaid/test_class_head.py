"""N-class bundles: loaded with their class calibrator and NORMAL class, refused without
them, and scored by the calibrated probability of "not normal" with the exact Grad-CAM of
its log-odds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from chestaid.bundle import Bundle, load_bundle, read_manifest, update_manifest
from chestaid.calibration.multiclass import IdentityMultiClass, VectorScaling
from chestaid.errors import BundleError
from chestaid.gradcam import HookGradCAM, class_activation_map, normalise_map
from chestaid.inference import Scorer
from tests.bundles import nclass_bundle
from tests.multiclass_bundles import FOUR_CLASSES

VECTOR = {"name": "vector", "a": [1.4, 0.7, 1.1, 0.9], "b": [0.5, -0.2, 0.1, -0.4]}


@pytest.fixture(scope="module")
def four_class(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    path = nclass_bundle(
        tmp_path_factory.mktemp("nclass") / "b",
        # NORMAL not first, to catch an index taken for granted.
        classes=("BACTERIAL", "Normal", "VIRAL", "COVID-19"),
        class_calibrator=VECTOR,
    )
    return load_bundle(path)


def _inputs(seed: int = 3, n: int = 3) -> torch.Tensor:
    return torch.randn(n, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_an_nclass_bundle_loads_with_its_class_calibrator_and_normal_class(
    four_class: Bundle,
) -> None:
    assert four_class.normal_index == 1
    assert isinstance(four_class.class_calibrator, VectorScaling)
    assert four_class.class_calibrator.to_dict() == VECTOR
    assert four_class.calibrator.name == "identity"
    assert four_class.threshold == 0.5


def test_a_binary_bundle_has_no_class_head(tmp_path: Path) -> None:
    from tests.bundles import unchecked_default_bundle

    bundle = load_bundle(unchecked_default_bundle())
    assert bundle.class_head is None
    assert bundle.class_calibrator is None and bundle.normal_index is None


def test_an_nclass_bundle_without_a_normal_class_is_refused(tmp_path: Path) -> None:
    path = nclass_bundle(tmp_path / "b", classes=("BACTERIAL", "VIRAL", "COVID-19"))
    with pytest.raises(BundleError, match="NORMAL"):
        load_bundle(path)


def test_an_nclass_bundle_with_two_classes_named_normal_is_refused(tmp_path: Path) -> None:
    path = nclass_bundle(tmp_path / "b", classes=("NORMAL", "normal", "VIRAL"))
    with pytest.raises(BundleError, match="exactly one class named NORMAL"):
        load_bundle(path)


def test_a_calibrated_nclass_bundle_without_its_class_calibrator_is_refused(
    tmp_path: Path,
) -> None:
    path = nclass_bundle(tmp_path / "b")
    manifest = read_manifest(path)
    assert manifest.calibration is not None
    binary_only = {k: v for k, v in manifest.calibration.items() if k != "class_calibrator"}
    update_manifest(path, dataclasses.replace(manifest, calibration=binary_only))
    with pytest.raises(BundleError, match="class_calibrator"):
        load_bundle(path)


def test_a_class_calibrator_fitted_for_other_classes_is_refused(tmp_path: Path) -> None:
    three = {"name": "vector", "a": [1.0, 1.0, 1.0], "b": [0.0, 0.0, 0.0]}
    path = nclass_bundle(tmp_path / "b", class_calibrator=three)
    with pytest.raises(BundleError, match="class calibrator"):
        load_bundle(path)


def test_an_uncalibrated_nclass_bundle_uses_the_identity(tmp_path: Path) -> None:
    path = nclass_bundle(tmp_path / "b", threshold=None)
    manifest = read_manifest(path)
    update_manifest(path, dataclasses.replace(manifest, calibration=None))
    bundle = load_bundle(path)
    assert isinstance(bundle.class_calibrator, IdentityMultiClass)
    assert bundle.calibrator.name == "identity"
    assert bundle.normal_index == FOUR_CLASSES.index("NORMAL")


def test_the_score_is_one_minus_the_calibrated_probability_of_normal(
    four_class: Bundle,
) -> None:
    x = _inputs()
    with torch.inference_mode():
        raw = four_class.model(x).double().numpy()
    a, b = np.array(VECTOR["a"]), np.array(VECTOR["b"])
    s = raw * a + b
    expected = np.exp(s - s.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    predictions = Scorer.from_bundle(four_class).score_batch(x)
    assert len(predictions) == 3
    for row, p in zip(expected, predictions, strict=True):
        assert p.score == pytest.approx(1.0 - row[1], abs=1e-9)
        assert p.logit == pytest.approx(np.log((1.0 - row[1]) / row[1]), abs=1e-6)
        names = [name for name, _ in p.class_probabilities]
        assert names == ["BACTERIAL", "Normal", "VIRAL", "COVID-19"]
        got = np.array([value for _, value in p.class_probabilities])
        assert np.allclose(got, row, atol=1e-9)
        assert got.sum() == pytest.approx(1.0)
        assert p.above_threshold == (p.score >= 0.5)
    # Random weights could give the same call for every image; the scores must differ.
    assert len({round(p.score, 9) for p in predictions}) == 3


def _triage_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """Autograd's reference: log-odds of "not normal" through softmax of the
    vector-scaled logits."""
    a = torch.tensor(VECTOR["a"], dtype=logits.dtype)
    b = torch.tensor(VECTOR["b"], dtype=logits.dtype)
    p = torch.softmax(logits * a + b, dim=1)
    return torch.log1p(-p[:, 1]) - torch.log(p[:, 1])


def test_the_map_is_the_grad_cam_of_the_triage_log_odds(four_class: Bundle) -> None:
    x = _inputs(seed=5)
    scorer = Scorer.from_bundle(four_class)
    _, cams = scorer.logits_and_cams(x)
    with HookGradCAM(four_class.model, four_class.model.features) as cam:
        reference = cam(x, target=_triage_log_odds)
    assert float(reference.amax(dim=(1, 2)).min()) > 0, "an all-zero map proves nothing"
    assert np.allclose(cams, normalise_map(reference).numpy(), atol=1e-4)
    # Not the map of any one raw logit: the triage score mixes them per image.
    with torch.inference_mode():
        _, fmap = four_class.model.forward_with_features(x)
        weight = four_class.model.classifier.weight
        singles = [normalise_map(class_activation_map(fmap, weight, k)) for k in range(4)]
    for single in singles:
        assert not np.allclose(cams, single.numpy(), atol=1e-3)


def test_a_runtime_other_than_torch_keeps_an_nclass_bundle_on_torch(
    four_class: Bundle, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="chestaid.inference"):
        scorer = Scorer.from_bundle(four_class, runtime="auto")
    assert scorer.runtime_name == "torch-f32"
    assert "N-class bundle" in caplog.text


def test_with_calibration_keeps_the_class_head(four_class: Bundle) -> None:
    from chestaid.calibration import TemperatureScaling

    scorer = Scorer.from_bundle(four_class).with_calibration(TemperatureScaling(2.0), 0.3)
    (p,) = scorer.score_batch(_inputs(n=1))
    assert len(p.class_probabilities) == 4
    assert p.score == pytest.approx(1.0 / (1.0 + np.exp(-p.logit / 2.0)), abs=1e-9)
