"""calibrate_bundle and evaluate_bundle record and report the governed threshold exactly.

A model with random weights on a small synthetic folder (no training): what matters
here is the bookkeeping of the threshold, not how good the model is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from chestaid.bundle import Manifest, read_manifest, save_bundle
from chestaid.errors import DatasetError
from chestaid.evaluation import calibrate_bundle, evaluate_bundle, logit_distribution
from chestaid.metrics import wilson_interval
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from chestaid.threshold import RULE, GovernedThreshold
from tests.synthetic_data import make_image_folder


def _tiny_bundle(path: Path, data_fingerprint: dict[str, Any] | None = None) -> Path:
    """An uncalibrated binary bundle of random weights at 32 px."""
    save_bundle(
        path,
        build_model("efficientnet_b0").eval(),
        Manifest(
            version="t",
            architecture="efficientnet_b0",
            classes=("NORMAL", "PNEUMONIA"),
            preprocessing=PreprocessSpec(input_size=32),
            data_fingerprint=data_fingerprint or {},
        ),
    )
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("calibrate")
    torch.manual_seed(0)
    _tiny_bundle(root / "bundle")
    data = make_image_folder(root / "data", patients_per_class=24, images_per_patient=1, size=32)
    return root / "bundle", data


def test_the_manifest_keeps_the_rule_its_intervals_and_the_old_keys(
    site: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, data = site
    outcome = calibrate_bundle(bundle, data, target_sensitivity=0.9, out_dir=tmp_path)
    record = read_manifest(bundle).threshold
    assert record is not None
    governed = GovernedThreshold.from_dict(record)
    assert record["rule"] == RULE
    assert governed.achieved_sensitivity >= 0.9
    assert governed.sensitivity_ci95 == wilson_interval(
        governed.true_positives, governed.n_positive
    )
    assert governed.threshold_ci95 is not None and governed.n_boot > 0
    assert outcome.threshold["threshold"] == governed.threshold
    written = json.loads((tmp_path / "calibration.json").read_text())
    assert written["threshold"]["sensitivity_ci95"] == list(governed.sensitivity_ci95)


def test_evaluation_reports_the_threshold_itself_with_intervals(
    site: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, data = site
    calibrate_bundle(bundle, data, target_sensitivity=0.9)
    threshold = read_manifest(bundle).threshold
    assert threshold is not None
    result = evaluate_bundle(bundle, data, tmp_path, n_boot=20)
    assert result["threshold"]["value"] == threshold["threshold"]
    assert threshold["threshold"] in [row["threshold"] for row in result["threshold_table"]]
    cm = result["threshold"]["confusion"]
    assert result["threshold"]["sensitivity_ci95"] == list(
        wilson_interval(cm["tp"], cm["tp"] + cm["fn"])
    )
    spread = result["logit_distribution"]
    assert spread["normal"]["n"] + spread["pneumonia"]["n"] == result["cases"]["n"]
    values = spread["pneumonia"]["values"]
    assert values == sorted(values) and len(values) == len(spread["quantiles"])


def test_the_logit_distribution_counts_saturated_logits() -> None:
    logits = np.array([-12.0, -1.0, 0.5, 3.0, 6.0, 11.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    d = logit_distribution(logits, labels)
    assert d["normal"]["values"][0] == -12.0 and d["normal"]["values"][-1] == 0.5
    assert d["normal"]["beyond_10"] == pytest.approx(1 / 3)
    assert d["pneumonia"]["beyond_5"] == pytest.approx(2 / 3)
    assert logit_distribution(logits[:3], labels[:3])["pneumonia"] is None


def test_the_development_folder_without_its_split_is_refused_not_taken_for_new_cases(
    site: tuple[Path, Path], tmp_path: Path
) -> None:
    """A bundle copied without splits.json, calibrated on the folder it was trained on.

    Taken for new cases, its training images would be half the calibration cases and
    half the report; the counts of each class give the folder away.
    """
    _, data = site
    torch.manual_seed(0)
    counts = {"train": {"NORMAL": 16, "PNEUMONIA": 16}, "report": {"NORMAL": 8, "PNEUMONIA": 8}}

    def bundle_with(counts: dict[str, dict[str, int]], path: Path) -> Path:
        return _tiny_bundle(path, {"data_root_name": data.name, "counts": counts})

    copied = bundle_with(counts, tmp_path / "copied")
    with pytest.raises(DatasetError, match=r"stores no splits\.json"):
        calibrate_bundle(copied, data, target_sensitivity=0.9)
    assert read_manifest(copied).calibration is None
    other = {"train": {"NORMAL": 40, "PNEUMONIA": 16}}
    elsewhere = bundle_with(other, tmp_path / "elsewhere")
    assert calibrate_bundle(elsewhere, data, target_sensitivity=0.9).source == "new cases"
