"""dciodvfy (dicom3tools) finds no error in the Secondary Capture and SR built for CR and DX,
scored (also after turning the image upright, and by an N-class model) or not assessed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
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

FINDINGS = {
    "urgent": TriageFinding(0.91, 0.42, True, "URGENT", "densenet121-test-1.0", 2),
    "routine": TriageFinding(0.08, 0.42, False, "ROUTINE", "densenet121-test-1.0", 2),
    # Saturated: score and threshold print with every digit (the longest texts).
    "saturated": TriageFinding(
        1 - 1e-13, 0.9999999999999999, False, "ROUTINE", "densenet121-test-1.0", 2
    ),
    "urgent-turned-upright": TriageFinding(
        0.91, 0.42, True, "URGENT", "densenet121-test-1.0", 2, quarter_turns=3
    ),
    # An N-class model: a probability per class, one class name long enough for a
    # Long Code Value.
    "four-classes": TriageFinding(
        0.91,
        0.42,
        True,
        "URGENT",
        "resnet50-4class-test-1",
        2,
        class_probabilities=(
            ("NORMAL", 0.09),
            ("BACTERIAL", 0.51),
            ("VIRAL", 0.3),
            ("SARS-CoV-2 pneumonia", 0.1),
        ),
    ),
}
NOT_ASSESSED = {
    "featureless": NotAssessedFinding(
        "featureless", "The image is blank or almost uniform.", "densenet121-test-1.0", 2
    ),
    "orientation": NotAssessedFinding(
        "orientation",
        "The image seems to lie on its side or upside down, and which way is not certain "
        "enough to turn it upright.",
        "densenet121-test-1.0",
        2,
    ),
    "unfamiliar-after-turning": NotAssessedFinding(
        "unfamiliar",
        "Far from every radiograph the network was developed on.",
        "densenet121-test-1.0",
        2,
        quarter_turns=1,
    ),
}
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
SOURCES: dict[str, dict[str, Any]] = {
    "cr-mono1": {"modality": "CR", "photometric": "MONOCHROME1"},
    "cr-mono2": {"modality": "CR", "photometric": "MONOCHROME2"},
    "dx-mono1": {"modality": "DX", "photometric": "MONOCHROME1"},
    "dx-mono2": {"modality": "DX", "photometric": "MONOCHROME2", "bits_stored": 16},
    "dx-with-equipment-and-orientation": {
        "modality": "DX",
        "photometric": "MONOCHROME2",
        "PatientOrientation": ["P", "F"],
        "Manufacturer": "Acme Imaging",
        "ManufacturerModelName": "DR-1",
        "StationName": "XR1",
    },
    "cr-letter-pair-orientation": {
        "modality": "CR",
        "photometric": "MONOCHROME1",
        "PatientOrientation": ["FL", "A"],
    },
}


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's report on one file, one line per message."""
    tool = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def check(path: Path, iod: str) -> None:
    lines = dciodvfy(path)
    for line in lines:
        if line.startswith("Warning"):
            print(f"{path.name}: {line}")
    assert iod in lines, f"dciodvfy did not recognise {path.name} as {iod}: {lines}"
    assert not [line for line in lines if "Error" in line or line.startswith("Abort")], lines


def build_and_write(
    tmp_path: Path, source_path: Path, finding: TriageFinding, *, max_side: int = 512
) -> tuple[Path, Path]:
    source = read_dicom_dataset(source_path)  # pixel data deferred, as the worker reads it
    grey = read_image(source_path).pixels
    cam = np.random.default_rng(1).random((7, 7)).astype(np.float32)
    sc = secondary_capture(
        source,
        grey,
        cam,
        finding,
        OutputIdentity(str(generate_uid()), str(generate_uid()), 9901),
        max_side=max_side,
    )
    sr = structured_report(
        source, finding, OutputIdentity(str(generate_uid()), str(generate_uid()), 9902)
    )
    sc_path, sr_path = tmp_path / "sc.dcm", tmp_path / "sr.dcm"
    sc.save_as(sc_path, enforce_file_format=True)
    sr.save_as(sr_path, enforce_file_format=True)
    return sc_path, sr_path


@pytest.mark.parametrize("finding", FINDINGS)
@pytest.mark.parametrize("variant", SOURCES)
def test_outputs_pass_dciodvfy(tmp_path: Path, variant: str, finding: str) -> None:
    source_path = tmp_path / "source.dcm"
    make_dx(source_path, rows=600, cols=480, **SOURCES[variant])
    sc_path, sr_path = build_and_write(tmp_path, source_path, FINDINGS[finding])
    check(sc_path, "SCImage")
    check(sr_path, "ComprehensiveSR")


@pytest.mark.parametrize("modality", ["CR", "DX"])
def test_outputs_of_a_source_without_type2_values_pass_dciodvfy(
    tmp_path: Path, modality: str
) -> None:
    # Only DICOMDIR warnings about the empty Patient ID, Study Date... are expected:
    # the values are unknown, so they stay empty.
    source = make_dx(rows=300, cols=240, modality=modality)
    for keyword in TYPE2:
        delattr(source, keyword)
    source_path = tmp_path / "source.dcm"
    source.save_as(source_path, enforce_file_format=True)
    sc_path, sr_path = build_and_write(tmp_path, source_path, FINDINGS["routine"])
    check(sc_path, "SCImage")
    check(sr_path, "ComprehensiveSR")


@pytest.mark.parametrize("finding", NOT_ASSESSED)
@pytest.mark.parametrize("variant", SOURCES)
def test_not_assessed_outputs_pass_dciodvfy(tmp_path: Path, variant: str, finding: str) -> None:
    source_path = tmp_path / "source.dcm"
    make_dx(source_path, rows=600, cols=480, **SOURCES[variant])
    source = read_dicom_dataset(source_path)
    grey = read_image(source_path).pixels
    sc = not_assessed_secondary_capture(
        source,
        grey,
        NOT_ASSESSED[finding],
        OutputIdentity(str(generate_uid()), str(generate_uid()), 9901),
        max_side=512,
    )
    sr = not_assessed_report(
        source,
        NOT_ASSESSED[finding],
        OutputIdentity(str(generate_uid()), str(generate_uid()), 9902),
    )
    sc_path, sr_path = tmp_path / "sc.dcm", tmp_path / "sr.dcm"
    sc.save_as(sc_path, enforce_file_format=True)
    sr.save_as(sr_path, enforce_file_format=True)
    check(sc_path, "SCImage")
    check(sr_path, "ComprehensiveSR")
