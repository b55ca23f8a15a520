"""Data folders, patient keys and patient-level splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from chestaid.data import (
    discover,
    fingerprint,
    patient_from_filename,
    split_by_patient,
    splits_from_json,
    splits_to_json,
)
from chestaid.errors import DatasetError
from tests.synthetic_data import make_image_folder


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1234_bacteria_5678.jpeg", "person1234"),
        ("person7_virus_12.jpeg", "person7"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("scan_42.png", "scan_42"),
    ],
)
def test_patient_keys_from_file_names(name: str, patient: str) -> None:
    assert patient_from_filename(name) == patient


def test_discover_finds_classes_under_train(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=3, images_per_patient=2)
    base, examples = discover(tmp_path)
    assert base == tmp_path / "train"
    assert len(examples) == 12
    assert {e.label for e in examples} == {0, 1}
    assert all(e.relpath.startswith(("NORMAL/", "PNEUMONIA/")) for e in examples)


def test_missing_class_folder_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "NORMAL").mkdir()
    with pytest.raises(DatasetError, match="PNEUMONIA"):
        discover(tmp_path)


def test_split_never_puts_a_patient_in_two_parts(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=30, images_per_patient=3)
    _, examples = discover(tmp_path)
    parts = split_by_patient(examples, seed=4)
    owner: dict[str, str] = {}
    for name, items in parts.items():
        for e in items:
            assert owner.setdefault(e.patient, name) == name, f"{e.patient} in two splits"
    assert sum(len(v) for v in parts.values()) == len(examples)
    assert len(parts["train"]) > len(parts["report"]) > 0
    for items in parts.values():
        assert {e.label for e in items} == {0, 1}, "every part has both classes"


def test_split_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=30, images_per_patient=1)
    _, examples = discover(tmp_path)
    a = split_by_patient(examples, seed=1)
    b = split_by_patient(examples, seed=1)
    c = split_by_patient(examples, seed=2)
    assert a == b
    assert a != c


def test_patient_csv_overrides_file_names(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=2, images_per_patient=2)
    _, examples = discover(tmp_path)
    csv = tmp_path / "patients.csv"
    csv.write_text(
        "file,patient\n" + "".join(f"{e.relpath},P{i // 4}\n" for i, e in enumerate(examples))
    )
    _, keyed = discover(tmp_path, patient_csv=csv)
    assert {e.patient for e in keyed} == {"P0", "P1"}
    csv.write_text("file,patient\nNORMAL/none.png,P0\n")
    with pytest.raises(DatasetError, match="no row"):
        discover(tmp_path, patient_csv=csv)


def test_bad_fractions_are_refused(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=3, images_per_patient=1)
    _, examples = discover(tmp_path)
    with pytest.raises(DatasetError, match="sum to 1"):
        split_by_patient(examples, fractions={"train": 0.5, "report": 0.2})
    with pytest.raises(DatasetError, match="no images of some class"):
        split_by_patient(examples, fractions={"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25})


def test_fingerprint_changes_with_content_and_splits_round_trip(tmp_path: Path) -> None:
    make_image_folder(tmp_path, patients_per_class=4, images_per_patient=1)
    base, examples = discover(tmp_path)
    before = fingerprint(base, examples)
    assert fingerprint(base, list(reversed(examples))) == before
    (base / examples[0].relpath).write_bytes(b"changed")
    assert fingerprint(base, examples) != before
    parts = split_by_patient(examples, fractions={"calibration": 0.5, "report": 0.5})
    assert splits_from_json(splits_to_json(parts, ["NORMAL", "PNEUMONIA"], 0)) == parts
