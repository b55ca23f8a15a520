"""What every output shares: names and codes, the findings, the source header, our mark."""

from __future__ import annotations

import copy
import datetime
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from highdicom import ContributingEquipment
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ComprehensiveSRStorage
from pydicom.valuerep import DT

from chestaid import __version__
from chestaid.dicom_outputs.vr_rules import drop_non_conforming
from chestaid.errors import OutputError

logger = logging.getLogger(__name__)

MANUFACTURER = "ChestAid"
MODEL_NAME = "ChestAid pneumonia triage"
ALGORITHM_NAME = "ChestAid"
DISCLAIMER = "Triage support, not a diagnosis"
SC_SERIES_DESCRIPTION = "ChestAid triage overlay (not a diagnosis)"
SR_SERIES_DESCRIPTION = "ChestAid triage report (not a diagnosis)"
NOT_ASSESSED_SC_SERIES_DESCRIPTION = "ChestAid image NOT assessed (not a diagnosis)"
NOT_ASSESSED = "NOT ASSESSED BY CHESTAID"
TRACKING_IDENTIFIER = "ChestAid pneumonia triage"
# Coded concepts (SNOMED CT, DICOM and UCUM codes as PS3.16 lists them).
CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
PRESENCE_UNDETERMINED: Code = codes.DCM.PresenceUndetermined  # 121059
YES: Code = codes.SCT.Yes  # 373066001
NO: Code = codes.SCT.No  # 373067005
# The SR states what ChestAid computes, not a diagnosis: a probability and a triage
# flag. No standard code names either (DCM "Certainty of Finding" would qualify a
# stated finding, SCT Present/Absent would state one), so they are ChestAid's own
# codes, declared in the SR's Coding Scheme Identification Sequence.
CHESTAID_SCHEME = "99CHESTAID"
CHESTAID_SCHEME_NAME = "ChestAid triage codes"
PNEUMONIA_PROBABILITY = Code("PNEUMONIA-PROB", CHESTAID_SCHEME, "Probability of pneumonia")
PNEUMONIA_SUSPECTED = Code(
    "PNEUMONIA-SUSP", CHESTAID_SCHEME, "Pneumonia suspected by triage algorithm"
)
RATIO = Code("{ratio}", "UCUM", "ratio")  # a probability, 0..1
# An N-class model's calibrated probability of each of its classes: one ChestAid code
# per class name ("PROB-" and the name, upper case), meaning "Probability of class NAME".
CLASS_PROBABILITY_PREFIX = "PROB-"
CLASS_PROBABILITY_MEANING = "Probability of class "
COMMENT: Code = codes.DCM.Comment  # 121106
PROCESSING_EQUIPMENT: Code = codes.DCM.ProcessingEquipment  # 109102
SOURCE_IMAGE_PURPOSE: Code = codes.DCM.SourceImageForImageProcessingOperation  # 121322

_SOURCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
# Type 2 attributes of the Patient and General Study modules: present in every output,
# empty when the source does not have them.
_TYPE2_DEFAULTS = (
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
# Groups of the header copied from the source: identification, patient, acquisition,
# relationship, study, visit and procedure attributes. Image pixel attributes (0028)
# and the pixel data (7FE0) stay behind, so deferred pixel data is never read.
_HEADER_GROUPS = frozenset({0x0008, 0x0010, 0x0012, 0x0018, 0x0020, 0x0032, 0x0038, 0x0040})
# What highdicom and pydicom raise when they refuse a value.
REFUSALS = (ValueError, TypeError, KeyError, AttributeError)
SCORED_CONTRIBUTION = "Pneumonia triage score and Grad-CAM"
NOT_ASSESSED_CONTRIBUTION = "Image not assessed for pneumonia triage (no score)"


@dataclass(frozen=True)
class TriageFinding:
    """The result of scoring one radiograph, as the outputs report it."""

    score: float  # calibrated probability of pneumonia, 0..1
    threshold: float  # governed threshold on the score
    above_threshold: bool
    priority: str  # priority band name, e.g. "URGENT", "ROUTINE"
    model_version: str
    calibration_version: int
    # Counter-clockwise quarter turns the image was given before scoring (it came on
    # its side and its orientation was certain); the outputs say so.
    quarter_turns: int = 0
    # An N-class model's calibrated probability of each class, in the model's order
    # (``score`` is then the probability of any class but NORMAL); empty for a binary one.
    class_probabilities: tuple[tuple[str, float], ...] = ()


def class_probability_code(name: str) -> Code:
    """ChestAid's code for "Probability of class NAME" of an N-class model.

    The code value is ``PROB-`` and the name in upper case with anything but letters,
    digits and hyphens made a hyphen (longer than 16 characters, highdicom writes it as
    a Long Code Value); the meaning keeps the name as the bundle spells it.
    """
    value = CLASS_PROBABILITY_PREFIX + re.sub(r"[^A-Z0-9-]", "-", name.strip().upper())
    return Code(value, CHESTAID_SCHEME, (CLASS_PROBABILITY_MEANING + name.strip())[:64])


@dataclass(frozen=True)
class NotAssessedFinding:
    """An image ChestAid did not assess (not a judgeable frontal chest radiograph)."""

    reason: str  # a stable code of chestaid.assessment.REASONS
    detail: str  # one sentence for people
    model_version: str
    calibration_version: int
    quarter_turns: int = 0  # turned upright before it was found not assessable


@dataclass(frozen=True)
class ReplacedReport:
    """An earlier ChestAid SR of a study that a new one replaces (its UIDs)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ComprehensiveSRStorage


@dataclass(frozen=True)
class StudyContext:
    """What a study-level report says of the study beyond its deciding image.

    ``images`` counts the study's images that were scored, ``not_assessed`` those of
    them that could not be assessed; ``replaces`` names the study's earlier report when
    a later image raised the study's priority.
    """

    images: int
    not_assessed: int = 0
    replaces: ReplacedReport | None = None


def study_texts(study: StudyContext) -> list[str]:
    """The sentences a study-level report adds about its study."""
    assessed = study.images - study.not_assessed
    if assessed <= 0:
        return [
            f"Study result: none of the study's {study.images} scored "
            f"image{'s' if study.images != 1 else ''} could be assessed; the image this "
            "report references is the first of them."
        ]
    texts = [
        "Study result: the highest calibrated score among the study's "
        f"{assessed} assessed frontal image{'s' if assessed != 1 else ''} decides; "
        "laterals and images For Processing are not scored. The image this report "
        "references is the deciding one."
    ]
    if study.not_assessed:
        texts.append(
            f"{study.not_assessed} image{'s' if study.not_assessed != 1 else ''} of the "
            "study could not be assessed and must be read by a radiologist."
        )
    if study.replaces is not None:
        texts.append(
            "This report replaces ChestAid's earlier report "
            f"{study.replaces.sop_instance_uid} of this study: a later image raised the "
            "study's priority."
        )
    return texts


def predecessor(replaced: ReplacedReport) -> Dataset:
    """The header of a replaced report, as highdicom takes a previous version."""
    ds = Dataset()
    ds.StudyInstanceUID = replaced.study_instance_uid
    ds.SeriesInstanceUID = replaced.series_instance_uid
    ds.SOPInstanceUID = replaced.sop_instance_uid
    ds.SOPClassUID = replaced.sop_class_uid
    return ds


@dataclass(frozen=True)
class OutputIdentity:
    """UIDs and numbers of one output, chosen by the caller (so a retried job can reuse them)."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int = 1


def check_finding(finding: TriageFinding) -> None:
    """Refuse a finding the outputs cannot state truthfully.

    Args:
        finding: the score and its context.

    Raises:
        OutputError: a score or threshold outside [0, 1] or not finite (an output needs
            a governed threshold), ``above_threshold`` that contradicts them, or an
            empty priority or model version.
    """
    for name, value in (("score", finding.score), ("threshold", finding.threshold)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise OutputError(f"the {name} must be a number in [0, 1], got {value}")
    if finding.above_threshold != (finding.score >= finding.threshold):
        raise OutputError(
            f"above_threshold={finding.above_threshold} contradicts score {finding.score} "
            f"and threshold {finding.threshold}"
        )
    if not finding.priority.strip():
        raise OutputError("the priority band is empty")
    if not finding.model_version.strip():
        raise OutputError("the model version is empty")
    if finding.class_probabilities:
        _check_class_probabilities(finding.class_probabilities)


def _check_class_probabilities(classes: Sequence[tuple[str, float]]) -> None:
    """Refuse class probabilities that are not probabilities of distinct named classes."""
    names = [name.strip() for name, _ in classes]
    if len(classes) < 3 or not all(names):
        raise OutputError(f"class probabilities need three or more named classes, got {names}")
    distinct = {class_probability_code(name).value for name in names}
    if len(distinct) != len(names):
        raise OutputError(f"class names {names} do not give a distinct code each")
    values = [p for _, p in classes]
    if not all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in values):
        raise OutputError(f"class probabilities must lie in [0, 1], got {values}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise OutputError(f"class probabilities must sum to one, got {sum(values)}")


def turned_upright_text(quarter_turns: int) -> str | None:
    """The sentence saying the image was turned upright before scoring (None if it was not).

    Raises:
        OutputError: ``quarter_turns`` is not 0-3.
    """
    if quarter_turns not in (0, 1, 2, 3):
        raise OutputError(f"quarter_turns must be 0-3, got {quarter_turns}")
    if quarter_turns == 0:
        return None
    return f"Scored after turning upright by {quarter_turns} x 90 degrees"


def is_chestaid_output(ds: Dataset) -> bool:
    """Whether a dataset is one of ChestAid's own outputs (or derived from one).

    Args:
        ds: any dataset, such as one just received (its pixel data is not read).

    Returns:
        True when its Manufacturer or Secondary Capture Device Manufacturer is
        ChestAid, or when ChestAid is among its contributing equipment.
    """
    if _is_ours(ds.get("Manufacturer")) or _is_ours(ds.get("SecondaryCaptureDeviceManufacturer")):
        return True
    return any(_is_ours(item.get("Manufacturer")) for item in _items(ds))


def source_header(source: Dataset) -> Dataset:
    """A copy of the source's header that highdicom can take as reference dataset.

    It holds the identification, patient, study and acquisition attributes (no pixel
    attributes, no pixel data, which is never read), with the type 2 patient and
    study attributes present (empty when the source lacks them). An attribute whose
    value breaks its VR's rules (length, characters, number of values, a date that is
    no date) is left out, or emptied when it is type 2, with a warning naming it (see
    :mod:`chestaid.dicom_outputs.vr_rules`); it is never shortened, since a cut
    identifier names someone else. A Patient's Sex other than M, F or O is emptied.

    Args:
        source: the received dataset (pixel data may be deferred; it is not read).

    Returns:
        A new dataset; the source is left as it is.

    Raises:
        OutputError: the source lacks its Study, Series or SOP Instance UID or its SOP
            Class UID.
    """
    missing = [k for k in _SOURCE_UIDS if not str(source.get(k, "") or "").strip()]
    if missing:
        raise OutputError(f"the source lacks {', '.join(missing)}; no output can reference it")
    header = Dataset()
    for tag in list(source.keys()):
        if tag.group in _HEADER_GROUPS:
            header.add(copy.deepcopy(source[tag]))
    # Never the value itself in the log: it may be the patient's name or ID.
    for name in drop_non_conforming(header, keep=_SOURCE_UIDS):
        logger.warning("the source's %s breaks its VR's rules and is left out of the outputs", name)
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in header or header[keyword].value is None:
            setattr(header, keyword, "")
    sex = str(header.PatientSex).strip().upper()
    if sex not in ("M", "F", "O", ""):
        logger.warning("an invalid Patient's Sex is left empty in the outputs")
        sex = ""
    header.PatientSex = sex
    return header


def contributing_equipment(
    model_version: str, calibration_version: int, contribution: str
) -> ContributingEquipment:
    return ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=PROCESSING_EQUIPMENT,
        manufacturer_model_name=MODEL_NAME,
        software_versions=__version__,
        contribution_datetime=DT(datetime.datetime.now(datetime.UTC)),
        contribution_description=(
            f"{contribution}, model {model_version}, "
            f"calibration {calibration_version}. {DISCLAIMER}."
        ),
    )


def _is_ours(value: object) -> bool:
    return str(value or "").strip().casefold() == MANUFACTURER.casefold()


def _items(ds: Dataset) -> Sequence[Dataset]:
    items = ds.get("ContributingEquipmentSequence")
    return list(items) if items else []
