"""The command line's text output: scores apart from their threshold, intervals shown."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from chestaid import cli, evaluation
from chestaid.display import interval_text, score_text
from chestaid.evaluation import CalibrationOutcome
from chestaid.inference import Prediction, Scorer
from chestaid.threshold import governed_threshold
from tests.bundles import nclass_bundle, unchecked_default_bundle
from tests.dicom_factory import make_dx
from tests.multiclass_bundles import FOUR_CLASSES

REPORT: dict[str, float] = {"tp": 9, "fp": 1, "tn": 9, "fn": 1, "sensitivity": 0.9}
REPORT.update(specificity=0.9, ppv=0.9, npv=0.9, f1=0.9)


def _outcome(threshold: dict[str, Any]) -> CalibrationOutcome:
    metrics = {"ece": 0.01, "adaptive_ece": 0.01, "brier": 0.1, "nll": 0.3}
    return CalibrationOutcome(
        chosen="platt",
        comparison={"metrics": {"uncalibrated": metrics, "platt": metrics}},
        threshold=threshold,
        report_at_threshold=REPORT,
        source="bundle split",
    )


def test_calibrate_prints_the_threshold_with_its_intervals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = 1 - rng.random(300) ** 8 * (1 - 0.99 * y)  # saturated near 1
    governed = governed_threshold(p, y, 0.9, n_boot=100)
    monkeypatch.setattr(
        evaluation, "calibrate_bundle", lambda *a, **k: _outcome(governed.to_dict())
    )
    assert cli.main(["calibrate", "bundle", "data"]) == 0
    out = capsys.readouterr().out
    assert governed.threshold_ci95 is not None
    assert f"governed threshold {score_text(governed.threshold)} " in out
    assert f"95% bootstrap interval {interval_text(*governed.threshold_ci95)}" in out
    assert interval_text(*governed.sensitivity_ci95) in out
    assert interval_text(*governed.specificity_ci95) in out


def test_calibrate_prints_an_old_threshold_record_with_wilson_intervals(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {
        "threshold": 0.999928905661164,
        "target_sensitivity": 0.9,
        "achieved_sensitivity": 351 / 389,
        "specificity": 1.0,
        "n_positive": 389,
        "n_negative": 134,
    }
    monkeypatch.setattr(evaluation, "calibrate_bundle", lambda *a, **k: _outcome(old))
    assert cli.main(["calibrate", "bundle", "data"]) == 0
    out = capsys.readouterr().out
    assert "governed threshold 0.9999 (95% bootstrap interval n/a)" in out
    assert "sensitivity 0.902 [0.869, 0.928], specificity 1.000 [0.972, 1.000]" in out


@pytest.mark.parametrize(("score", "above"), [(0.99996, False), (0.999975, True)])
def test_predict_prints_a_saturated_score_apart_from_its_threshold(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    score: float,
    above: bool,
) -> None:
    def scored(self: Scorer, path: Path, **kwargs: Any) -> tuple[object, Prediction]:
        cam = np.zeros((7, 7), np.float32)
        return object(), Prediction(10.0, score, 0.99997, above, cam, "m-1")

    monkeypatch.setattr(Scorer, "score_file", scored)
    assert cli.main(["predict", str(tmp_path / "x.dcm")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    found = re.search(r"score (\S+)  threshold (\S+)  (ABOVE|below)", line)
    assert found is not None, line
    shown_score, shown_threshold, side = found.groups()
    assert shown_score != shown_threshold
    assert (float(shown_score) >= float(shown_threshold)) == above == (side == "ABOVE"), line


def test_predict_shows_each_class_probability_of_an_nclass_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bundle = nclass_bundle(tmp_path / "bundle")
    image = tmp_path / "x.dcm"
    make_dx(image, rows=96, cols=80, seed=2)
    assert cli.main(["predict", "--bundle", str(bundle), "--json", str(image)]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    probabilities = record["class_probabilities"]
    assert list(probabilities) == list(FOUR_CLASSES)
    assert sum(probabilities.values()) == pytest.approx(1.0)
    assert record["score"] == pytest.approx(1.0 - probabilities["NORMAL"])

    assert cli.main(["predict", "--bundle", str(bundle), str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = dict(re.findall(r"([A-Z0-9-]+) (\d\.\d+)", lines[1].split(": ", 1)[1]))
    assert lines[1].startswith("  class probabilities: ")
    assert list(shown) == list(FOUR_CLASSES)
    for name, value in shown.items():
        assert float(value) == pytest.approx(probabilities[name], abs=1e-3)


def test_predict_shows_no_class_line_for_a_binary_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = tmp_path / "x.dcm"
    make_dx(image, rows=96, cols=80, seed=2)
    bundle = unchecked_default_bundle()
    assert cli.main(["predict", "--bundle", str(bundle), "--json", str(image)]) == 0
    assert "class_probabilities" not in json.loads(capsys.readouterr().out.splitlines()[0])
    assert cli.main(["predict", "--bundle", str(bundle), str(image)]) == 0
    assert "class probabilities" not in capsys.readouterr().out
