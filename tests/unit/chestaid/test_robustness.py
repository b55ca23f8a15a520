"""Corruptions do what they say; the robustness report counts right and is written by the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from chestaid.assessment import ASSESSABLE, Assessment, not_assessable
from chestaid.bundle import MANIFEST_NAME, Manifest, save_bundle
from chestaid.cli import main
from chestaid.corruptions import (
    CORRUPTIONS,
    NORMAL_SHIFT_SEVERITIES,
    REPORT_SEVERITIES,
    corrupt,
    describe,
    featureless_images,
)
from chestaid.data import Example, discover, fingerprint, split_by_patient, splits_to_json
from chestaid.errors import ConfigurationError
from chestaid.evaluation import decode_examples
from chestaid.inference import Prediction
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec, preprocess
from chestaid.robustness import Scores, flag_record, run_robustness, score_images
from chestaid.robustness_report import (
    compare_robustness,
    robustness_table,
    write_comparison_plots,
)
from tests.synthetic_data import make_image_folder

RNG_SEED = 7


def _texture(size: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size)).astype(np.float32)


def _high_frequency_energy(x: np.ndarray) -> float:
    # Energy of the discrete Laplacian: large for pixel-scale detail, small when smooth.
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(np.mean(lap.astype(np.float64) ** 2))


# ---------------------------------------------------------------- corruptions


@pytest.mark.parametrize(
    ("family", "identity"),
    [
        ("blur", 0.0),
        ("downsample", 1.0),
        ("noise", 0.0),
        ("gamma", 1.0),
        ("contrast", 1.0),
        ("rotate", 0.0),
        ("crop", 1.0),
        ("quarter_turn", 0),
        ("invert", 0.0),
    ],
)
def test_identity_severity_returns_the_image(family: str, identity: float) -> None:
    x = _texture()
    out = corrupt(x, family, identity, np.random.default_rng(0))
    np.testing.assert_allclose(out, x, atol=1e-6)
    assert out is not x, "a corruption returns a new array"


@pytest.mark.parametrize("family", sorted(CORRUPTIONS))
def test_every_corruption_keeps_shape_type_and_range(family: str) -> None:
    x = _texture(40)
    extra: dict[str, tuple[float, ...]] = {"quarter_turn": (1, 2), "invert": (1.0,)}
    severities = [
        *REPORT_SEVERITIES.get(family, ()),
        *NORMAL_SHIFT_SEVERITIES.get(family, ()),
        *extra.get(family, ()),
    ]
    for severity in severities:
        out = corrupt(x, family, severity, np.random.default_rng(0))
        assert out.shape == x.shape
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not np.allclose(out, x), f"{family} {severity} changed nothing"
    assert not np.shares_memory(out, x)


def test_blur_lowers_high_frequency_energy_more_with_severity() -> None:
    x = _texture()
    energies = [
        _high_frequency_energy(corrupt(x, "blur", s, np.random.default_rng(0)))
        for s in (0.0, 0.01, 0.02, 0.05)
    ]
    assert energies == sorted(energies, reverse=True)
    assert energies[2] < 0.2 * energies[0]
    # Mean brightness is kept (blur only moves light around).
    assert corrupt(x, "blur", 0.02, np.random.default_rng(0)).mean() == pytest.approx(
        x.mean(), abs=0.01
    )


def test_downsample_removes_detail_but_keeps_the_shape() -> None:
    x = _texture(64)
    half = corrupt(x, "downsample", 0.5, np.random.default_rng(0))
    quarter = corrupt(x, "downsample", 0.25, np.random.default_rng(0))
    assert half.shape == quarter.shape == x.shape
    assert _high_frequency_energy(quarter) < _high_frequency_energy(half)
    assert _high_frequency_energy(half) < _high_frequency_energy(x)


def test_rotation_by_90_degrees_equals_the_rot90_path() -> None:
    x = _texture(33)
    rotated = corrupt(x, "rotate", 90, np.random.default_rng(0))
    np.testing.assert_allclose(rotated, np.rot90(x, 1), atol=1e-5)
    np.testing.assert_array_equal(
        corrupt(x, "quarter_turn", 1, np.random.default_rng(0)), np.rot90(x, 1)
    )
    np.testing.assert_array_equal(
        corrupt(x, "quarter_turn", 3, np.random.default_rng(0)), np.rot90(x, 3)
    )


def test_small_rotation_fills_the_corners_black() -> None:
    x = np.ones((50, 50), np.float32)
    out = corrupt(x, "rotate", 20, np.random.default_rng(0))
    assert out[0, 0] == 0.0 and out[-1, -1] == 0.0
    assert out[25, 25] == pytest.approx(1.0)


def test_jpeg_changes_pixels_keeps_shape_and_range_and_worsens_with_lower_quality() -> None:
    x = _texture(64)
    q30 = corrupt(x, "jpeg", 30, np.random.default_rng(0))
    q10 = corrupt(x, "jpeg", 10, np.random.default_rng(0))
    assert q30.shape == x.shape and q30.dtype == np.float32
    assert q10.min() >= 0.0 and q10.max() <= 1.0
    assert np.abs(q10 - x).mean() > np.abs(q30 - x).mean() > 0.01


def test_noise_is_seeded_and_has_the_stated_sd() -> None:
    x = np.full((128, 128), 0.5, np.float32)
    a = corrupt(x, "noise", 0.05, np.random.default_rng(3))
    b = corrupt(x, "noise", 0.05, np.random.default_rng(3))
    c = corrupt(x, "noise", 0.05, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert float(np.std(a - x)) == pytest.approx(0.05, rel=0.05)


def test_exposure_and_window_changes_move_brightness_and_contrast_as_stated() -> None:
    x = _texture()
    rng = np.random.default_rng(0)
    assert corrupt(x, "gamma", 0.6, rng).mean() > x.mean() > corrupt(x, "gamma", 1.6, rng).mean()
    low = corrupt(x, "contrast", 0.7, rng)
    assert low.mean() == pytest.approx(x.mean(), abs=1e-4)
    assert low.std() == pytest.approx(0.7 * x.std(), rel=1e-3)
    np.testing.assert_allclose(corrupt(x, "invert", 1.0, rng), 1.0 - x, atol=1e-6)


def test_crop_removes_a_border_and_resizes_back() -> None:
    x = np.zeros((60, 60), np.float32)
    x[:3, :] = x[-3:, :] = x[:, :3] = x[:, -3:] = 1.0  # a bright frame
    out = corrupt(x, "crop", 0.8, np.random.default_rng(0))
    assert out.shape == x.shape
    assert out.max() < 0.05, "the frame lies outside the central 80%"


def test_bad_severities_and_names_are_refused() -> None:
    x = _texture(16)
    rng = np.random.default_rng(0)
    for family, severity in [
        ("jpeg", 0),
        ("jpeg", 100),
        ("crop", 0),
        ("downsample", 1.5),
        ("gamma", 0),
        ("blur", -0.1),
        ("quarter_turn", 1.5),
        ("invert", 2),
    ]:
        with pytest.raises(ConfigurationError):
            corrupt(x, family, severity, rng)
    with pytest.raises(ConfigurationError, match="unknown corruption"):
        corrupt(x, "sharpen", 1.0, rng)


def test_report_protocol_has_two_severities_per_registered_family() -> None:
    for table in (REPORT_SEVERITIES, NORMAL_SHIFT_SEVERITIES):
        for family, severities in table.items():
            assert family in CORRUPTIONS
            assert len(severities) >= 1
    assert all(len(s) >= 2 for s in REPORT_SEVERITIES.values())
    assert {"blur", "downsample", "noise", "gamma", "jpeg", "rotate", "crop"} <= set(
        REPORT_SEVERITIES
    )


def test_featureless_images_are_what_they_claim() -> None:
    images = featureless_images(24, seed=0)
    assert len(images) == 7
    assert all(im.shape == (24, 24) and im.dtype == np.float32 for im in images.values())
    assert images["black"].max() == 0.0 and images["white"].min() == 1.0
    assert np.all(images["grey 0.5"] == 0.5)
    assert np.all(np.diff(images["gradient"][:, 0]) > 0)
    assert images["noise 0.5+-0.2"].std() > 0.1


# ------------------------------------------------------- a scorer we control


class MeanScorer:
    """Logit from the mean grey value of the input; nearly uniform inputs are not assessable.

    Everything bright is above the threshold, including not-assessable inputs, so a
    report that forgot the assessment would count them as flagged.
    """

    def __init__(self, threshold: float = 0.6) -> None:
        self.spec = PreprocessSpec(input_size=16, mean=0.5, std=0.25)
        self.threshold = threshold
        self.batches: list[int] = []

    def score_batch(self, batch: torch.Tensor) -> list[Prediction]:
        self.batches.append(batch.shape[0])
        out = []
        for x in batch:
            grey = x * self.spec.std + self.spec.mean
            logit = 10.0 * (float(grey.mean()) - 0.5)
            score = 1.0 / (1.0 + math.exp(-logit))
            uniform = float(grey.std()) < 0.02
            out.append(
                Prediction(
                    logit=logit,
                    score=score,
                    threshold=self.threshold,
                    above_threshold=score >= self.threshold,  # nan compares False
                    cam=np.zeros((1, 1), np.float32),
                    model_version="mean-1",
                    assessment=not_assessable("featureless", "uniform") if uniform else ASSESSABLE,
                )
            )
        return out


def _textured(mean: float, seed: int, size: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(mean + 0.1 * rng.standard_normal((size, size)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def controlled() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Normals: 3 dark, 2 bright, 1 uniform bright; pneumonia: 4 bright, 1 dark, 1 uniform dark."""
    normals = [_textured(m, i) for i, m in enumerate((0.3, 0.35, 0.4, 0.8, 0.85))]
    normals.append(np.full((20, 20), 0.9, np.float32))
    sick = [_textured(m, 10 + i) for i, m in enumerate((0.7, 0.75, 0.8, 0.9, 0.3))]
    sick.append(np.full((20, 20), 0.2, np.float32))
    labels = np.array([0] * 6 + [1] * 6)
    patients = [f"p{i}" for i in range(12)]
    return normals + sick, labels, patients


