"""What a ChestAid SR says, read back from the document itself.

A delivery that is not DICOM (an HL7 result to the RIS) states what the SR sent to
the PACS states, read from that SR, so the two can never disagree: the study and
patient it is about, the calibrated score and the triage flag (by their codes), the
priority band (from the report's comment, whose wording this package writes), the
algorithm's name and version (TID 4019). It reads only what :func:`structured_report` and
:func:`not_assessed_report` write; anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from chestaid.dicom_outputs.common import (
    CHESTAID_SCHEME,
    CLASS_PROBABILITY_MEANING,
    CLASS_PROBABILITY_PREFIX,
    COMMENT,
    MANUFACTURER,
    NO,
    PNEUMONIA_PROBABILITY,
    PNEUMONIA_SUSPECTED,
    YES,
)
from chestaid.errors import OutputError

_BAND = re.compile(r"^Priority band (?P<band>[A-Za-z0-9_-]+): ")
_NOT_ASSESSABLE = re.compile(r"^Not assessable: (?P<reason>[a-z0-9_]+): ")
_CALIBRATION = re.compile(r"^calibration version (?P<version>\d+)$")
_ALGORITHM_NAME = codes.DCM.AlgorithmName  # 111001
_ALGORITHM_VERSION = codes.DCM.AlgorithmVersion  # 111003
_ALGORITHM_PARAMETERS = codes.DCM.AlgorithmParameters  # 111002


@dataclass(frozen=True)
class ReportedTriage:
    """The content of one ChestAid SR.

    Attributes:
        study_instance_uid: the study the report is in (the source image's).
        accession_number: the source's, or "" when it had none.
        patient_id: the source's Patient ID, or "".
        issuer_of_patient_id: the source's Issuer of Patient ID, or "".
        patient_name: the source's Patient's Name in DICOM PN form, or "".
        image_sop_instance_uid: the scored image's SOP Instance UID.
        report_sop_instance_uid: the SR's own SOP Instance UID.
        content_datetime: the SR's Content Date and Time (YYYYMMDDHHMMSS).
        score: the calibrated probability of pneumonia; None when not assessed.
        suspected: True (at or above the governed threshold), False, or None when
            the image was not assessed.
        band: the priority band; None when not assessed.
        not_assessable_reason: the reason code when the image was not assessed.
        algorithm_name: the algorithm's name.
        algorithm_version: the model's version.
        calibration_version: the calibration's version.
        replaces: the SOP Instance UID of the earlier report of the study this one
            replaces (its Predecessor Documents Sequence), or None.
        class_probabilities: an N-class model's probability of each class, by name in
            the report's order; empty for a binary model or an image not assessed.
    """

    study_instance_uid: str
    accession_number: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    image_sop_instance_uid: str
    report_sop_instance_uid: str
    content_datetime: str
    score: float | None
    suspected: bool | None
    band: str | None
    not_assessable_reason: str | None
    algorithm_name: str
    algorithm_version: str
    calibration_version: int
    replaces: str | None = None
    class_probabilities: tuple[tuple[str, float], ...] = ()


def _items(sequence: object) -> Iterator[Dataset]:
    for item in sequence or ():  # type: ignore[attr-defined]
        yield item
        yield from _items(item.get("ContentSequence"))


def _is(item: Dataset, code: object) -> bool:
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return False
    name = names[0]
    return bool(
        # A long code (an N-class model's class name) has no CodeValue.
        name.get("CodeValue") == code.value  # type: ignore[attr-defined]
        and name.CodingSchemeDesignator == code.scheme_designator  # type: ignore[attr-defined]
    )


def read_triage_report(report: Dataset) -> ReportedTriage:
    """Read a ChestAid SR (scored or not assessed) back into its content.

    Args:
        report: the SR as written to the outbox.

    Returns:
        What the report states.

    Raises:
        OutputError: the dataset is not a ChestAid triage report (its device is not
            ChestAid's, or an item this package always writes is missing).
    """
    if str(report.get("Manufacturer", "")) != MANUFACTURER:
        raise OutputError("not a ChestAid report (its Manufacturer is another's)")
    content = list(_items(report.get("ContentSequence")))
    score: float | None = None
    suspected: bool | None = None
    band: str | None = None
    reason: str | None = None
    name = version = ""
    calibration: int | None = None
    image_uid = ""
    classes: list[tuple[str, float]] = []
    for item in content:
        value_type = item.get("ValueType")
        if value_type == "NUM" and _is(item, PNEUMONIA_PROBABILITY):
            score = float(item.MeasuredValueSequence[0].NumericValue)
        elif value_type == "NUM" and (name_of_class := _class_of(item)) is not None:
            classes.append((name_of_class, float(item.MeasuredValueSequence[0].NumericValue)))
        elif value_type == "CODE" and _is(item, PNEUMONIA_SUSPECTED):
            code = item.ConceptCodeSequence[0]
            suspected = {YES.value: True, NO.value: False}.get(code.CodeValue)
        elif value_type == "TEXT" and _is(item, COMMENT):
            if (match := _BAND.match(item.TextValue)) is not None and band is None:
                band = match["band"]
            if (match := _NOT_ASSESSABLE.match(item.TextValue)) is not None and reason is None:
                reason = match["reason"]
        elif value_type == "TEXT" and _is(item, _ALGORITHM_NAME):
            name = str(item.TextValue)
        elif value_type == "TEXT" and _is(item, _ALGORITHM_VERSION):
            version = str(item.TextValue)
        elif value_type == "TEXT" and _is(item, _ALGORITHM_PARAMETERS):
            if (match := _CALIBRATION.match(item.TextValue)) is not None:
                calibration = int(match["version"])
        elif value_type == "IMAGE" and not image_uid:
            image_uid = str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    assessed = reason is None
    missing = [
        what
        for what, absent in (
            ("the algorithm's name", not name),
            ("the algorithm's version", not version),
            ("the calibration version", calibration is None),
            ("the source image", not image_uid),
            ("the probability of pneumonia", assessed and score is None),
            ("the triage flag", assessed and suspected is None),
            ("the priority band", assessed and band is None),
        )
        if absent
    ]
    if missing:
        raise OutputError(f"not a ChestAid triage report: it lacks {', '.join(missing)}")
    assert calibration is not None  # for mypy: checked just above
    return ReportedTriage(
        study_instance_uid=str(report.StudyInstanceUID),
        accession_number=str(report.get("AccessionNumber", "") or ""),
        patient_id=str(report.get("PatientID", "") or ""),
        issuer_of_patient_id=str(report.get("IssuerOfPatientID", "") or ""),
        patient_name=str(report.get("PatientName", "") or ""),
        image_sop_instance_uid=image_uid,
        report_sop_instance_uid=str(report.SOPInstanceUID),
        content_datetime=f"{report.get('ContentDate', '')}{report.get('ContentTime', '')}"[:14],
        score=score if assessed else None,
        suspected=suspected if assessed else None,
        band=band if assessed else None,
        not_assessable_reason=reason,
        algorithm_name=name,
        algorithm_version=version,
        calibration_version=calibration,
        replaces=_predecessor(report),
        class_probabilities=tuple(classes) if assessed else (),
    )


def _class_of(item: Dataset) -> str | None:
    """The class an item measures the probability of ("Probability of class NAME"), or
    None when it is no such ChestAid item."""
    names = item.get("ConceptNameCodeSequence")
    if not names:
        return None
    name = names[0]
    value = str(name.get("CodeValue") or name.get("LongCodeValue") or "")
    meaning = str(name.get("CodeMeaning", ""))
    if (
        name.get("CodingSchemeDesignator") != CHESTAID_SCHEME
        or not value.startswith(CLASS_PROBABILITY_PREFIX)
        or not meaning.startswith(CLASS_PROBABILITY_MEANING)
    ):
        return None
    return meaning[len(CLASS_PROBABILITY_MEANING) :]


def _predecessor(report: Dataset) -> str | None:
    """The first report named in the Predecessor Documents Sequence, or None."""
    for study in report.get("PredecessorDocumentsSequence") or ():
        for series in study.get("ReferencedSeriesSequence") or ():
            for instance in series.get("ReferencedSOPSequence") or ():
                return str(instance.ReferencedSOPInstanceUID)
    return None
