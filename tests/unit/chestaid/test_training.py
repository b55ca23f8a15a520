"""The training loop: deterministic with a seed, resumable, and refusing a foreign checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

import chestaid.training.loop as loop
from chestaid.bundle import load_bundle, read_splits
from chestaid.errors import ConfigurationError, TrainingError
from chestaid.training.loop import CHECKPOINT_DIR, CHECKPOINT_NAME, TrainConfig, train
from tests.synthetic_data import make_image_folder

CONFIG = TrainConfig(
    architecture="densenet121",
    input_size=32,
    epochs=2,
    batch_size=4,
    max_steps_per_epoch=2,
    patience=5,
    eval_batch_size=16,
    seed=3,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(
        tmp_path_factory.mktemp("data"), patients_per_class=20, images_per_patient=1, size=48
    )


def test_training_writes_an_uncalibrated_bundle_with_its_split(
    data_dir: Path, tmp_path: Path
) -> None:
    result = train(data_dir, tmp_path / "b", CONFIG, progress=False)
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.best_epoch in (1, 2)
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest.architecture == "densenet121"
    assert bundle.manifest.preprocessing.input_size == 32
    assert not bundle.manifest.is_calibrated
    assert set(bundle.manifest.data_fingerprint["splits"]) == {
        "train",
        "validation",
        "calibration",
        "report",
    }
    assert bundle.manifest.training["config"]["seed"] == 3
    splits = read_splits(tmp_path / "b")
    assert splits is not None
    assert sum(len(v) for v in splits["parts"].values()) == 40
    assert not (tmp_path / "b" / CHECKPOINT_DIR).exists(), "a finished run leaves no checkpoint"


def test_same_seed_same_weights_and_other_seed_other_weights(
    data_dir: Path, tmp_path: Path
) -> None:
    a = train(data_dir, tmp_path / "a", CONFIG, progress=False)
    b = train(data_dir, tmp_path / "b", CONFIG, progress=False)
    c = train(
        data_dir, tmp_path / "c", TrainConfig(**{**CONFIG.__dict__, "seed": 4}), progress=False
    )
    assert a.manifest.weights["sha256"] == b.manifest.weights["sha256"]
    assert a.manifest.weights["sha256"] != c.manifest.weights["sha256"]


def test_an_interrupted_run_resumes_to_the_same_model(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = train(data_dir, tmp_path / "ref", CONFIG, progress=False)
    calls = {"n": 0}
    real = loop.collect_outputs

    def interrupt_in_second_epoch(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "collect_outputs", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, tmp_path / "run", CONFIG, progress=False)
    assert (tmp_path / "run" / CHECKPOINT_DIR / CHECKPOINT_NAME).is_file()
    monkeypatch.setattr(loop, "collect_outputs", real)
    resumed = train(data_dir, tmp_path / "run", CONFIG, progress=False)
    assert [h.epoch for h in resumed.history] == [1, 2]
    # The epoch trained after the resume draws exactly what the uninterrupted run drew.
    assert [(h.train_loss, h.val_auc) for h in resumed.history] == [
        (h.train_loss, h.val_auc) for h in reference.history
    ]
    assert resumed.manifest.weights["sha256"] == reference.manifest.weights["sha256"]


def test_an_unreadable_checkpoint_is_a_clear_error(data_dir: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "run" / CHECKPOINT_DIR / CHECKPOINT_NAME
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="delete it"):
        train(data_dir, tmp_path / "run", CONFIG, progress=False)


def test_a_checkpoint_of_other_settings_is_refused(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop.collect_outputs
    calls = {"n": 0}

    def stop(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "collect_outputs", stop)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, tmp_path / "run", CONFIG, progress=False)
    monkeypatch.setattr(loop, "collect_outputs", real)
    other = TrainConfig(**{**CONFIG.__dict__, "learning_rate": 0.5})
    with pytest.raises(TrainingError, match="other settings"):
        train(data_dir, tmp_path / "run", other, progress=False)


def test_bad_precision_is_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="precision"):
        train(
            data_dir,
            tmp_path / "x",
            TrainConfig(**{**CONFIG.__dict__, "precision": "fp8"}),
            progress=False,
        )