def _expected(image: np.ndarray, scorer: MeanScorer) -> tuple[float, bool, bool]:
    """(logit, flagged, assessable) of one image by the scorer's own rule."""
    (pred,) = scorer.score_batch(preprocess(image, scorer.spec).unsqueeze(0))
    assessable = pred.assessment.assessable
    return pred.logit, pred.above_threshold and assessable, assessable


def _prediction(score: float, threshold: float, assessment: Assessment) -> Prediction:
    return Prediction(
        logit=math.log(score / (1 - score)),
        score=score,
        threshold=threshold,
        above_threshold=score >= threshold,
        cam=np.zeros((1, 1), np.float32),
        model_version="hand-1",
        assessment=assessment,
    )


def test_scores_and_flag_record_count_what_the_scorer_decided() -> None:
    turned_upright = Assessment(assessable=True, quarter_turns=1)
    predictions = [
        _prediction(0.9, 0.8, ASSESSABLE),  # flagged
        _prediction(0.95, 0.8, not_assessable("noise", "noise")),  # above, not assessable
        _prediction(0.6, 0.8, ASSESSABLE),  # >= 0.5 only
        _prediction(0.85, 0.8, turned_upright),  # turned upright, then flagged
        _prediction(0.2, 0.8, not_assessable("inverted", "inverted")),
    ]
    scores = Scores.from_predictions(predictions)
    assert scores.flagged.tolist() == [True, False, False, True, False]
    assert scores.at_half.tolist() == [True, False, True, True, False]
    assert scores.reasons == (None, "noise", None, None, "inverted")
    record = flag_record(scores, governed=True)
    assert (record["n"], record["flagged"], record["score_ge_050"]) == (5, 2, 3)
    assert (record["not_assessable"], record["turned_upright"]) == (2, 1)
    assert record["flag_rate"] == pytest.approx(0.4)
    assert record["not_assessable_rate"] == pytest.approx(0.4)
    picked = flag_record(scores.take(np.array([1, 2])), governed=False)
    assert (picked["n"], picked["flagged"], picked["flag_rate"]) == (2, None, None)
    assert picked["score_ge_050"] == 1


