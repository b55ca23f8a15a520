"""The Secondary Capture and SR sent back to the PACS: what they copy, reference and state."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import (
    ComprehensiveSRStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

import chestaid
from chestaid.dicom_outputs import (
    DISCLAIMER,
    MIN_SIDE,
    OutputIdentity,
    TriageFinding,
    is_chestaid_output,
    secondary_capture,
    structured_report,
    triage_image,
    triage_text,
)
from chestaid.display import score_pair_text
from chestaid.errors import ChestAidError, ConfigurationError, OutputError
from chestaid.imaging import dataset_to_grey
from tests.dicom_factory import make_dx

ABOVE = TriageFinding(
    score=0.87,
    threshold=0.42,
    above_threshold=True,
    priority="URGENT",
    model_version="densenet121-test-1.0",
    calibration_version=3,
)
BELOW = TriageFinding(
    score=0.12,
    threshold=0.42,
    above_threshold=False,
    priority="ROUTINE",
    model_version="densenet121-test-1.0",
    calibration_version=3,
)
PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyInstanceUID",
)
Builder = Callable[[Dataset, TriageFinding, OutputIdentity], Dataset]


def _cam() -> np.ndarray:
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[2:5, 1:3] = 1.0
    return cam


def _sc(source: Dataset, finding: TriageFinding, identity: OutputIdentity) -> Dataset:
    grey = dataset_to_grey(source).pixels
    return secondary_capture(source, grey, _cam(), finding, identity, max_side=256)


BUILDERS: dict[str, Builder] = {"sc": _sc, "sr": structured_report}


def new_identity(series_number: int = 9901) -> OutputIdentity:
    return OutputIdentity(
        series_instance_uid=str(generate_uid()),
        sop_instance_uid=str(generate_uid()),
        series_number=series_number,
        instance_number=2,
    )


def content_items(ds: Dataset) -> Iterator[Dataset]:
    """Every SR content item under ``ds``, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def items_named(ds: Dataset, code_value: str) -> list[Dataset]:
    return [
        item
        for item in content_items(ds)
        if item.ConceptNameCodeSequence[0].CodeValue == code_value
    ]


def roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture
def source() -> Dataset:
    return make_dx(rows=120, cols=96, Manufacturer="Acme Imaging")


@pytest.mark.parametrize("kind", BUILDERS)
def test_outputs_join_the_source_study_in_the_given_new_series(source: Dataset, kind: str) -> None:
    identity = new_identity()
    ds = roundtrip(BUILDERS[kind](source, ABOVE, identity))
    for keyword in PATIENT_STUDY:
        assert ds[keyword].value == source[keyword].value, keyword
    assert ds.SeriesInstanceUID == identity.series_instance_uid != source.SeriesInstanceUID
    assert ds.SOPInstanceUID == identity.sop_instance_uid
    assert ds.SeriesNumber == identity.series_number
    assert ds.InstanceNumber == identity.instance_number
    assert ds.Manufacturer == "ChestAid"
    assert "not a diagnosis" in ds.SeriesDescription
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == identity.sop_instance_uid


@pytest.mark.parametrize("kind", BUILDERS)
def test_chestaid_is_named_as_processing_equipment(source: Dataset, kind: str) -> None:
    ds = BUILDERS[kind](source, ABOVE, new_identity())
    ours = [i for i in ds.ContributingEquipmentSequence if i.Manufacturer == "ChestAid"]
    assert len(ours) == 1
    purpose = ours[0].PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("109102", "DCM")
    assert ours[0].SoftwareVersions == chestaid.__version__
    assert ABOVE.model_version in ours[0].ContributionDescription
    # The source's acquisition equipment is kept alongside.
    assert "Acme Imaging" in [i.Manufacturer for i in ds.ContributingEquipmentSequence]


def test_sc_is_a_derived_rgb_image_with_burned_in_annotation(source: Dataset) -> None:
    ds = roundtrip(_sc(source, ABOVE, new_identity()))
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "YES"
    assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.BitsAllocated) == ("RGB", 3, 8)
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3)
    assert ds.SecondaryCaptureDeviceManufacturer == "ChestAid"


