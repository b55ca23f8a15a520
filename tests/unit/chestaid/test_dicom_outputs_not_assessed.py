"""The outputs of an image ChestAid did not assess, and of one turned upright before scoring."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid

from chestaid.dicom_outputs import (
    DISCLAIMER,
    NotAssessedFinding,
    OutputIdentity,
    TriageFinding,
    not_assessed_image,
    not_assessed_report,
    not_assessed_secondary_capture,
    not_assessed_text,
    secondary_capture,
    structured_report,
    triage_image,
)
from chestaid.errors import OutputError
from chestaid.imaging import dataset_to_grey
from tests.dicom_factory import make_dx

NOISE = NotAssessedFinding(
    reason="noise",
    detail="No image structure at the scale of anatomy.",
    model_version="densenet121-test-1.0",
    calibration_version=3,
)
TURNED = TriageFinding(
    score=0.87,
    threshold=0.42,
    above_threshold=True,
    priority="URGENT",
    model_version="densenet121-test-1.0",
    calibration_version=3,
    quarter_turns=1,
)
PRESENT, ABSENT, UNDETERMINED = "52101004", "272519000", "121059"
YES, NO, PNEUMONIA, CERTAINTY = "373066001", "373067005", "233604007", "111012"
SUSPECTED = "PNEUMONIA-SUSP"  # 99CHESTAID: Pneumonia suspected by triage algorithm


def _identity() -> OutputIdentity:
    return OutputIdentity(str(generate_uid()), str(generate_uid()), 9901)


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _items(ds: Dataset) -> list[Dataset]:
    found = []
    for item in ds.get("ContentSequence", []):
        found.append(item)
        found.extend(_items(item))
    return found


def _named(ds: Dataset, code_value: str) -> list[Dataset]:
    return [i for i in _items(ds) if i.ConceptNameCodeSequence[0].CodeValue == code_value]


@pytest.fixture
def source() -> Dataset:
    return make_dx(rows=120, cols=96, Manufacturer="Acme Imaging")


def test_the_burned_in_text_says_not_assessed_why_and_who_reads_it_and_no_score() -> None:
    lines = not_assessed_text(NOISE)
    assert lines[0] == (
        "NOT ASSESSED BY CHESTAID: No image structure at the scale of anatomy - "
        "read by a radiologist"
    )
    text = "\n".join(lines)
    assert "Reason: noise" in text and "calibration v3" in text and f"{DISCLAIMER}." in text
    for absent in ("Score", "score", "threshold", "URGENT", "ROUTINE"):
        assert absent not in text


def test_the_not_assessed_sc_shows_the_image_without_a_heat_map(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    ds = _roundtrip(not_assessed_secondary_capture(source, grey, NOISE, _identity(), max_side=256))
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.BurnedInAnnotation == "YES" and "NOT assessed" in ds.SeriesDescription
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert "no score or heat map" in ds.DerivationDescription
    expected = not_assessed_image(grey, NOISE, max_side=256)
    np.testing.assert_array_equal(ds.pixel_array, expected.pixels)
    picture = expected.pixels[: expected.image_rows].astype(int)
    # Grey: no colour map anywhere on the image.
    assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    band = expected.pixels[expected.image_rows :]
    assert (band == (128, 0, 0)).all(axis=-1).mean() > 0.5, "a dark red band"
    assert (band > 200).all(axis=-1).sum() > 100, "holding light text"


def test_the_not_assessed_sr_gives_no_score_and_no_present_or_absent(source: Dataset) -> None:
    ds = _roundtrip(not_assessed_report(source, NOISE, _identity()))
    assert ds.SOPClassUID == ComprehensiveSRStorage
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert [i for i in _items(ds) if i.ValueType == "NUM"] == []
    (flag,) = _named(ds, SUSPECTED)
    code = flag.ConceptCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == (UNDETERMINED, "DCM")
    codes = {i.ConceptCodeSequence[0].CodeValue for i in _items(ds) if i.ValueType == "CODE"}
    assert not codes & {PRESENT, ABSENT, YES, NO}
    assert _named(ds, PNEUMONIA) == [] and _named(ds, CERTAINTY) == []
    (comment,) = _named(ds, "121106")
    assert comment.TextValue.startswith(
        "Not assessable: noise: No image structure at the scale of anatomy."
    )
    assert "read by a radiologist" in comment.TextValue and DISCLAIMER in comment.TextValue
    parameters = " ".join(i.TextValue for i in _named(ds, "111002"))
    assert "not assessable: noise" in parameters and "threshold" not in parameters
    images = [i for i in _items(ds) if i.ValueType == "IMAGE"]
    assert images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_an_unknown_reason_or_turn_is_refused(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    unknown = NotAssessedFinding("blurry", "x", "m", 1)
    with pytest.raises(OutputError, match="blurry"):
        not_assessed_report(source, unknown, _identity())
    with pytest.raises(OutputError, match="blurry"):
        not_assessed_secondary_capture(source, grey, unknown, _identity())
    with pytest.raises(OutputError, match="quarter_turns"):
        structured_report(source, TriageFinding(0.9, 0.4, True, "URGENT", "m", 1, 4), _identity())


def test_an_image_turned_upright_is_said_to_be_so_in_both_outputs(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    cam = np.zeros((7, 7), dtype=np.float32)
    as_received = triage_image(grey, cam, TURNED, max_side=256)
    upright_already = triage_image(
        grey,
        cam,
        TriageFinding(0.87, 0.42, True, "URGENT", "densenet121-test-1.0", 3),
        max_side=256,
    )
    assert as_received.band_rows > upright_already.band_rows  # one more line of text

    sc = secondary_capture(source, grey, cam, TURNED, _identity(), max_side=256)
    assert "Scored after turning upright by 1 x 90 degrees" in sc.DerivationDescription
    sr = _roundtrip(structured_report(source, TURNED, _identity()))
    comments = [i.TextValue for i in _named(sr, "121106")]
    assert any(c.startswith("Scored after turning upright by 1 x 90 degrees") for c in comments)
    (flag,) = _named(sr, SUSPECTED)
    assert flag.ConceptCodeSequence[0].CodeValue == YES  # scored as usual
