"""Outputs made from hostile sources stay valid: dciodvfy (dicom3tools) is the peer.

A source whose patient or study attributes break their VR's rules (too long, a
character the VR forbids, more values than the attribute takes, a date that is no
date) must still give a Secondary Capture and an SR that dciodvfy finds no error in.
The offending attribute is left out of the outputs (empty, when it is type 2); it is
never cut down to something that fits, since a shortened Patient ID or Accession
Number names someone else.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from chestaid.dicom_outputs import (
    NotAssessedFinding,
    OutputIdentity,
    TriageFinding,
    not_assessed_report,
    not_assessed_secondary_capture,
    secondary_capture,
    structured_report,
)
from chestaid.imaging import read_dicom_dataset, read_image
from tests.dicom_factory import make_dx, require_tool

pytestmark = pytest.mark.integration

SCORED = TriageFinding(0.91, 0.42, True, "URGENT", "densenet121-test-1.0", 2)
NOT_ASSESSED = NotAssessedFinding(
    "featureless", "The image is blank or almost uniform.", "densenet121-test-1.0", 2
)
# (keyword, value as written to the file): each breaks the rules of the attribute's VR.
HOSTILE: dict[str, tuple[str, str]] = {
    "patient-name-84-characters": ("PatientName", "A" * 84),
    "patient-name-long-component": ("PatientName", "Doe^" + "J" * 70),
    "patient-name-two-values": ("PatientName", "Doe^John\\Roe^Richard"),
    "patient-name-control-character": ("PatientName", "Doe^John\x07"),
    "patient-id-70-characters": ("PatientID", "P" * 70),
    "patient-id-two-values": ("PatientID", "12345\\67890"),
    "patient-id-line-break": ("PatientID", "12345\n67890"),
    "accession-number-30-characters": ("AccessionNumber", "ACC" * 10),
    "study-id-20-characters": ("StudyID", "S" * 20),
    "referring-physician-100-characters": ("ReferringPhysicianName", "R" * 100),
    "study-description-80-characters": ("StudyDescription", "D" * 80),
    "study-description-line-break": ("StudyDescription", "Chest PA\r\nand lateral"),
    "study-date-iso": ("StudyDate", "2024-01-31"),
    "study-date-no-such-day": ("StudyDate", "20241399"),
    "birth-date-letters": ("PatientBirthDate", "19xx0101"),
    "study-time-hour-25": ("StudyTime", "256199"),
    "study-time-colons": ("StudyTime", "12:30:00"),
    "series-date-words": ("SeriesDate", "yesterday"),
    "acquisition-datetime-words": ("AcquisitionDateTime", "last tuesday"),
    "institution-name-100-characters": ("InstitutionName", "I" * 100),
    "patient-sex-word": ("PatientSex", "female"),
    "patient-age-words": ("PatientAge", "forty years"),
}
Builder = Callable[[Dataset, Path], Dataset]


def _identity() -> OutputIdentity:
    return OutputIdentity(str(generate_uid()), str(generate_uid()), 9901)


def _sc(source: Dataset, path: Path) -> Dataset:
    cam = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    grey = read_image(path).pixels
    return secondary_capture(source, grey, cam, SCORED, _identity(), max_side=256)


def _not_assessed_sc(source: Dataset, path: Path) -> Dataset:
    grey = read_image(path).pixels
    return not_assessed_secondary_capture(source, grey, NOT_ASSESSED, _identity(), max_side=256)


BUILDERS: dict[str, tuple[Builder, str]] = {
    "sc": (_sc, "SCImage"),
    "sr": (lambda source, _: structured_report(source, SCORED, _identity()), "ComprehensiveSR"),
    "not-assessed-sc": (_not_assessed_sc, "SCImage"),
    "not-assessed-sr": (
        lambda source, _: not_assessed_report(source, NOT_ASSESSED, _identity()),
        "ComprehensiveSR",
    ),
}


def dciodvfy_errors(path: Path, iod: str) -> list[str]:
    """dciodvfy's errors on one file (it must recognise the file as ``iod``)."""
    tool = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert iod in lines, f"dciodvfy did not recognise {path.name} as {iod}: {lines}"
    return [line for line in lines if "Error" in line or line.startswith("Abort")]


def hostile_source(tmp_path: Path, keyword: str, value: str) -> Path:
    """A radiograph whose ``keyword`` holds ``value`` as written, unchecked."""
    ds = make_dx(rows=200, cols=160)
    tag = tag_for_keyword(keyword)
    assert tag is not None
    ds[tag] = DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE)
    path = tmp_path / "source.dcm"
    with config.disable_value_validation():
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize("case", HOSTILE)
def test_outputs_of_a_hostile_source_pass_dciodvfy_without_the_bad_value(
    tmp_path: Path, case: str, kind: str
) -> None:
    keyword, value = HOSTILE[case]
    source_path = hostile_source(tmp_path, keyword, value)
    source = read_dicom_dataset(source_path)
    build, iod = BUILDERS[kind]
    with config.disable_value_validation():
        out = build(source, source_path)
    out_path = tmp_path / "out.dcm"
    out.save_as(out_path, enforce_file_format=True)
    assert dciodvfy_errors(out_path, iod) == []
    # Left out or empty: never the bad value, nor a shortened one that fits.
    assert str(out.get(keyword, "") or "") == "", f"{keyword} copied as {out[keyword].value!r}"
    assert out.StudyInstanceUID == source.StudyInstanceUID


@pytest.mark.parametrize("kind", BUILDERS)
def test_values_at_the_limits_of_their_vr_are_copied_as_they_are(tmp_path: Path, kind: str) -> None:
    limits = {
        "PatientName": "D" * 31 + "^" + "J" * 32,
        "PatientID": "P" * 64,
        "AccessionNumber": "A" * 16,
        "StudyID": "S" * 16,
        "ReferringPhysicianName": "R" * 64,
        "StudyDate": "20240131",
        "StudyTime": "235959.999999",
        "PatientBirthDate": "19700101",
    }
    source_path = tmp_path / "source.dcm"
    make_dx(source_path, rows=200, cols=160, **limits)
    source = read_dicom_dataset(source_path)
    build, iod = BUILDERS[kind]
    out = build(source, source_path)
    out_path = tmp_path / "out.dcm"
    out.save_as(out_path, enforce_file_format=True)
    assert dciodvfy_errors(out_path, iod) == []
    for keyword, value in limits.items():
        assert str(out[keyword].value) == value, keyword