def test_flag_rates_count_not_assessable_images_as_not_flagged(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]],
) -> None:
    images, labels, patients = controlled
    scorer = MeanScorer()
    result = run_robustness(scorer, images, labels, patients, n_boot=0, batch_size=4)
    clean = result["corruptions"][0]
    assert clean["label"] == "clean"
    # Counted independently, image by image, from the scorer's own outputs.
    outcomes = [_expected(im, scorer) for im in images]
    normals = [o for o, y in zip(outcomes, labels, strict=True) if y == 0]
    assert clean["normal"]["flagged"] == sum(f for _, f, _ in normals) == 2
    assert clean["normal"]["flag_rate"] == pytest.approx(2 / 6)
    assert clean["normal"]["not_assessable"] == 1
    assert clean["normal"]["score_ge_050"] == 2, "the uniform bright normal scores > 0.5"
    assert clean["not_assessable_rate"] == pytest.approx(2 / 12)
    assert clean["not_assessable_reasons"] == {"featureless": 2}
    # ROC-AUC on every logit, and on the assessable images alone.
    logits = np.array([z for z, _, _ in outcomes])
    keep = np.array([a for _, _, a in outcomes])
    assert clean["roc_auc_logit"]["value"] == pytest.approx(roc_auc_score(labels, logits))
    assert clean["roc_auc_logit_assessable"]["n"] == 10
    assert clean["roc_auc_logit_assessable"]["value"] == pytest.approx(
        roc_auc_score(labels[keep], logits[keep])
    )
    assert max(scorer.batches) <= 4


