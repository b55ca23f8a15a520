"""``chestaid calibrate`` and ``chestaid evaluate`` on a tiny random 4-class bundle.

No training: what is checked is the bookkeeping (the manifest's records, the threshold
on P(not normal), the report files and their numbers), not how good the model is.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from chestaid.bundle import load_bundle, read_manifest, read_splits
from chestaid.calibration.multiclass import multiclass_from_dict
from chestaid.cli import EXIT_ERROR, EXIT_OK, main
from chestaid.data import splits_from_json
from chestaid.multiclass_bundle import collect_class_logits
from chestaid.threshold import RULE, governed_threshold
from chestaid.training.dataset import ImageDataset
from tests.multiclass_bundles import FOUR_CLASSES, make_class_folder, make_multiclass_bundle


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multiclass")
    data = make_class_folder(root / "data")
    return make_multiclass_bundle(root / "bundle", data), data


@pytest.fixture(scope="module")
def calibrated(
    site: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path, str]:
    bundle, data = site
    out = tmp_path_factory.mktemp("calibration-report")
    buffer = io.StringIO()  # capsys is per test; this fixture is shared by several
    with contextlib.redirect_stdout(buffer):
        status = main(["calibrate", str(bundle), str(data), "--out", str(out)])
    assert status == EXIT_OK
    return bundle, data, out, buffer.getvalue()


def test_calibrate_writes_the_fixed_record_and_a_threshold_on_not_normal(
    calibrated: tuple[Path, Path, Path, str],
) -> None:
    bundle, data, _, _ = calibrated
    manifest = read_manifest(bundle)
    record, threshold = manifest.calibration, manifest.threshold
    assert record is not None and threshold is not None
    assert record["calibrator"] == {"name": "identity"}
    assert record["chosen"] in ("temperature", "vector")
    assert record["class_calibrator"]["name"] == record["chosen"]
    comparison = record["comparison"]
    assert set(comparison["metrics"]) == {"identity", "temperature", "vector"}
    assert set(comparison["metrics"]["vector"]) == {"nll", "ece", "classwise_ece", "brier"}
    assert comparison["folds"] >= 2 and record["fitted_on"] == "bundle split"
    assert threshold["rule"] == RULE
    # The threshold is the rule's on P(not NORMAL) of the calibration cases, recomputed here.
    loaded = load_bundle(bundle)  # the binary calibrator of the record loads as identity
    assert loaded.calibrator.name == "identity"
    parts = splits_from_json(read_splits(bundle) or {})
    base = data / "train"
    dataset = ImageDataset(base, parts["calibration"], manifest.preprocessing)
    probs = multiclass_from_dict(record["class_calibrator"]).predict_proba(
        collect_class_logits(loaded.model, dataset)
    )
    expected = governed_threshold(1.0 - probs[:, 0], (dataset.labels != 0).astype(int), 0.9)
    assert threshold["threshold"] == expected.threshold
    assert threshold["n_positive"] == int(np.sum(dataset.labels != 0))
    assert threshold["achieved_sensitivity"] >= 0.9


def test_calibrate_prints_and_writes_its_report(calibrated: tuple[Path, Path, Path, str]) -> None:
    _, _, out, printed = calibrated
    assert "<- kept" in printed and "P(not NORMAL)" in printed
    report = json.loads((out / "calibration.json").read_text())
    assert report["calibration"]["class_calibrator"]["name"] == report["calibration"]["chosen"]
    reliability = report["reliability"]["report_cases"]["identity"]
    assert set(reliability) == set(FOUR_CLASSES)
    n_report = report["calibration"]["n_report"]
    assert sum(reliability["VIRAL"]["count"]) == n_report
    assert "| vector" in (out / "calibration.md").read_text()
    assert (out / "reliability_per_class.png").stat().st_size > 1000


def test_evaluate_reports_every_class_with_patient_intervals(
    calibrated: tuple[Path, Path, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, data, _, _ = calibrated
    status = main(["evaluate", str(bundle), str(data), "--out", str(tmp_path), "--bootstrap", "40"])
    assert status == EXIT_OK
    printed = capsys.readouterr().out
    assert "BACTERIAL vs VIRAL" in printed and "macro" in printed
    result = json.loads((tmp_path / "metrics.json").read_text())
    n = result["cases"]["n"]
    assert result["cases"]["split"] == "report"
    assert result["bootstrap"]["unit"] == "patient"
    assert set(result["per_class"]) == set(FOUR_CLASSES)
    for m in result["per_class"].values():
        low, high = m["roc_auc"]["ci95"]
        assert low <= m["roc_auc"]["value"] <= high
    matrix = np.array(result["confusion"]["matrix"])
    assert matrix.shape == (4, 4) and int(matrix.sum()) == n
    assert result["accuracy"]["value"] == pytest.approx(np.trace(matrix) / n)
    assert result["micro"]["f1"]["value"] == pytest.approx(result["accuracy"]["value"])
    assert set(result["pairwise"]) == {
        "BACTERIAL vs VIRAL",
        "BACTERIAL vs COVID-19",
        "VIRAL vs COVID-19",
    }
    manifest = read_manifest(bundle)
    assert manifest.threshold is not None
    triage = result["triage"]
    assert triage["governed"] and triage["threshold"] == manifest.threshold["threshold"]
    cm = triage["confusion"]
    assert cm["tp"] + cm["fn"] == n - result["cases"]["per_class"]["NORMAL"]
    assert triage["sensitivity"]["value"] == pytest.approx(cm["sensitivity"])
    low, high = triage["specificity"]["ci95"]
    assert low <= cm["specificity"] <= high
    for name in ("confusion", "roc_per_class", "pr_per_class", "reliability_per_class"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert len(result["gradcam"]["cases"]) == 4
    assert (tmp_path / result["gradcam"]["file"]).stat().st_size > 1000
    assert manifest.metrics["report_split"]["macro"] == result["macro"]


def test_a_bundle_without_a_normal_class_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    classes = ("HEALTHY", "BACTERIAL", "VIRAL")
    data = make_class_folder(tmp_path / "data", classes, patients_per_class=6)
    bundle = make_multiclass_bundle(tmp_path / "bundle", data, classes)
    assert main(["calibrate", str(bundle), str(data)]) == EXIT_ERROR
    assert "NORMAL" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--saliency", "--robustness"])
def test_binary_only_evaluations_are_refused_for_an_n_class_bundle(
    site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    bundle, data = site
    assert main(["evaluate", str(bundle), str(data), "--out", str(tmp_path), option]) == EXIT_ERROR
    assert "binary bundles" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()