def test_sc_references_the_source_image(source: Dataset) -> None:
    ds = _sc(source, ABOVE, new_identity())
    (ref,) = ds.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == source.SOPClassUID
    assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_sc_pixels_are_the_triage_image(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    ds = roundtrip(secondary_capture(source, grey, _cam(), ABOVE, new_identity(), max_side=256))
    expected = triage_image(grey, _cam(), ABOVE, max_side=256)
    np.testing.assert_array_equal(ds.pixel_array, expected.pixels)


@pytest.mark.parametrize(("rows", "cols"), [(1200, 900), (700, 1400), (300, 300), (90, 60)])
def test_image_fits_max_side_and_keeps_its_aspect(rows: int, cols: int) -> None:
    grey = np.random.default_rng(0).random((rows, cols)).astype(np.float32)
    result = triage_image(grey, _cam(), ABOVE, max_side=256)
    height, width = result.image_rows, result.pixels.shape[1]
    assert max(height, width) == min(256, max(rows, cols))
    assert height / width == pytest.approx(rows / cols, rel=0.02)
    assert result.pixels.shape == (result.image_rows + result.band_rows, width, 3)
    assert result.pixels.dtype == np.uint8


def test_overlay_is_warm_where_the_map_is_hot_and_cool_where_it_is_cold() -> None:
    grey = np.full((200, 200), 0.5, dtype=np.float32)
    cam = np.zeros((8, 8), dtype=np.float32)
    cam[:, :4] = 1.0  # left half hot, right half cold
    image = triage_image(grey, cam, ABOVE, max_side=256, alpha=0.5)
    rgb = image.pixels[: image.image_rows].astype(int)
    hot, cold = rgb[80:120, 10:60], rgb[80:120, 140:190]
    assert (hot[..., 0] - hot[..., 2]).mean() > 40  # red over blue
    assert (cold[..., 2] - cold[..., 0]).mean() > 40  # blue over red
    # Without the overlay the same image is grey: the difference is the overlay's.
    plain = triage_image(grey, cam, ABOVE, max_side=256, alpha=0.0)
    grey_rgb = plain.pixels[: plain.image_rows].astype(int)
    assert np.array_equal(grey_rgb[..., 0], grey_rgb[..., 2])


def test_text_band_is_below_the_image_and_written_from_the_finding() -> None:
    grey = np.full((300, 400), 0.5, dtype=np.float32)
    urgent = triage_image(grey, _cam(), ABOVE, max_side=512)
    routine = triage_image(grey, _cam(), BELOW, max_side=512)
    band = urgent.pixels[urgent.image_rows :]
    assert urgent.band_rows > 0 and band.shape[0] == urgent.band_rows
    assert (band == 0).all(axis=-1).mean() > 0.5, "the band's background is black"
    assert (band > 200).all(axis=-1).sum() > 200, "the band holds light text"
    assert not np.array_equal(band, routine.pixels[routine.image_rows :])
    # The image itself carries no text.
    np.testing.assert_array_equal(
        urgent.pixels[: urgent.image_rows], routine.pixels[: routine.image_rows]
    )


def test_burned_in_text_states_score_threshold_band_versions_and_disclaimer() -> None:
    text = "\n".join(triage_text(ABOVE))
    for part in ("0.870", "0.420", "URGENT", "densenet121-test-1.0", "calibration v3"):
        assert part in text
    assert "triage support, not a diagnosis" in text.lower()
    assert DISCLAIMER.lower() == "triage support, not a diagnosis"
    assert "below threshold" in "\n".join(triage_text(BELOW))


# Saturated scores: the model's scores and threshold sit near 1, where three decimals
# printed "score 1.000, threshold 1.000, below threshold".
SATURATED_BELOW = TriageFinding(
    score=0.99996,
    threshold=0.99997,
    above_threshold=False,
    priority="ROUTINE",
    model_version="densenet121-test-1.0",
    calibration_version=3,
)


def _score_and_threshold(line: str) -> tuple[str, str]:
    found = re.search(r"[Ss]core (\S+) .*threshold (\d\S*?)\.?(?:\s|$)", line)
    assert found is not None, line
    return found.group(1), found.group(2)


def test_burned_in_text_of_a_saturated_score_shows_it_below_its_threshold() -> None:
    (line,) = [x for x in triage_text(SATURATED_BELOW) if "threshold" in x]
    score, threshold = _score_and_threshold(line)
    assert "1.000" not in line
    assert score != threshold and float(score) < float(threshold), line
    assert "below threshold" in line


def test_sr_comment_and_parameters_of_a_saturated_score_show_it_below_its_threshold(
    source: Dataset,
) -> None:
    ds = roundtrip(structured_report(source, SATURATED_BELOW, new_identity()))
    (comment,) = items_named(ds, "121106")
    score, threshold = _score_and_threshold(comment.TextValue)
    assert score != threshold and float(score) < float(threshold), comment.TextValue
    parameters = " ".join(i.TextValue for i in items_named(ds, "111002"))
    assert f"governed threshold {threshold}" in parameters
    (num,) = [i for i in content_items(ds) if i.ValueType == "NUM"]
    assert num.MeasuredValueSequence[0].FloatingPointValue == SATURATED_BELOW.score


def test_narrow_images_get_their_text_wrapped_into_a_taller_band() -> None:
    wide = triage_image(np.full((100, 900), 0.5, np.float32), _cam(), ABOVE, max_side=1024)
    narrow = triage_image(np.full((400, 120), 0.5, np.float32), _cam(), ABOVE, max_side=1024)
    assert narrow.band_rows > wide.band_rows


NOT_A_FINDING = {
    ("111012", "DCM"),  # Certainty of Finding: would qualify a stated finding
    ("233604007", "SCT"),  # Pneumonia, as a finding
    ("52101004", "SCT"),  # Present
    ("272519000", "SCT"),  # Absent
}


def _codes(ds: Dataset) -> set[tuple[str, str]]:
    """Every (code value, scheme) an SR uses as a concept name or a coded value."""
    found = set()
    for item in content_items(ds):
        for keyword in ("ConceptNameCodeSequence", "ConceptCodeSequence"):
            for code in item.get(keyword, []):
                found.add((code.CodeValue, code.CodingSchemeDesignator))
    return found


@pytest.mark.parametrize(
    "finding",
    [ABOVE, BELOW, SATURATED_BELOW, replace(BELOW, score=0.42, above_threshold=True)],
    ids=["above", "below", "saturated-below", "at-threshold"],
)
def test_sr_reads_back_as_a_probability_and_a_triage_flag_never_a_diagnosis(
    source: Dataset, finding: TriageFinding
) -> None:
    ds = roundtrip(structured_report(source, finding, new_identity()))
    (group,) = hd.sr.ComprehensiveSR.from_dataset(ds).content.get_image_measurement_groups()
    # The probability is a numeric measurement named as such, a ratio in [0, 1].
    (measurement,) = group.get_measurements()
    assert measurement.name.meaning == "Probability of pneumonia"
    assert (measurement.unit.value, measurement.unit.scheme_designator) == ("{ratio}", "UCUM")
    assert measurement.value == pytest.approx(finding.score, abs=1e-9)
    (num,) = [i for i in content_items(ds) if i.ValueType == "NUM"]
    assert num.MeasuredValueSequence[0].FloatingPointValue == finding.score
    # The triage flag: suspected (Yes) exactly when the score reaches the threshold.
    (flag,) = group.get_qualitative_evaluations()
    assert flag.name.meaning == "Pneumonia suspected by triage algorithm"
    expected = ("373066001", "Yes") if finding.score >= finding.threshold else ("373067005", "No")
    assert (flag.value.value, flag.value.meaning) == expected
    assert flag.value.scheme_designator == "SCT"
    # No stated finding of pneumonia, no certainty of one.
    assert not _codes(ds) & NOT_A_FINDING
    # ChestAid's own codes are declared.
    schemes = {i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence}
    assert {c[1] for c in _codes(ds) if c[1].startswith("99")} <= schemes == {"99CHESTAID"}
    # The algorithm (TID 4019): name, version and the threshold among its parameters.
    (name,) = items_named(ds, "111001")
    (version,) = items_named(ds, "111003")
    assert (name.TextValue, version.TextValue) == ("ChestAid", finding.model_version)
    parameters = [i.TextValue for i in items_named(ds, "111002")]
    threshold = score_pair_text(finding.score, finding.threshold)[1]
    assert f"governed threshold {threshold}" in parameters
    assert float(threshold) == pytest.approx(finding.threshold, abs=1e-3)
    # The statement that this is no diagnosis.
    (comment,) = items_named(ds, "121106")
    assert "not a diagnosis" in comment.TextValue
    assert ("pneumonia suspected" if finding.above_threshold else "not suspected") in (
        comment.TextValue
    )


def test_sr_identifies_the_algorithm_and_its_parameters(source: Dataset) -> None:
    ds = structured_report(source, ABOVE, new_identity())
    (name,) = items_named(ds, "111001")
    (version,) = items_named(ds, "111003")
    assert name.TextValue == "ChestAid"
    assert version.TextValue == ABOVE.model_version
    parameters = " ".join(i.TextValue for i in items_named(ds, "111002"))
    assert "calibration version 3" in parameters
    assert "0.42" in parameters


def test_sr_is_a_tid1500_report_on_a_chest_xray_that_references_the_source(
    source: Dataset,
) -> None:
    ds = roundtrip(structured_report(source, ABOVE, new_identity()))
    assert ds.SOPClassUID == ComprehensiveSRStorage
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    (procedure,) = items_named(ds, "121058")
    assert procedure.ConceptCodeSequence[0].CodeValue == "399208008"
    (group,) = items_named(ds, "125007")
    assert group.ContentTemplateSequence[0].TemplateIdentifier == "1501"
    images = [i for i in content_items(group) if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        source.SOPInstanceUID
    ]
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    (comment,) = items_named(ds, "121106")
    assert "not a diagnosis" in comment.TextValue.lower()
    assert "URGENT" in comment.TextValue
    assert (ds.VerificationFlag, ds.PreliminaryFlag) == ("UNVERIFIED", "PRELIMINARY")


def test_sr_is_the_same_document_when_a_job_is_retried(source: Dataset) -> None:
    identity = new_identity()
    first = structured_report(source, ABOVE, identity)
    again = structured_report(source, ABOVE, identity)
    assert first.SOPInstanceUID == again.SOPInstanceUID
    assert items_named(first, "112040")[0].UID == items_named(again, "112040")[0].UID


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_source_without_type2_attributes_still_gives_valid_outputs(kind: str) -> None:
    source = make_dx(rows=64, cols=80)
    for keyword in PATIENT_STUDY[:-1]:
        delattr(source, keyword)
    ds = roundtrip(BUILDERS[kind](source, BELOW, new_identity()))
    for keyword in PATIENT_STUDY[:-1]:
        assert keyword in ds, keyword
        assert ds[keyword].value in ("", None), keyword
    assert ds.StudyInstanceUID == source.StudyInstanceUID


@pytest.mark.parametrize("kind", BUILDERS)
def test_an_invalid_patient_sex_is_left_empty_rather_than_losing_the_output(kind: str) -> None:
    source = make_dx(PatientSex="U")
    ds = BUILDERS[kind](source, BELOW, new_identity())
    assert ds.PatientSex == ""


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize(
    "keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]
)
def test_a_source_without_its_uids_is_refused_with_a_typed_error(kind: str, keyword: str) -> None:
    source = make_dx()
    delattr(source, keyword)
    with pytest.raises(OutputError, match=keyword) as info:
        BUILDERS[kind](source, ABOVE, new_identity())
    assert isinstance(info.value, ChestAidError)


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_value_highdicom_refuses_becomes_a_typed_error(source: Dataset, kind: str) -> None:
    with pytest.raises(OutputError, match="highdicom refused"):
        BUILDERS[kind](source, ABOVE, new_identity(series_number=0))


@pytest.mark.parametrize("kind", BUILDERS)
@pytest.mark.parametrize(
    "finding",
    [
        TriageFinding(0.5, float("nan"), False, "ROUTINE", "m", 1),
        TriageFinding(0.9, 0.4, False, "ROUTINE", "m", 1),
        TriageFinding(1.5, 0.4, True, "URGENT", "m", 1),
        TriageFinding(0.9, 0.4, True, "", "m", 1),
    ],
    ids=["no-threshold", "contradiction", "score-out-of-range", "no-priority"],
)
def test_a_finding_that_cannot_be_stated_truthfully_is_refused(
    source: Dataset, kind: str, finding: TriageFinding
) -> None:
    with pytest.raises(OutputError):
        BUILDERS[kind](source, finding, new_identity())


def test_bad_rendering_arguments_are_configuration_errors(source: Dataset) -> None:
    grey = dataset_to_grey(source).pixels
    with pytest.raises(ConfigurationError, match="max_side"):
        secondary_capture(source, grey, _cam(), ABOVE, new_identity(), max_side=MIN_SIDE - 1)
    with pytest.raises(ConfigurationError, match="alpha"):
        secondary_capture(source, grey, _cam(), ABOVE, new_identity(), alpha=1.5)
    with pytest.raises(OutputError, match="2-D"):
        secondary_capture(source, grey[None], _cam(), ABOVE, new_identity())


def test_outputs_never_need_the_source_pixel_data(tmp_path: Path) -> None:
    path = tmp_path / "source.dcm"
    written = make_dx(path, rows=64, cols=80)
    grey = dataset_to_grey(written).pixels
    source = pydicom.dcmread(path, defer_size=1024)  # the 10 kB pixel data stays on disk
    path.unlink()  # reading it now would fail
    sc = secondary_capture(source, grey, _cam(), ABOVE, new_identity())
    sr = structured_report(source, ABOVE, new_identity())
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == written.StudyInstanceUID


@pytest.mark.parametrize(
    ("stated", "expected"), [(["P", "F"], ["P", "F"]), (["FL", "A"], ["FL", "A"]), (None, [])]
)
def test_sc_keeps_the_source_patient_orientation(
    stated: list[str] | None, expected: list[str]
) -> None:
    source = make_dx() if stated is None else make_dx(PatientOrientation=stated)
    ds = roundtrip(_sc(source, ABOVE, new_identity()))
    assert "PatientOrientation" in ds
    assert list(ds.PatientOrientation or []) == expected


def test_sc_of_a_lossy_source_is_flagged_lossy() -> None:
    source = make_dx(LossyImageCompression="01", LossyImageCompressionMethod="ISO_10918_1")
    ds = _sc(source, ABOVE, new_identity())
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"


def test_own_outputs_are_recognised_and_sources_are_not(source: Dataset) -> None:
    sc = roundtrip(_sc(source, ABOVE, new_identity()))
    sr = roundtrip(structured_report(source, ABOVE, new_identity()))
    assert is_chestaid_output(sc) and is_chestaid_output(sr)
    assert not is_chestaid_output(source)
    assert not is_chestaid_output(make_dx())


def test_an_object_derived_from_an_output_is_recognised_by_its_equipment(source: Dataset) -> None:
    sc = _sc(source, ABOVE, new_identity())
    derived = make_dx(Manufacturer="Other PACS Vendor")
    derived.ContributingEquipmentSequence = list(sc.ContributingEquipmentSequence)
    assert is_chestaid_output(derived)


@pytest.mark.parametrize("kind", BUILDERS)
def test_a_value_breaking_its_vr_is_left_out_and_named_but_not_shown_in_the_log(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_dx(rows=64, cols=80, PatientID="12345", StudyDescription="Chest")
    with config.disable_value_validation():
        source.PatientName = "Longname" * 11  # 88 characters: PN takes 64
        source.AccessionNumber = "A1234567890123456789"  # SH takes 16
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = "x" * 20, "DCM"  # SH in an item
        item.CodeMeaning = "Chest"
        source.ProcedureCodeSequence = [item]
    with caplog.at_level(logging.WARNING, logger="chestaid.dicom_outputs.common"):
        ds = roundtrip(BUILDERS[kind](source, BELOW, new_identity()))
    assert ds.PatientName == "" and ds.AccessionNumber == ""  # type 2: present, empty
    assert (ds.PatientID, ds.StudyInstanceUID) == ("12345", source.StudyInstanceUID)
    logged = caplog.text
    assert "PatientName" in logged and "AccessionNumber" in logged
    assert "ProcedureCodeSequence > CodeValue" in logged
    assert "Longname" not in logged and "A1234567890123456789" not in logged


FOUR_CLASSES = TriageFinding(
    score=0.87,
    threshold=0.42,
    above_threshold=True,
    priority="URGENT",
    model_version="resnet50-4class-test-1",
    calibration_version=1,
    class_probabilities=(("NORMAL", 0.13), ("BACTERIAL", 0.5), ("VIRAL", 0.3), ("COVID-19", 0.07)),
)


def test_an_nclass_sr_measures_each_class_probability_under_its_own_code(
    source: Dataset,
) -> None:
    ds = roundtrip(structured_report(source, FOUR_CLASSES, new_identity()))
    (group,) = hd.sr.ComprehensiveSR.from_dataset(ds).content.get_image_measurement_groups()
    first, *classes = group.get_measurements()
    assert first.name.meaning == "Probability of pneumonia"
    assert first.value == pytest.approx(0.87)
    assert [(m.name.value, m.name.scheme_designator, m.name.meaning) for m in classes] == [
        ("PROB-NORMAL", "99CHESTAID", "Probability of class NORMAL"),
        ("PROB-BACTERIAL", "99CHESTAID", "Probability of class BACTERIAL"),
        ("PROB-VIRAL", "99CHESTAID", "Probability of class VIRAL"),
        ("PROB-COVID-19", "99CHESTAID", "Probability of class COVID-19"),
    ]
    assert all((m.unit.value, m.unit.scheme_designator) == ("{ratio}", "UCUM") for m in classes)
    assert [m.value for m in classes] == pytest.approx([0.13, 0.5, 0.3, 0.07])
    parameters = " ".join(i.TextValue for i in items_named(ds, "111002"))
    assert "classes NORMAL, BACTERIAL, VIRAL, COVID-19" in parameters
    # Still no stated finding, and every ChestAid code declared.
    assert not _codes(ds) & NOT_A_FINDING
    schemes = {i.CodingSchemeDesignator for i in ds.CodingSchemeIdentificationSequence}
    assert {c[1] for c in _codes(ds) if c[1].startswith("99")} <= schemes


def test_an_nclass_secondary_capture_burns_in_each_class_probability() -> None:
    text = triage_text(FOUR_CLASSES)
    (line,) = [x for x in text if "NORMAL" in x]
    stated = re.findall(r"([A-Z][A-Z0-9-]+) (\d\.\d+)", line)
    assert [name for name, _ in stated] == ["NORMAL", "BACTERIAL", "VIRAL", "COVID-19"]
    assert [float(p) for _, p in stated] == pytest.approx([0.13, 0.5, 0.3, 0.07])
    assert "threshold" not in line, "the score line stays the only one naming the threshold"
    assert not [x for x in triage_text(ABOVE) if "probabilities" in x.lower()]
    # The band grows by the class line; the picture above it is the same.
    grey = np.full((300, 400), 0.5, dtype=np.float32)
    four = triage_image(grey, _cam(), FOUR_CLASSES, max_side=512)
    binary = triage_image(grey, _cam(), replace(FOUR_CLASSES, class_probabilities=()), max_side=512)
    assert four.band_rows > binary.band_rows
    np.testing.assert_array_equal(
        four.pixels[: four.image_rows], binary.pixels[: binary.image_rows]
    )


def test_a_binary_sr_has_no_class_measurement(source: Dataset) -> None:
    ds = structured_report(source, ABOVE, new_identity())
    assert len([i for i in content_items(ds) if i.ValueType == "NUM"]) == 1


@pytest.mark.parametrize(
    "classes",
    [
        (("NORMAL", 0.5), ("VIRAL", 0.6), ("BACTERIAL", 0.1)),  # sums to 1.2
        (("NORMAL", 0.5), ("VIRAL", 0.5)),  # two classes
        (("NORMAL", 0.5), ("COVID 19", 0.25), ("COVID-19", 0.25)),  # one code for two
        (("NORMAL", 0.5), ("VIRAL", float("nan")), ("BACTERIAL", 0.5)),
    ],
    ids=["sum", "two", "same-code", "nan"],
)
def test_class_probabilities_that_cannot_be_stated_are_refused(
    source: Dataset, classes: tuple[tuple[str, float], ...]
) -> None:
    with pytest.raises(OutputError, match="class"):
        structured_report(
            source, replace(FOUR_CLASSES, class_probabilities=classes), new_identity()
        )