def test_normal_shifts_are_paired_with_the_clean_normals(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]],
) -> None:
    images, labels, patients = controlled
    scorer = MeanScorer()
    result = run_robustness(scorer, images, labels, patients, n_boot=0)
    shifts = {s["label"]: s for s in result["normal_shifts"]}
    assert set(shifts) == {
        "clean",
        "blur sigma 2%",
        "blur sigma 5%",
        "gamma 0.6",
        "gamma 1.6",
        "contrast x0.7",
    }
    rng = np.random.default_rng(0)
    for label, family, severity in (("gamma 0.6", "gamma", 0.6), ("gamma 1.6", "gamma", 1.6)):
        outcomes = [_expected(corrupt(im, family, severity, rng), scorer) for im in images[:6]]
        clean = [_expected(im, scorer)[0] for im in images[:6]]
        assert shifts[label]["n"] == 6
        assert shifts[label]["flagged"] == sum(f for _, f, _ in outcomes)
        assert shifts[label]["median_logit_shift"] == pytest.approx(
            float(np.median([o[0] - c for o, c in zip(outcomes, clean, strict=True)]))
        )
    assert shifts["gamma 0.6"]["median_logit_shift"] > 0 > shifts["gamma 1.6"]["median_logit_shift"]
    assert shifts["gamma 0.6"]["flag_rate"] > shifts["clean"]["flag_rate"]


def test_featureless_turned_and_inverted_sections(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]],
) -> None:
    images, labels, patients = controlled
    result = run_robustness(MeanScorer(), images, labels, patients, n_boot=0)
    blanks = {f["input"]: f for f in result["featureless"]}
    assert len(blanks) == 7
    assert blanks["white"]["score"] > 0.9 and not blanks["white"]["assessable"]
    assert blanks["white"]["flagged"] is False, "not assessable is never flagged"
    assert blanks["noise 0.5+-0.2"]["assessable"]
    assert blanks["black"]["reason"] == "featureless"
    by = {o["condition"]: o for o in result["orientation"]}
    upright = by["pneumonia, upright"]
    for k in (1, 2, 3):
        turned = by[f"pneumonia, rot90 k={k} ({90 * k} deg)"]
        # The mean is unchanged by a quarter turn: the same pneumonias are flagged.
        assert turned["n"] == upright["n"] == 6
        assert turned["flagged"] == upright["flagged"] == 4
    # Inverting darkens the bright normals and brightens the dark ones.
    assert by["normal, inverted (1 - x)"]["flagged"] == 3
    assert by["normal, inverted (1 - x)"]["not_assessable"] == 1
    assert result["summary"]["turned_pneumonia_flag_rate_mean"] == pytest.approx(4 / 6)
    assert result["summary"]["featureless_flagged"] == 0
    scorer = MeanScorer()
    at_half = [
        _expected(im, scorer)[2] and _expected(im, scorer)[0] >= 0.0
        for im in featureless_images(scorer.spec.input_size).values()
    ]
    assert result["summary"]["featureless_score_ge_050"] == sum(at_half)
    assert result["summary"]["featureless_not_assessable"] == 5


