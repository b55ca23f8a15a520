"""The N-class layout, N-class training and ``chestaid compare`` on small synthetic sets."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chestaid.bundle import load_bundle, read_splits
from chestaid.cli import main
from chestaid.comparison import macro_roc_auc, plan_runs
from chestaid.errors import ConfigurationError, DatasetError
from chestaid.findings_data import build_layout
from chestaid.runtimes.cpu import cpu_name
from chestaid.training.config import EpochRecord
from chestaid.training.loop import TrainConfig, _out_of_time, planned_epochs, train
from chestaid.training.step import validation_figures
from tests.synthetic_data import chest_like


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels * 255).astype(np.uint8)).save(path)


def _sources(root: Path, *, patients: int = 8, size: int = 40) -> tuple[Path, Path]:
    """A pediatric set (normal, bacterial, viral) and an adult COVID-19 set with metadata."""
    rng = np.random.default_rng(0)
    pediatric, adult = root / "pediatric", root / "adult"
    for p in range(patients):
        _save(pediatric / "train/NORMAL" / f"IM-{p:04d}-0001.png", chest_like(rng, size, False))
        for kind in ("bacteria", "virus"):
            image = chest_like(rng, size, True)
            if kind == "virus":
                image = np.clip(image[::-1] * 0.8, 0, 1)  # something to tell the kinds apart
            _save(pediatric / "train/PNEUMONIA" / f"person{p}_{kind}_{p}.png", image)
    rows = []
    for p in range(patients):
        for i in range(2):
            image_id = f"c{p:02d}{i}"
            _save(
                adult / "images" / f"{image_id}.png",
                np.clip(chest_like(rng, size, True) + 0.2, 0, 1),
            )
            rows.append({"patient_id": f"p{p:02d}", "image_id": image_id, "modality": "CR"})
    adult.mkdir(parents=True, exist_ok=True)
    with (adult / "metadata.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["patient_id", "image_id", "modality"])
        writer.writeheader()
        writer.writerows(rows)
    return pediatric, adult


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("findings")
    pediatric, adult = _sources(root)
    build_layout(pediatric, adult, root / "four")
    return root / "four"


def test_the_layout_links_each_class_and_keys_every_image_to_its_patient(layout: Path) -> None:
    summary = json.loads((layout / "layout.json").read_text())
    assert summary["classes"] == ["NORMAL", "BACTERIAL", "VIRAL", "COVID-19"]
    assert summary["images"] == {"NORMAL": 8, "BACTERIAL": 8, "VIRAL": 8, "COVID-19": 16}
    assert summary["patients"]["COVID-19"] == 8
    assert summary["sources"]["COVID-19"] == ["adult-covid"]
    assert summary["patients_in_two_classes"] == 8  # personN has both kinds here
    assert (layout / "VIRAL" / "person3_virus_3.png").is_symlink()
    with (layout / "patients.csv").open() as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    assert rows["COVID-19/c031.png"]["patient"] == "adult-p03"
    assert rows["BACTERIAL/person2_bacteria_2.png"]["patient"] == "person2"


def test_the_layout_refuses_what_it_cannot_key(tmp_path: Path) -> None:
    pediatric, adult = _sources(tmp_path, patients=2)
    _save(pediatric / "train/PNEUMONIA" / "person9_other_1.png", np.zeros((8, 8)))
    with pytest.raises(DatasetError, match="bacteria"):
        build_layout(pediatric, adult, tmp_path / "out")
    (pediatric / "train/PNEUMONIA" / "person9_other_1.png").unlink()
    _save(adult / "images" / "stray.png", np.zeros((8, 8)))
    with pytest.raises(DatasetError, match="no metadata row"):
        build_layout(pediatric, adult, tmp_path / "out")


def test_three_classes_leave_bacterial_pneumonia_out(tmp_path: Path) -> None:
    pediatric, adult = _sources(tmp_path, patients=2)
    summary = build_layout(
        pediatric, adult, tmp_path / "three", classes=("NORMAL", "VIRAL", "COVID-19")
    )
    assert set(summary["images"]) == {"NORMAL", "VIRAL", "COVID-19"}
    assert not (tmp_path / "three" / "BACTERIAL").exists()


def test_validation_figures_for_one_and_several_logits() -> None:
    auc, loss, accuracy = validation_figures(
        np.array([-2.0, 2.0, 1.0, -1.0]), np.array([0, 1, 0, 1])
    )
    assert auc == pytest.approx(0.75) and accuracy == pytest.approx(0.5)
    assert loss == pytest.approx(np.mean(np.log1p(np.exp([-2.0, -2.0, 1.0, 1.0]))))
    z = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    auc, loss, accuracy = validation_figures(z, np.array([0, 1, 2, 1]))
    assert accuracy == pytest.approx(0.75)
    assert loss > 0 and 0.5 < auc < 1.0


def test_comparison_figures_on_hand_checked_cases() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 1, 1, 1, 2, 0])
    assert macro_roc_auc(np.eye(3)[predicted], labels) == pytest.approx((0.625 + 0.875 + 0.75) / 3)
    assert macro_roc_auc(np.eye(3)[labels] * 0.7 + 0.1, labels) == pytest.approx(1.0)
    with pytest.raises(ConfigurationError, match="unknown backbones"):
        plan_runs(["alexnet"], ["patient"])
    assert [p.name for p in plan_runs(["small_cnn"], ["image", "patient"])] == [
        "small_cnn-by-image",
        "small_cnn",
    ]


def test_a_time_budget_stops_before_an_epoch_that_would_pass_it() -> None:
    history = [EpochRecord(1, 1.0, 0.5, 1e-3, 50.0), EpochRecord(2, 1.0, 0.5, 1e-3, 50.0)]
    assert not _out_of_time(history, None)
    assert not _out_of_time(history, 2.6)  # 100 s spent, 50 more fit in 156 s
    assert _out_of_time(history, 2.4)
    # Time on the run's own cores counts, not the wall clock of a busy machine.
    busy = [EpochRecord(1, 1.0, 0.5, 1e-3, 500.0, core_seconds=50.0)]
    assert not _out_of_time(busy, 2.0)
    # The schedule is fitted to the epochs the first shows will fit.
    assert planned_epochs(busy[0], 8, 2.0) == 2
    assert planned_epochs(busy[0], 8, 60.0) == 8
    assert planned_epochs(busy[0], 8, 0.1) == 1


def test_n_class_training_writes_a_bundle_of_n_logits(layout: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        architecture="small_cnn",
        classes=("NORMAL", "BACTERIAL", "VIRAL", "COVID-19"),
        input_size=32,
        epochs=2,
        batch_size=8,
        max_steps_per_epoch=2,
        label_smoothing=0.1,
        fractions={"train": 0.5, "validation": 0.2, "calibration": 0.1, "report": 0.2},
    )
    result = train(
        layout, tmp_path / "b", config, patient_csv=layout / "patients.csv", progress=False
    )
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest.num_outputs == 4 and bundle.model.classifier.out_features == 4
    last = result.history[-1]
    assert (
        last.val_loss is not None
        and last.val_accuracy is not None
        and last.train_accuracy is not None
    )
    parts = read_splits(tmp_path / "b")
    assert parts is not None
    # By patient: no patient in two parts, though personN has two classes here.
    owners: dict[str, str] = {}
    for name, items in parts["parts"].items():
        for _, _, patient in items:
            assert owners.setdefault(patient, name) == name


def test_mixup_is_refused_for_several_classes(layout: Path, tmp_path: Path) -> None:
    config = TrainConfig(classes=("NORMAL", "BACTERIAL", "VIRAL", "COVID-19"), mixup_alpha=0.2)
    with pytest.raises(ConfigurationError, match="mixup"):
        train(layout, tmp_path / "b", config, patient_csv=layout / "patients.csv", progress=False)


def test_compare_trains_judges_and_resumes_without_training_again(
    layout: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "compare",
        str(layout),
        "--out",
        str(tmp_path / "cmp"),
        "--backbones",
        "small_cnn",
        "--splits",
        "image,patient",
        "--input-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-steps-per-epoch",
        "2",
        "--no-progress",
    ]
    assert main(args) == 0
    table = (tmp_path / "cmp" / "comparison.md").read_text()
    for column in ("val loss", "test accuracy", "macro ROC-AUC", "F1 COVID-19", "inference ms"):
        assert column in table
    assert "| small_cnn-by-image | image |" in table and "| small_cnn | patient |" in table
    run = tmp_path / "cmp" / "runs" / "small_cnn"
    assert (run / "confusion.png").stat().st_size > 1000
    result = json.loads((run / "result.json").read_text())
    assert np.sum(result["confusion"]) == result["report_images"]
    # The table says what the runs were trained in and on, and where they were timed.
    assert result["train_precision"] in ("float32", "bfloat16")
    assert result["cpu"] == result["train_processor"] == cpu_name()
    assert f"median of 20 passes on {cpu_name()}." in table
    assert f"Training ran in {result['train_precision']} on {cpu_name()}." in table
    weights = run / "weights.safetensors"
    before = weights.stat().st_mtime_ns
    assert main(args) == 0
    assert weights.stat().st_mtime_ns == before
    assert "small_cnn: test accuracy" in capsys.readouterr().out
