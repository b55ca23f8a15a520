"""A tiny model goes train -> calibrate -> evaluate -> predict through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.dicom_factory import make_dx
from tests.synthetic_data import make_image_folder

pytestmark = pytest.mark.slow


def chestaid(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chestaid.cli", "--threads", "2", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


@pytest.fixture(scope="module")
def data_dir(workdir: Path) -> Path:
    return make_image_folder(
        workdir / "data", patients_per_class=110, images_per_patient=1, size=48, suffix=".jpeg"
    )


@pytest.fixture(scope="module")
def bundle(workdir: Path, data_dir: Path) -> Path:
    out = workdir / "bundle"
    proc = chestaid(
        "train",
        data_dir,
        "--out",
        out,
        "--input-size",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--max-steps-per-epoch",
        "4",
        "--no-progress",
        "--lr",
        "3e-3",
    )
    assert proc.returncode == 0, proc.stderr
    assert "best validation ROC-AUC" in proc.stdout
    return out


@pytest.fixture(scope="module")
def calibrated(bundle: Path, data_dir: Path, workdir: Path) -> dict[str, object]:
    proc = chestaid("calibrate", bundle, data_dir, "--json", "--out", workdir / "calibration")
    assert proc.returncode == 0, proc.stderr
    outcome: dict[str, object] = json.loads(proc.stdout)
    return outcome


def test_calibrate_compares_three_calibrators_and_sets_the_threshold(
    bundle: Path, calibrated: dict[str, object]
) -> None:
    comparison = calibrated["comparison"]
    assert isinstance(comparison, dict)
    assert {"temperature", "platt", "isotonic"} <= set(comparison["metrics"])
    assert calibrated["chosen"] in comparison["metrics"]
    threshold = calibrated["threshold"]
    assert isinstance(threshold, dict)
    assert threshold["target_sensitivity"] == pytest.approx(0.90)
    assert threshold["achieved_sensitivity"] >= 0.90
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["calibration"]["chosen"] == calibrated["chosen"]
    assert set(manifest["calibration"]["cases_fingerprint"]) == {"calibration", "report"}
    assert manifest["threshold"]["threshold"] == pytest.approx(threshold["threshold"])


def test_calibrate_writes_its_comparison_and_a_reliability_diagram(
    calibrated: dict[str, object], workdir: Path
) -> None:
    report = json.loads((workdir / "calibration" / "calibration.json").read_text())
    assert report["calibration"]["chosen"] == calibrated["chosen"]
    assert set(report["calibration"]["comparison"]["parameters"]) >= {"temperature", "platt"}
    with Image.open(workdir / "calibration" / "reliability.png") as im:
        assert im.size[0] > 200


def test_evaluate_writes_metrics_and_plots(
    bundle: Path, data_dir: Path, calibrated: dict[str, object], workdir: Path
) -> None:
    out = workdir / "eval"
    proc = chestaid(
        "evaluate",
        bundle,
        data_dir,
        "--out",
        out,
        "--saliency",
        "--bootstrap",
        "50",
        "--saliency-cases",
        "8",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cases"]["split"] == "report"
    low, high = metrics["roc_auc"]["ci95"]
    assert low <= metrics["roc_auc"]["value"] <= high
    assert metrics["threshold"]["governed"] is True
    assert {"tp", "fp", "tn", "fn"} <= set(metrics["threshold"]["confusion"])
    assert metrics["saliency"]["n_images"] == 8
    on_logit = metrics["saliency"]["on_logit"]
    assert on_logit["n_images"] == 8 and "randomisation" not in on_logit
    assert len(on_logit["gradcam"]["deletion"]) == len(on_logit["random"]["keep"]) == 6
    recorded = json.loads((bundle / "manifest.json").read_text())["metrics"]["report_split"]
    assert recorded["roc_auc"] == metrics["roc_auc"]
    assert recorded["cases"]["n"] == metrics["cases"]["n"]
    for name in ("roc", "pr", "reliability", "score_histograms", "confusion"):
        with Image.open(out / f"{name}.png") as im:
            assert im.size[0] > 200


def test_predict_scores_dicom_and_images_and_refuses_bad_files(
    bundle: Path, data_dir: Path, calibrated: dict[str, object], workdir: Path
) -> None:
    dicom = workdir / "dx.dcm"
    make_dx(dicom, rows=300, cols=256, bits_stored=12)
    jpeg = next((data_dir / "train" / "PNEUMONIA").iterdir())
    broken = workdir / "broken.dcm"
    broken.write_bytes(dicom.read_bytes()[:2000])
    cams = workdir / "cams"
    proc = chestaid("predict", "--bundle", bundle, "--json", "--cam", cams, dicom, jpeg, broken)
    assert proc.returncode == 1, "a refused file makes the exit status non-zero"
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["file"] for r in lines] == [str(dicom), str(jpeg), str(broken)]
    threshold = calibrated["threshold"]["threshold"]  # type: ignore[index]
    for record in lines[:2]:
        assert 0.0 <= record["score"] <= 1.0
        assert record["threshold"] == pytest.approx(threshold)
        assert record["above_threshold"] == (record["score"] >= record["threshold"])
        assert record["model_version"]
        assert record["calibration_version"] == 1
        with Image.open(record["cam"]) as im:
            assert im.mode == "RGB"
    assert lines[2]["error_type"] == "CorruptImageError"
    assert lines[2]["error"]
    good = chestaid("predict", "--bundle", bundle, dicom)
    assert good.returncode == 0, good.stderr
    assert "does not diagnose" in good.stdout


def test_predict_with_a_broken_bundle_is_a_clear_error(workdir: Path) -> None:
    proc = chestaid("predict", "--bundle", workdir / "missing", workdir / "x.png")
    assert proc.returncode == 2
    assert "BundleError" in proc.stderr
    assert "Traceback" not in proc.stderr