def test_without_a_governed_threshold_only_the_half_rate_is_counted(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]],
) -> None:
    images, labels, patients = controlled
    result = run_robustness(MeanScorer(float("nan")), images, labels, patients, n_boot=0)
    clean = result["corruptions"][0]
    assert result["threshold"] == {"value": None, "governed": False}
    assert clean["normal"]["flag_rate"] is None
    assert clean["normal"]["flag_rate_050"] == pytest.approx(2 / 6)
    assert "No governed threshold" in robustness_table(
        {"cases": {"n": 12, "positives": 6, "negatives": 6, "source": "x", "split": "y"}} | result
    )


def test_score_images_applies_a_seeded_transform_per_image() -> None:
    scorer = MeanScorer()
    images = [np.full((8, 8), 0.5, np.float32)] * 3

    def add_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(pixels + rng.normal(0, 0.2, pixels.shape), 0, 1).astype(np.float32)

    a = score_images(scorer, images, [0, 1, 2], add_noise, seed=1, batch_size=2)
    b = score_images(scorer, images, [2], add_noise, seed=1)
    assert isinstance(a, Scores) and a.logit.shape == (3,)
    assert a.logit[2] == b.logit[0], "image i gets the same noise whatever else is scored"
    assert a.logit[0] != a.logit[1]


def test_compare_robustness_has_one_column_per_bundle(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]],
) -> None:
    images, labels, patients = controlled
    case = {"cases": {"n": 12, "positives": 6, "negatives": 6, "source": "x", "split": "report"}}
    a = {"bundle": {"version": "a-1", "name": "a"}} | case
    a |= run_robustness(MeanScorer(0.6), images, labels, patients, n_boot=0)
    b = {"bundle": {"version": "b-1", "name": "b"}} | case
    b |= run_robustness(MeanScorer(0.99), images, labels, patients, n_boot=0)
    table = compare_robustness([a, b]).splitlines()
    assert table[0] == "| measure | a-1 | b-1 |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    for family, severities in REPORT_SEVERITIES.items():
        for severity in severities:
            row = rows[f"ROC-AUC {describe(family, severity)}"].split(" | ")
            assert len(row) == 3 and all(cell.strip(" |") != "-" for cell in row[1:])
    threshold_row = rows["governed threshold"].split(" | ")
    assert threshold_row[1:] == ["0.600000", "0.990000 |"]
    clean = rows["normals flagged / >= 0.5: clean"].split(" | ")
    assert clean[1].startswith("33.3%") and clean[2].startswith("0.0%")
    assert len(rows) == len(table) - 2, "row labels are unique"
    named = compare_robustness([a, a], ["first", "second"]).splitlines()
    assert named[0] == "| measure | first | second |"
    assert compare_robustness([a, a]).startswith("| measure | a-1 (a) | a-1 (a) |")
    with pytest.raises(ConfigurationError):
        compare_robustness([a, b], ["only one"])


def test_comparison_plots_are_written_one_bar_per_bundle(
    controlled: tuple[list[np.ndarray], np.ndarray, list[str]], tmp_path: Path
) -> None:
    images, labels, patients = controlled
    a = run_robustness(MeanScorer(0.6), images, labels, patients, n_boot=0)
    b = run_robustness(MeanScorer(0.99), images, labels, patients, n_boot=0)
    written = write_comparison_plots([a, b], ["a", "b"], tmp_path)
    assert [p.name for p in written] == ["comparison_auc.png", "comparison_normals_flagged.png"]
    for path in written:
        with Image.open(path) as png:
            assert png.format == "PNG" and png.width > 300 and png.height > 200
    with pytest.raises(ConfigurationError):
        write_comparison_plots([a, b], ["only one"], tmp_path)


