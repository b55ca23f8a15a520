"""``chestaid audit`` end to end on tiny generated data and a tiny random 4-class bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from chestaid import cli
from chestaid.audit.variants import VARIANTS
from chestaid.bundle import Manifest, save_bundle
from chestaid.data import discover, split_by_patient, splits_to_json
from chestaid.models import build_model
from chestaid.preprocess import PreprocessSpec
from tests.synthetic_data import make_image_folder
from tests.synthetic_sources import FOUR_CLASSES, make_adult_folder, make_four_class_folder


def _bundle(path: Path, data: Path, *, with_splits: bool) -> Path:
    torch.manual_seed(0)
    model = build_model("densenet121", num_outputs=len(FOUR_CLASSES)).eval()
    manifest = Manifest(
        version="test",
        architecture="densenet121",
        classes=FOUR_CLASSES,
        preprocessing=PreprocessSpec(input_size=64),
    )
    splits = None
    if with_splits:
        _, examples = discover(data, classes=FOUR_CLASSES, patient_csv=data / "patients.csv")
        splits = splits_to_json(split_by_patient(examples), FOUR_CLASSES, 0)
    save_bundle(path, model, manifest, half_precision=False, splits=splits)
    return path


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    pediatric = make_image_folder(tmp_path / "ped", patients_per_class=3, size=48)
    return pediatric, make_adult_folder(tmp_path / "adult")


def test_audit_of_sources_and_bundle_writes_json_markdown_and_masks(
    tmp_path: Path, sources: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_four_class_folder(tmp_path / "four")
    bundle = _bundle(tmp_path / "bundle", data, with_splits=False)
    out = tmp_path / "out"
    status = cli.main(
        [
            "audit",
            "--pediatric", str(sources[0]),
            "--adult-covid", str(sources[1]),
            "--bundle", str(bundle),
            "--data", str(data),
            "--out", str(out),
            "--size", "32",
            "--bootstrap", "50",
        ]
    )  # fmt: skip
    assert status == 0
    record = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    a = record["source_detectability"]
    assert [r["region"] for r in a["regions"]] == [
        "whole_image",
        "lung_fields_masked",
        "border_only",
    ]
    assert sum(a["images"].values()) == 12 + 12
    border = next(r for r in a["regions"] if r["region"] == "border_only")
    assert border["roc_auc"] > 0.9, "the adult images' corner marker is in the border"
    m = record["model"]
    assert m["cases"].startswith("all images")
    assert set(m["masked"]) == set(VARIANTS)
    assert all(v["n"] == 16 for v in m["masked"].values())
    covid = m["cam_outside_lung_prior"]["by_true_class"]["COVID-19"]["predicted_class_cam"]
    assert covid["n"] == 4
    if covid["mean"] is not None:
        assert 0.0 <= covid["q25"] <= covid["median"] <= covid["q75"] <= 1.0
    assert m["text_marks_found"]["COVID-19"]["with_marks"] == 4, "every marker is found"
    assert m["text_marks_found"]["NORMAL"]["with_marks"] == 0
    report = (out / "audit.md").read_text(encoding="utf-8")
    assert "lower bound" in report and "prior" in report
    last = report.rstrip().split("\n\n")[-1]
    assert "COVID-19 recall" in last and "lower bound" in last
    assert (out / "masks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "written:" in capsys.readouterr().out


def test_audit_uses_the_report_split_of_a_bundle_that_has_one(tmp_path: Path) -> None:
    data = make_four_class_folder(tmp_path / "four", patients_per_class=8)
    bundle = _bundle(tmp_path / "bundle", data, with_splits=True)
    out = tmp_path / "out"
    assert cli.main(["audit", "--bundle", str(bundle), "--data", str(data), "--out", str(out)]) == 0
    record = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    assert "source_detectability" not in record
    splits = json.loads((bundle / "splits.json").read_text(encoding="utf-8"))
    assert record["model"]["cases"].startswith("report split")
    assert record["model"]["masked"]["unmasked"]["n"] == len(splits["parts"]["report"]) < 32
    shares = record["model"]["cam_outside_lung_prior"]["by_true_class"]
    assert sum(v["true_class_cam"]["n"] for v in shares.values()) == len(splits["parts"]["report"])
    assert np.isclose(
        record["model"]["cam_outside_lung_prior"]["area_outside_lung_prior"], 1 - 0.3016, atol=0.02
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--bundle", "b"],  # no data folder
        ["--pediatric", "k"],  # one source only
        [],  # nothing to audit
    ],
)
def test_incomplete_inputs_fail_with_a_message(
    tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["audit", *args, "--out", str(tmp_path / "o")]) == 2
    assert "ConfigurationError" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_max_per_class_samples_each_class_down(tmp_path: Path) -> None:
    data = make_four_class_folder(tmp_path / "four", patients_per_class=5)
    bundle = _bundle(tmp_path / "bundle", data, with_splits=False)
    out = tmp_path / "out"
    args = ["audit", "--bundle", str(bundle), "--data", str(data), "--out", str(out)]
    assert cli.main([*args, "--max-per-class", "2"]) == 0
    record = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    recall = record["model"]["masked"]["unmasked"]["recall"]
    assert [recall[c]["n"] for c in FOUR_CLASSES] == [2, 2, 2, 2]
    assert "at most 2 images per class" in record["model"]["cases"]
