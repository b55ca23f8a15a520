"""The not-assessable checks: image statistics, orientation, feature distance, and the Scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chestaid.assessment import (
    Assessment,
    AssessmentSettings,
    Evidence,
    FeatureDensity,
    assess,
    image_statistics,
)
from chestaid.bundle import Manifest, load_bundle, save_assessment, save_bundle
from chestaid.calibration import IdentityCalibration
from chestaid.calibration.multiclass import VectorScaling
from chestaid.class_head import ClassHead
from chestaid.errors import BundleError
from chestaid.inference import Scorer
from chestaid.models import ChestNet, build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.training.augment import orientation_transform
from tests.synthetic_data import chest_like

SPEC = PreprocessSpec(input_size=96)


def _chest(seed: int = 0, size: int = 64) -> np.ndarray:
    return chest_like(np.random.default_rng(seed), size, opacity=False)


def _images(*arrays: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(a.astype(np.float32))[None] for a in arrays])


def test_statistics_tell_blank_and_noise_from_an_image_with_anatomy() -> None:
    rng = np.random.default_rng(1)
    grey = np.full((64, 64), 0.5)
    noise = np.clip(0.5 + 0.2 * rng.standard_normal((64, 64)), 0, 1)
    spread, structure = image_statistics(_images(grey, noise, _chest()))
    assert spread[0] == pytest.approx(0.0, abs=1e-6)
    assert spread[1] > 0.1 and structure[1] < 0.1
    assert spread[2] > 0.1 and structure[2] > 0.5


def _evidence(**kw: object) -> Evidence:
    base: dict[str, object] = {
        "spread": 0.2,
        "structure": 0.8,
        "orientation": None,
        "feature_distance": None,
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


def _onehot(k: int, p: float = 0.97) -> np.ndarray:
    out = np.full(8, (1 - p) / 7)
    out[k] = p
    return out


@pytest.mark.parametrize(
    ("evidence", "reason"),
    [
        (_evidence(spread=0.01), "featureless"),
        (_evidence(structure=0.05), "noise"),
        (_evidence(orientation=_onehot(4)), "inverted"),
        (_evidence(orientation=_onehot(6)), "inverted"),
        (_evidence(orientation=np.array([0.3, 0.35, 0.3, 0.05, 0, 0, 0, 0])), "orientation"),
        (_evidence(feature_distance=9.0), "unfamiliar"),
    ],
)
def test_each_check_gives_its_reason(evidence: Evidence, reason: str) -> None:
    verdict = assess(evidence, AssessmentSettings(max_feature_distance=3.0))
    assert isinstance(verdict, Assessment)
    assert not verdict.assessable
    assert verdict.reason == reason
    assert verdict.detail


def test_a_certain_turn_is_undone_and_an_upright_radiograph_passes() -> None:
    settings = AssessmentSettings(max_feature_distance=3.0)
    assert assess(_evidence(orientation=_onehot(1)), settings) == 1
    assert assess(_evidence(orientation=_onehot(2)), settings) == 2
    verdict = assess(_evidence(orientation=_onehot(0), feature_distance=1.0), settings)
    assert verdict == Assessment(assessable=True)


def test_feature_density_is_near_one_on_its_data_and_far_off_it() -> None:
    rng = np.random.default_rng(0)
    scales = np.linspace(3.0, 0.1, 64)
    train = rng.standard_normal((2000, 64)) * scales
    held = rng.standard_normal((500, 64)) * scales
    density = FeatureDensity.fit(train, components=16)
    near = density.distance(held)
    assert 0.8 < float(np.median(near)) < 1.2
    shifted = held + 4.0 * scales.max()
    assert float(density.distance(shifted).min()) > float(np.quantile(near, 0.999)) * 2
    again = FeatureDensity.from_tensors(density.to_tensors())
    np.testing.assert_allclose(again.distance(held), near, rtol=1e-4)


class _TurnSeer(ChestNet):
    """A ChestNet whose orientation head is replaced by a known rule, for the Scorer tests.

    It says "upright" when the top half of the image is brighter than the bottom half,
    "turned once" when the left half is brighter, and so on; "inverted" never.
    """

    def forward_heads(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        heads = super().forward_heads(x)
        img = x * SPEC.std + SPEC.mean
        h = img.shape[-1] // 2
        top, bottom = img[..., :h, :].mean((1, 2, 3)), img[..., h:, :].mean((1, 2, 3))
        left, right = img[..., :, :h].mean((1, 2, 3)), img[..., :, h:].mean((1, 2, 3))
        # rot90 by k (counter-clockwise) moves the bright top to: k=1 left, k=2 bottom, k=3 right.
        sides = torch.stack([top, left, bottom, right], 1)
        logits = torch.full((x.shape[0], 8), -20.0)
        logits[:, :4] = 400.0 * (sides - sides.mean(1, keepdim=True))
        return type(heads)(heads.logits, logits, heads.feature_map, heads.pooled)


def _scorer(
    settings: AssessmentSettings | None = None, class_head: ClassHead | None = None
) -> Scorer:
    torch.manual_seed(0)
    outputs = 1 if class_head is None else len(class_head.classes)
    base = build_model("densenet121", num_outputs=outputs, orientation_outputs=8).eval()
    model = _TurnSeer(base.features, 1024, outputs, 0.0, orientation_outputs=8).eval()
    model.load_state_dict(base.state_dict())
    return Scorer(
        model,
        IdentityCalibration(),
        spec=SPEC,
        threshold=0.5,
        model_version="t",
        assessment=settings or AssessmentSettings(),
        class_head=class_head,
    )


def _top_bright(seed: int) -> np.ndarray:
    img = _chest(seed, 96)
    img[:48] = np.clip(img[:48] + 0.3, 0, 1)
    return img


def test_scorer_turns_a_certainly_turned_image_upright_and_maps_the_cam_back() -> None:
    scorer = _scorer()
    upright = _top_bright(2)
    turned = np.rot90(upright, 1).copy()
    [straight] = scorer.score_batch(_images(upright))
    [fixed] = scorer.score_batch(_images(turned))
    assert straight.assessment == Assessment(assessable=True)
    assert fixed.assessment.assessable and fixed.assessment.quarter_turns == 3
    # Scored upright: the same logit as the upright image, and the map lies on the
    # image as received (turned like it).
    assert fixed.logit == pytest.approx(straight.logit, abs=1e-4)
    assert straight.cam.shape == (3, 3) and straight.cam.std() > 0
    np.testing.assert_allclose(fixed.cam, np.rot90(straight.cam, 1), atol=1e-5)


def test_an_nclass_image_turned_upright_carries_the_upright_class_probabilities() -> None:
    head = ClassHead(
        ("VIRAL", "NORMAL", "BACTERIAL"), VectorScaling([1.2, 0.8, 1.0], [0.1, 0.3, -0.4]), 1
    )
    scorer = _scorer(class_head=head)
    upright = _top_bright(2)
    [straight] = scorer.score_batch(_images(upright))
    [fixed] = scorer.score_batch(_images(np.rot90(upright, 1).copy()))
    assert fixed.assessment.assessable and fixed.assessment.quarter_turns == 3
    names = [name for name, _ in straight.class_probabilities]
    assert names == [name for name, _ in fixed.class_probabilities] == list(head.classes)
    got = [p for _, p in fixed.class_probabilities]
    assert got == pytest.approx([p for _, p in straight.class_probabilities], abs=1e-4)
    assert fixed.score == pytest.approx(1.0 - got[1], abs=1e-9)


def test_scorer_refuses_blank_images_and_never_flags_them() -> None:
    scorer = _scorer()
    predictions = scorer.score_batch(_images(np.zeros((96, 96)), np.full((96, 96), 0.7)))
    for p in predictions:
        assert not p.assessment.assessable
        assert p.assessment.reason == "featureless"
        assert p.above_threshold is False


def test_orientation_transform_matches_the_head_labels() -> None:
    img = torch.from_numpy(_top_bright(3).astype(np.float32))
    for label in range(8):
        out = orientation_transform(img, label)
        expected = np.rot90(img.numpy(), label % 4)
        if label >= 4:
            expected = 1.0 - expected
        np.testing.assert_allclose(out.numpy(), expected)


def _tiny_bundle(path: Path, *, orientation: int = 8) -> Path:
    model = build_model("densenet121", orientation_outputs=orientation)
    manifest = Manifest(
        version="t-1",
        architecture="densenet121",
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=SPEC,
        orientation_outputs=orientation,
    )
    save_bundle(path, model, manifest)
    return path


def test_bundle_keeps_the_checks_and_refuses_a_changed_density(tmp_path: Path) -> None:
    path = _tiny_bundle(tmp_path / "b")
    rng = np.random.default_rng(0)
    density = FeatureDensity.fit(rng.standard_normal((100, 1024)), components=8)
    save_assessment(path, AssessmentSettings(max_feature_distance=2.5), density)
    bundle = load_bundle(path)
    assert bundle.model.orientation is not None
    assert bundle.assessment is not None
    assert bundle.assessment.max_feature_distance == 2.5
    assert bundle.density is not None
    probe = rng.standard_normal((3, 1024))
    np.testing.assert_allclose(bundle.density.distance(probe), density.distance(probe), rtol=1e-3)
    # A hand edit of the limit breaks the governance digest...
    raw = json.loads((path / "manifest.json").read_text())
    raw["assessment"]["max_feature_distance"] = 1000.0
    (path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="governance"):
        load_bundle(path)


def test_bundle_refuses_a_density_file_that_changed(tmp_path: Path) -> None:
    path = _tiny_bundle(tmp_path / "b")
    rng = np.random.default_rng(0)
    save_assessment(
        path,
        AssessmentSettings(max_feature_distance=2.5),
        FeatureDensity.fit(rng.standard_normal((100, 1024)), components=8),
    )
    other = FeatureDensity.fit(rng.standard_normal((100, 1024)) + 5, components=8)
    from safetensors.torch import save_file

    save_file(other.to_tensors(), str(path / "assessment.safetensors"))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(path)


def test_predict_json_reports_a_blank_image_as_not_assessable_and_writes_no_overlay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from chestaid.cli import main

    # Image statistics only: no orientation head (a random one would judge at random)
    # and no density.
    path = _tiny_bundle(tmp_path / "b", orientation=0)
    save_assessment(path, AssessmentSettings(), None)
    blank, chest = tmp_path / "blank.png", tmp_path / "chest.png"
    Image.fromarray(np.zeros((96, 96), dtype=np.uint8)).save(blank)
    Image.fromarray((_chest(5, 96) * 255).astype(np.uint8)).save(chest)
    cams = tmp_path / "cams"
    status = main(
        ["predict", "--bundle", str(path), "--json", "--cam", str(cams), str(blank), str(chest)]
    )
    assert status == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["assessable"] is False and first["assessment"]["reason"] == "featureless"
    assert first["above_threshold"] is None and "cam" not in first
    assert second["assessable"] is True and second["assessment"]["reason"] is None
    assert [p.name for p in cams.iterdir()] == ["chest.cam.png"]


def test_a_bundle_without_the_record_is_served_without_checks(tmp_path: Path) -> None:
    bundle = load_bundle(_tiny_bundle(tmp_path / "b"))
    assert bundle.assessment is None
    [p] = Scorer.from_bundle(bundle).score_batch(_images(np.zeros((96, 96))))
    assert p.assessment == Assessment(assessable=True)