# ------------------------------------------------- a tiny bundle, end to end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random DenseNet bundle at 32 px, its own split stored, calibrated and governed."""
    root = tmp_path_factory.mktemp("robust")
    data = make_image_folder(root / "data", patients_per_class=12, images_per_patient=1, size=40)
    base, examples = discover(data)
    parts = split_by_patient(
        examples, fractions={"train": 0.5, "calibration": 0.25, "report": 0.25}, seed=0
    )
    torch.manual_seed(RNG_SEED)
    model = build_model("densenet121").eval()
    manifest = Manifest(
        version="robust-test-1",
        architecture="densenet121",
        classes=("NORMAL", "PNEUMONIA"),
        preprocessing=PreprocessSpec(input_size=32),
        data_fingerprint={"splits": {n: fingerprint(base, p) for n, p in parts.items()}},
        calibration={"calibrator": {"name": "identity"}},
        threshold={"threshold": 0.5, "target_sensitivity": 0.9},
    )
    bundle = root / "bundle"
    save_bundle(bundle, model, manifest, splits=splits_to_json(parts, manifest.classes, 0))
    return bundle, data


def test_cli_evaluate_robustness_writes_every_family_and_severity(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, data = tiny
    manifest_before = (bundle / MANIFEST_NAME).read_bytes()
    out = tmp_path / "out"
    code = main(
        [
            "--threads",
            "1",
            "evaluate",
            str(bundle),
            str(data),
            "--out",
            str(out),
            "--robustness",
            "--bootstrap",
            "20",
        ]
    )
    assert code == 0
    result = json.loads((out / "robustness.json").read_text())
    assert result["bundle"]["version"] == "robust-test-1"
    assert result["cases"]["source"] == "bundle split" and result["cases"]["split"] == "report"
    n = result["cases"]["n"]
    seen = {(c["family"], c["severity"]) for c in result["corruptions"]}
    expected = {("clean", None)} | {(f, s) for f, ss in REPORT_SEVERITIES.items() for s in ss}
    assert seen == expected
    for c in result["corruptions"]:
        assert c["n"] == n
        assert 0.0 <= c["roc_auc_logit"]["value"] <= 1.0
        low, high = c["roc_auc_logit"]["ci95"]
        assert low <= high
        assert c["not_assessable_rate"] == 0.0  # today's scorer assesses every image
    assert result["protocol"]["report_severities"] == {
        k: list(v) for k, v in REPORT_SEVERITIES.items()
    }
    assert len(result["featureless"]) == 7
    assert all(math.isfinite(f["logit"]) for f in result["featureless"])
    assert result["threshold"] == {"value": 0.5, "governed": True}
    assert result["forward_passes"] > 15 * n
    assert (out / "robustness_auc.png").stat().st_size > 1000
    assert (out / "robustness_normals_flagged.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| blur sigma 2% |" in printed and "### Featureless inputs (32 x 32)" in printed
    assert (out / "robustness.md").read_text().strip() in printed
    assert (bundle / MANIFEST_NAME).read_bytes() == manifest_before, "the bundle is not modified"


def test_cases_are_decoded_once_and_large_ones_reduced(tmp_path: Path) -> None:
    big = (np.random.default_rng(0).random((600, 300)) * 255).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(big[:100, :80]).save(tmp_path / "small.png")
    examples = [Example("big.png", 0, "a"), Example("small.png", 1, "b")]
    images = decode_examples(tmp_path, examples, max_side=128)
    assert [im.shape for im in images] == [(128, 64), (100, 80)]
    np.testing.assert_allclose(images[1], big[:100, :80] / 255.0, atol=1e-6)
    assert all(im.dtype == np.float32 for im in images)


def test_cli_refuses_robustness_with_saliency(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, data = tiny
    args = ["evaluate", str(bundle), str(data), "--out", str(tmp_path), "--robustness"]
    assert main([*args, "--saliency"]) == 2
    assert not (tmp_path / "robustness.json").exists()
