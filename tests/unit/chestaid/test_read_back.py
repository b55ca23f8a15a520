"""An SR read back states exactly what was written into it (for deliveries that are not DICOM)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from chestaid.dicom_outputs import (
    NotAssessedFinding,
    OutputIdentity,
    TriageFinding,
    not_assessed_report,
    secondary_capture,
    structured_report,
)
from chestaid.dicom_outputs.read_back import read_triage_report
from chestaid.errors import OutputError
from chestaid.imaging import dataset_to_grey
from tests.dicom_factory import make_dx

FINDING = TriageFinding(
    score=0.8734,
    threshold=0.42,
    above_threshold=True,
    priority="URGENT",
    model_version="densenet121-test-1.0",
    calibration_version=3,
)


def _identity() -> OutputIdentity:
    return OutputIdentity(str(generate_uid()), str(generate_uid()), 9902)


def _written(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture
def source() -> Dataset:
    return make_dx(
        rows=64,
        cols=64,
        AccessionNumber="ACC-0042",
        PatientID="P-7",
        IssuerOfPatientID="HOSP",
        PatientName="Doe^Jane",
    )


@pytest.mark.parametrize(
    "finding",
    [FINDING, TriageFinding(0.1, 0.42, False, "ROUTINE", "densenet121-test-1.0", 4)],
)
def test_a_scored_report_reads_back_as_written(source: Dataset, finding: TriageFinding) -> None:
    identity = _identity()
    read = read_triage_report(_written(structured_report(source, finding, identity)))
    assert read.study_instance_uid == source.StudyInstanceUID
    assert read.image_sop_instance_uid == source.SOPInstanceUID
    assert read.report_sop_instance_uid == identity.sop_instance_uid
    assert (read.accession_number, read.patient_id, read.issuer_of_patient_id) == (
        "ACC-0042",
        "P-7",
        "HOSP",
    )
    assert read.patient_name == "Doe^Jane"
    assert read.score == pytest.approx(finding.score)
    assert read.suspected is finding.above_threshold
    assert read.band == finding.priority
    assert read.not_assessable_reason is None
    assert (read.algorithm_name, read.algorithm_version) == ("ChestAid", finding.model_version)
    assert read.calibration_version == finding.calibration_version
    assert len(read.content_datetime) == 14 and read.content_datetime.isdigit()


def test_a_not_assessed_report_has_no_score_no_flag_and_no_band(source: Dataset) -> None:
    finding = NotAssessedFinding("noise", "No image structure.", "densenet121-test-1.0", 2)
    read = read_triage_report(_written(not_assessed_report(source, finding, _identity())))
    assert (read.score, read.suspected, read.band) == (None, None, None)
    assert read.not_assessable_reason == "noise"
    assert read.calibration_version == 2


def test_another_object_is_refused(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    sc = secondary_capture(source, grey, np.zeros_like(grey), FINDING, _identity(), max_side=64)
    with pytest.raises(OutputError, match="lacks"):
        read_triage_report(_written(sc))
    foreign = _written(structured_report(source, FINDING, _identity()))
    foreign.Manufacturer = "Someone Else"
    with pytest.raises(OutputError, match="Manufacturer"):
        read_triage_report(foreign)


def test_an_nclass_report_reads_back_its_class_probabilities(source: Dataset) -> None:
    classes = (("Normal", 0.2), ("BACTERIAL", 0.45), ("VIRAL", 0.25), ("SARS-CoV-2 pneumonia", 0.1))
    finding = dataclasses.replace(FINDING, class_probabilities=classes)
    said = read_triage_report(_written(structured_report(source, finding, _identity())))
    assert [name for name, _ in said.class_probabilities] == [name for name, _ in classes]
    assert [p for _, p in said.class_probabilities] == pytest.approx([p for _, p in classes])
    assert said.score == pytest.approx(0.8734)


def test_a_binary_report_reads_back_no_class_probabilities(source: Dataset) -> None:
    said = read_triage_report(_written(structured_report(source, FINDING, _identity())))
    assert said.class_probabilities == ()
