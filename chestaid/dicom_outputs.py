"""The two DICOM objects ChestAid sends back to the PACS for a chest radiograph.

A Secondary Capture shows the image, downsampled, with the Grad-CAM overlay and a
burned-in text band (score, threshold, priority band, model and calibration versions,
and that this is triage support, not a diagnosis). A Comprehensive SR in the shape of
TID 1500 holds the same result as coded content: the calibrated score as a measurement,
pneumonia present or absent at the governed threshold as a qualitative evaluation,
and the algorithm that produced them.

Both objects belong to the source study (patient and study attributes copied from the
source), each in a new series whose UIDs the caller chooses, and both reference the
source image. They are built with highdicom's validated constructors. Only the
source's header is used: its pixel data is never read (the decoded grey image is
passed in separately).

An image that is not a judgeable frontal chest radiograph (see
:mod:`chestaid.assessment`) gets the "not assessed" variants instead: a Secondary
Capture of the image alone, with no heat map and a burned-in "NOT ASSESSED BY
CHESTAID" band naming the reason, and an SR whose finding is Pneumonia: Presence
Undetermined with the reason in its comment. Neither states a score or a band: a
score on such an image means nothing. An image turned upright before it was scored
is said to be so in both objects, and its map is shown on the image as received.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from highdicom import ContributingEquipment, PatientOrientationValuesBiped
from highdicom.sc import SCImage
from highdicom.sr import (
    AlgorithmIdentification,
    CodedConcept,
    ComprehensiveSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    TextContentItem,
    TrackingIdentifier,
)
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DA, DT, TM

from chestaid import __version__
from chestaid.assessment import REASONS
from chestaid.display import score_pair_text
from chestaid.errors import ConfigurationError, OutputError
from chestaid.overlay import default_lut, display_image, render_overlay

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
PNEUMONIA = Code("233604007", "SCT", "Pneumonia")
CHEST_XRAY = Code("399208008", "SCT", "Plain chest X-ray")
PRESENT: Code = codes.SCT.Present  # 52101004
ABSENT: Code = codes.SCT.Absent  # 272519000
PRESENCE_UNDETERMINED: Code = codes.DCM.PresenceUndetermined  # 121059
# "The likelihood that the finding detected is in fact the type of finding identified."
CERTAINTY_OF_FINDING: Code = codes.DCM.CertaintyOfFinding  # 111012
NO_UNITS: Code = codes.UCUM.NoUnits  # UCUM "1"
COMMENT: Code = codes.DCM.Comment  # 121106
PROCESSING_EQUIPMENT: Code = codes.DCM.ProcessingEquipment  # 109102
SOURCE_IMAGE_PURPOSE: Code = codes.DCM.SourceImageForImageProcessingOperation  # 121322

MIN_SIDE = 64  # the smallest max_side accepted: a smaller picture is of no use to a reader
_MARGIN = 8  # pixels around the text in the band
_TEXT_COLOUR = (255, 255, 255)
_BAND_COLOUR = (0, 0, 0)
_NOT_ASSESSED_BAND_COLOUR = (128, 0, 0)  # dark red: this picture carries no score
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
_BIPED = frozenset(v.value for v in PatientOrientationValuesBiped)
# What highdicom and pydicom raise when they refuse a value.
_REFUSALS = (ValueError, TypeError, KeyError, AttributeError)


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


@dataclass(frozen=True)
class NotAssessedFinding:
    """An image ChestAid did not assess (not a judgeable frontal chest radiograph)."""

    reason: str  # a stable code of chestaid.assessment.REASONS
    detail: str  # one sentence for people
    model_version: str
    calibration_version: int
    quarter_turns: int = 0  # turned upright before it was found not assessable


@dataclass(frozen=True)
class OutputIdentity:
    """UIDs and numbers of one output, chosen by the caller (so a retried job can reuse them)."""

    series_instance_uid: str
    sop_instance_uid: str
    series_number: int
    instance_number: int = 1


@dataclass(frozen=True)
class TriageImage:
    """The Secondary Capture's pixels: the overlaid image with a text band below it."""

    pixels: np.ndarray  # RGB uint8, shape (image_rows + band_rows, columns, 3)
    image_rows: int  # rows of the (downsampled, overlaid) radiograph, at the top
    band_rows: int  # rows of the text band, at the bottom


def triage_text(finding: TriageFinding) -> list[str]:
    """The lines burned into the Secondary Capture.

    Args:
        finding: the score and its context.

    Returns:
        Priority band; score, threshold and which side of it; model and calibration
        versions; and the statement that this is triage support, not a diagnosis.

    Raises:
        OutputError: the finding is not reportable (see :func:`check_finding`).
    """
    check_finding(finding)
    side = "ABOVE" if finding.above_threshold else "below"
    score, threshold = score_pair_text(finding.score, finding.threshold)
    return [
        f"ChestAid pneumonia triage: {finding.priority}",
        f"Score {score} (calibrated)  threshold {threshold}  {side} threshold",
        f"Model {finding.model_version}  calibration v{finding.calibration_version}",
        f"{DISCLAIMER}.",
    ]


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


def check_not_assessed(finding: NotAssessedFinding) -> None:
    """Refuse a not-assessed finding the outputs cannot state.

    Raises:
        OutputError: an unknown reason, an empty model version, or ``quarter_turns``
            not 0-3.
    """
    if finding.reason not in REASONS:
        raise OutputError(f"unknown not-assessable reason {finding.reason!r}")
    if not finding.model_version.strip():
        raise OutputError("the model version is empty")
    turned_upright_text(finding.quarter_turns)


def _not_assessed_detail(finding: NotAssessedFinding) -> str:
    detail = " ".join(finding.detail.split()).rstrip(".")
    return detail or "not a judgeable frontal chest radiograph"


def not_assessed_text(finding: NotAssessedFinding) -> list[str]:
    """The lines burned into the Secondary Capture of an image ChestAid did not assess.

    Returns:
        "NOT ASSESSED BY CHESTAID: <detail> - read by a radiologist"; the reason code
        (and the quarter turns, if any); model and calibration versions; the
        disclaimer. No score and no band: on such an image they mean nothing.

    Raises:
        OutputError: the finding is not reportable (see :func:`check_not_assessed`).
    """
    check_not_assessed(finding)
    reason = f"Reason: {finding.reason}"
    turned = turned_upright_text(finding.quarter_turns)
    if turned is not None:
        reason += f" (after turning upright by {finding.quarter_turns} x 90 degrees)"
    return [
        f"{NOT_ASSESSED}: {_not_assessed_detail(finding)} - read by a radiologist",
        reason,
        f"Model {finding.model_version}  calibration v{finding.calibration_version}",
        f"{DISCLAIMER}.",
    ]


def triage_image(
    grey: np.ndarray,
    cam: np.ndarray,
    finding: TriageFinding,
    *,
    max_side: int = 1024,
    alpha: float = 0.35,
    lut: np.ndarray | None = None,
) -> TriageImage:
    """Compose the Secondary Capture's pixels (pure: no disk, no clock).

    The grey image is shrunk (area-averaged) so its longer side is at most
    ``max_side``, keeping its aspect ratio, before the map is blended on it; a black
    band with the triage text, as wide as the image, is added below it so the anatomy
    stays clear. Lines too long for the width are wrapped.

    Args:
        grey: float image in [0, 1] (1 = bright as displayed), shape (H, W), full size.
        cam: Grad-CAM in [0, 1] at feature-map resolution, shape (h, w), over the
            image as given (a map of the image turned upright is turned back first).
        finding: what the text band states.
        max_side: the longest side of the image, in pixels (the band adds rows below).
        alpha: opacity of the map over the image.
        lut: a (256, 3) uint8 colour table from :func:`chestaid.overlay.colormap_lut`.

    Returns:
        The RGB pixels and where the image and the band are.

    Raises:
        OutputError: ``grey`` or ``cam`` is not a non-empty 2-D array, or the finding
            is not reportable.
        ConfigurationError: ``max_side`` below :data:`MIN_SIDE` or ``alpha`` outside [0, 1].
    """
    turned = turned_upright_text(finding.quarter_turns)
    lines = [*triage_text(finding), *([turned] if turned else [])]
    for name, array in (("grey", grey), ("cam", cam)):
        if array.ndim != 2 or array.size == 0:
            raise OutputError(f"{name} must be a non-empty 2-D array, got shape {array.shape}")
    if max_side < MIN_SIDE:
        raise ConfigurationError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    shown = display_image(grey, max_side=max_side)
    overlay = render_overlay(
        shown,
        np.nan_to_num(cam.astype(np.float32, copy=False)),
        alpha=alpha,
        lut=lut if lut is not None else default_lut(),
    )
    return _with_band(overlay, lines, _BAND_COLOUR)


def not_assessed_image(
    grey: np.ndarray, finding: NotAssessedFinding, *, max_side: int = 1024
) -> TriageImage:
    """The pixels of a not-assessed image's Secondary Capture (pure: no disk, no clock).

    The grey image as received, shrunk as in :func:`triage_image`, with no heat map,
    above a dark red band with the "NOT ASSESSED BY CHESTAID" text.

    Raises:
        OutputError: ``grey`` is not a non-empty 2-D array, or the finding is not
            reportable.
        ConfigurationError: ``max_side`` below :data:`MIN_SIDE`.
    """
    lines = not_assessed_text(finding)
    if grey.ndim != 2 or grey.size == 0:
        raise OutputError(f"grey must be a non-empty 2-D array, got shape {grey.shape}")
    if max_side < MIN_SIDE:
        raise ConfigurationError(f"max_side must be at least {MIN_SIDE}, got {max_side}")
    shown = np.clip(display_image(grey, max_side=max_side), 0.0, 1.0)
    plain = np.repeat(np.round(shown * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    return _with_band(plain, lines, _NOT_ASSESSED_BAND_COLOUR)


def _with_band(
    picture: np.ndarray, lines: Sequence[str], background: tuple[int, int, int]
) -> TriageImage:
    """An RGB picture with a band of wrapped text lines added below it."""
    columns = picture.shape[1]
    font = _font(_font_size(columns))
    wrapped = _wrap(lines, font, columns - 2 * _MARGIN)
    band_rows = _band_rows(len(wrapped), font)
    pixels = np.zeros((picture.shape[0] + band_rows, columns, 3), dtype=np.uint8)
    pixels[: picture.shape[0]] = picture
    pixels[picture.shape[0] :] = _draw_band(wrapped, font, columns, band_rows, background)
    return TriageImage(pixels=pixels, image_rows=picture.shape[0], band_rows=band_rows)


def secondary_capture(
    source: Dataset,
    grey: np.ndarray,
    cam: np.ndarray,
    finding: TriageFinding,
    identity: OutputIdentity,
    *,
    max_side: int = 1024,
    alpha: float = 0.35,
    lut: np.ndarray | None = None,
) -> Dataset:
    """Build the overlay Secondary Capture for the source's study, in a new series.

    Args:
        source: the received dataset; only its header is used (pixel data may be deferred).
        grey: the source decoded to float [0, 1], 2-D, full size (as ``read_image`` gives).
        cam: the Grad-CAM, float [0, 1], at feature-map resolution.
        finding: the score and its context, stated in the burned-in text.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        max_side: the longest side of the image (the text band adds rows below it).
        alpha: opacity of the map over the image.
        lut: an optional precomputed colour table (see :func:`triage_image`).

    Returns:
        An RGB Secondary Capture Image (Burned In Annotation YES, Image Type
        DERIVED\\SECONDARY), Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its Study, Series or SOP Instance UID or SOP
            Class UID, an input is unusable, or highdicom refuses a value.
        ConfigurationError: ``max_side`` or ``alpha`` out of range.
    """
    header = source_header(source)
    image = triage_image(grey, cam, finding, max_side=max_side, alpha=alpha, lut=lut)
    derivation = (
        "Source image downsampled, Grad-CAM overlay blended and triage text burned in "
        f"by ChestAid. {DISCLAIMER}."
    )
    if finding.quarter_turns:
        derivation += (
            f" Scored after turning upright by {finding.quarter_turns} x 90 degrees; the "
            "Grad-CAM map is shown turned back onto the image as received."
        )
    return _secondary_capture_of(
        source,
        header,
        image,
        identity,
        equipment=_contributing_equipment(
            finding.model_version, finding.calibration_version, _SCORED_CONTRIBUTION
        ),
        series_description=SC_SERIES_DESCRIPTION,
        derivation=derivation,
    )


def not_assessed_secondary_capture(
    source: Dataset,
    grey: np.ndarray,
    finding: NotAssessedFinding,
    identity: OutputIdentity,
    *,
    max_side: int = 1024,
) -> Dataset:
    """Build the Secondary Capture of an image ChestAid did not assess.

    The image as received, with no heat map, and a burned-in band: "NOT ASSESSED BY
    CHESTAID: <detail> - read by a radiologist", the reason, the versions and the
    disclaimer. Otherwise as :func:`secondary_capture` (same study, new series,
    references the source, Burned In Annotation YES).

    Args:
        source: the received dataset; only its header is used.
        grey: the source decoded to float [0, 1], 2-D, full size.
        finding: the reason the image was not assessed, and the versions.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        max_side: the longest side of the image (the text band adds rows below it).

    Returns:
        An RGB Secondary Capture Image, Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its UIDs, an input is unusable, the finding is
            not reportable, or highdicom refuses a value.
        ConfigurationError: ``max_side`` out of range.
    """
    header = source_header(source)
    image = not_assessed_image(grey, finding, max_side=max_side)
    return _secondary_capture_of(
        source,
        header,
        image,
        identity,
        equipment=_contributing_equipment(
            finding.model_version, finding.calibration_version, _NOT_ASSESSED_CONTRIBUTION
        ),
        series_description=NOT_ASSESSED_SC_SERIES_DESCRIPTION,
        derivation=(
            "Source image downsampled and a NOT ASSESSED notice burned in by ChestAid: "
            f"the image was not assessed ({finding.reason}), so no score or heat map is "
            f"shown. {DISCLAIMER}."
        ),
    )


def _secondary_capture_of(
    source: Dataset,
    header: Dataset,
    image: TriageImage,
    identity: OutputIdentity,
    *,
    equipment: ContributingEquipment,
    series_description: str,
    derivation: str,
) -> Dataset:
    """The Secondary Capture dataset of composed pixels, in the source's study."""
    orientation = _patient_orientation(header)
    # highdicom needs an orientation of single letters for a patient image; any other
    # value (letter pairs such as "FL", or none) is set from the source just below.
    accepted = orientation is not None and all(v in _BIPED for v in orientation)
    try:
        sc = SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=image.pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=MANUFACTURER,
            patient_orientation=orientation if accepted else ("L", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[equipment],
            series_description=series_description,
            manufacturer_model_name=MODEL_NAME,
            software_versions=__version__,
        )
        sc.copy_patient_and_study_information(header)
    except _REFUSALS as exc:
        raise OutputError(f"highdicom refused the Secondary Capture: {exc}") from exc
    if not accepted:
        sc.PatientOrientation = list(orientation) if orientation is not None else []
    # ChestAid scores chest radiographs only; CHEST is the defined term (and an unpaired
    # part, so Laterality stays absent).
    sc.BodyPartExamined = "CHEST"
    sc.BurnedInAnnotation = "YES"
    sc.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    sc.SecondaryCaptureDeviceManufacturerModelName = MODEL_NAME
    sc.SecondaryCaptureDeviceSoftwareVersions = __version__
    sc.DerivationDescription = derivation
    sc.SourceImageSequence = [_source_reference(header)]
    sc.ReferencedSeriesSequence = [_series_reference(header)]
    if str(source.get("LossyImageCompression", "")) == "01":
        # Once lossy, always flagged: the derived image inherits the source's history.
        sc.LossyImageCompression = "01"
        for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
            if keyword in source:
                setattr(sc, keyword, copy.deepcopy(source[keyword].value))
    logger.debug(
        "secondary capture built",
        extra={"sop_instance_uid": identity.sop_instance_uid, "shape": image.pixels.shape},
    )
    return sc


def structured_report(
    source: Dataset,
    finding: TriageFinding,
    identity: OutputIdentity,
    *,
    device_observer_uid: str | None = None,
) -> Dataset:
    """Build the Comprehensive SR (TID 1500 Measurement Report) for the source's study.

    One measurement group (TID 1501) references the source image and holds the
    calibrated score (Certainty of Finding, unitless), the qualitative evaluation
    Pneumonia: Present or Absent at the governed threshold, the algorithm's name,
    version and parameters (calibration version, threshold), and a comment with the
    priority band and that this is triage support, not a diagnosis (and, for an image
    turned upright before scoring, a second comment saying so). The report is marked
    complete, unverified and preliminary.

    Args:
        source: the received dataset; only its header is used.
        finding: the score and its context.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        device_observer_uid: the UID naming this ChestAid installation as observer;
            by default one derived from the product name.

    Returns:
        The SR document, Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its UIDs, the finding is not reportable, or
            highdicom refuses a value.
    """
    check_finding(finding)
    turned = turned_upright_text(finding.quarter_turns)
    header = source_header(source)
    try:
        algorithm = AlgorithmIdentification(
            name=ALGORITHM_NAME,
            version=finding.model_version,
            parameters=[
                f"calibration version {finding.calibration_version}",
                f"governed threshold {score_pair_text(finding.score, finding.threshold)[1]}",
            ],
            manufacturer=MANUFACTURER,
        )
        group = MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(
                uid=str(generate_uid(entropy_srcs=[identity.sop_instance_uid, "tracking"])),
                identifier=TRACKING_IDENTIFIER,
            ),
            algorithm_id=algorithm,
            measurements=[
                Measurement(name=CERTAINTY_OF_FINDING, value=finding.score, unit=NO_UNITS)
            ],
            qualitative_evaluations=[
                QualitativeEvaluation(
                    name=PNEUMONIA, value=PRESENT if finding.above_threshold else ABSENT
                )
            ],
            source_images=[
                SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=str(header.SOPClassUID),
                    referenced_sop_instance_uid=str(header.SOPInstanceUID),
                )
            ],
        )
        group[0].ContentSequence.append(
            TextContentItem(
                name=COMMENT,
                value=_report_comment(finding),
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
        )
        if turned is not None:
            group[0].ContentSequence.append(
                TextContentItem(
                    name=COMMENT,
                    value=f"{turned}: the image was received on its side.",
                    relationship_type=RelationshipTypeValues.CONTAINS,
                )
            )
    except _REFUSALS as exc:
        raise OutputError(f"highdicom refused the structured report: {exc}") from exc
    return _measurement_report_sr(
        header,
        group,
        identity,
        equipment=_contributing_equipment(
            finding.model_version, finding.calibration_version, _SCORED_CONTRIBUTION
        ),
        device_observer_uid=device_observer_uid,
    )


def not_assessed_report(
    source: Dataset,
    finding: NotAssessedFinding,
    identity: OutputIdentity,
    *,
    device_observer_uid: str | None = None,
) -> Dataset:
    """Build the Comprehensive SR (TID 1500) saying ChestAid did NOT assess the image.

    One measurement group references the source image and holds no score: its
    qualitative evaluation is Pneumonia: Presence Undetermined (never Present or
    Absent), and its comment "Not assessable: <reason>: <detail>", that the image
    must be read by a radiologist, and the disclaimer. The algorithm is identified
    as in :func:`structured_report`, without a threshold.

    Args:
        source: the received dataset; only its header is used.
        finding: the reason the image was not assessed, and the versions.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        device_observer_uid: as in :func:`structured_report`.

    Returns:
        The SR document, Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its UIDs, the finding is not reportable, or
            highdicom refuses a value.
    """
    check_not_assessed(finding)
    header = source_header(source)
    turned = turned_upright_text(finding.quarter_turns)
    comment = (
        f"Not assessable: {finding.reason}: {_not_assessed_detail(finding)}. The image was "
        "NOT assessed by ChestAid and must be read by a radiologist; no score is given. "
        f"{DISCLAIMER}."
    )
    if turned is not None:
        comment += f" (Turned upright by {finding.quarter_turns} x 90 degrees before assessment.)"
    try:
        group = MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(
                uid=str(generate_uid(entropy_srcs=[identity.sop_instance_uid, "tracking"])),
                identifier=TRACKING_IDENTIFIER,
            ),
            algorithm_id=AlgorithmIdentification(
                name=ALGORITHM_NAME,
                version=finding.model_version,
                parameters=[
                    f"calibration version {finding.calibration_version}",
                    f"not assessable: {finding.reason}",
                ],
                manufacturer=MANUFACTURER,
            ),
            qualitative_evaluations=[
                QualitativeEvaluation(name=PNEUMONIA, value=PRESENCE_UNDETERMINED)
            ],
            source_images=[
                SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=str(header.SOPClassUID),
                    referenced_sop_instance_uid=str(header.SOPInstanceUID),
                )
            ],
        )
        group[0].ContentSequence.append(
            TextContentItem(
                name=COMMENT, value=comment, relationship_type=RelationshipTypeValues.CONTAINS
            )
        )
    except _REFUSALS as exc:
        raise OutputError(f"highdicom refused the structured report: {exc}") from exc
    return _measurement_report_sr(
        header,
        group,
        identity,
        equipment=_contributing_equipment(
            finding.model_version, finding.calibration_version, _NOT_ASSESSED_CONTRIBUTION
        ),
        device_observer_uid=device_observer_uid,
    )


def _measurement_report_sr(
    header: Dataset,
    group: MeasurementsAndQualitativeEvaluations,
    identity: OutputIdentity,
    *,
    equipment: ContributingEquipment,
    device_observer_uid: str | None,
) -> Dataset:
    """A TID 1500 Measurement Report of one measurement group, as a Comprehensive SR."""
    observer_uid = device_observer_uid or str(generate_uid(entropy_srcs=[MODEL_NAME, "device"]))
    try:
        report = MeasurementReport(
            observation_context=ObservationContext(
                observer_device_context=ObserverContext(
                    observer_type=codes.DCM.Device,
                    observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
                        uid=observer_uid,
                        name=ALGORITHM_NAME,
                        manufacturer_name=MANUFACTURER,
                        model_name=MODEL_NAME,
                    ),
                )
            ),
            procedure_reported=CHEST_XRAY,
            imaging_measurements=[group],
        )
        sr = ComprehensiveSR(
            evidence=[header],
            content=report[0],
            series_instance_uid=identity.series_instance_uid,
            series_number=identity.series_number,
            sop_instance_uid=identity.sop_instance_uid,
            instance_number=identity.instance_number,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
            transfer_syntax_uid=ExplicitVRLittleEndian,
            contributing_equipment=[equipment],
            series_description=SR_SERIES_DESCRIPTION,
            manufacturer_model_name=MODEL_NAME,
            software_versions=__version__,
        )
    except _REFUSALS as exc:
        raise OutputError(f"highdicom refused the structured report: {exc}") from exc
    logger.debug("structured report built", extra={"sop_instance_uid": identity.sop_instance_uid})
    return sr


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
    study attributes present (empty when the source lacks them). A Patient's Sex, date
    or time that highdicom would refuse is emptied, with a warning, rather than
    losing the output.

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
    for keyword in _TYPE2_DEFAULTS:
        if keyword not in header or header[keyword].value is None:
            setattr(header, keyword, "")
    sex = str(header.PatientSex).strip().upper()
    if sex not in ("M", "F", "O", ""):
        logger.warning("an invalid Patient's Sex is left empty in the outputs")
        sex = ""
    header.PatientSex = sex
    for keyword, kind in (
        ("PatientBirthDate", DA),
        ("StudyDate", DA),
        ("StudyTime", TM),
    ):
        value = header[keyword].value
        if value in ("", None):
            continue
        try:
            kind(value)
        except ValueError:
            logger.warning("an invalid %s is left empty in the outputs", keyword)
            setattr(header, keyword, "")
    return header


_SCORED_CONTRIBUTION = "Pneumonia triage score and Grad-CAM"
_NOT_ASSESSED_CONTRIBUTION = "Image not assessed for pneumonia triage (no score)"


def _contributing_equipment(
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


def _report_comment(finding: TriageFinding) -> str:
    relation = "at or above" if finding.above_threshold else "below"
    score, threshold = score_pair_text(finding.score, finding.threshold)
    return (
        f"Priority band {finding.priority}: calibrated score {score} is {relation} "
        f"the governed threshold {threshold}. {DISCLAIMER}; the image must be "
        "read by a qualified reader."
    )


def _source_reference(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [CodedConcept.from_code(SOURCE_IMAGE_PURPOSE)]
    return item


def _series_reference(header: Dataset) -> Dataset:
    instance = Dataset()
    instance.ReferencedSOPClassUID = header.SOPClassUID
    instance.ReferencedSOPInstanceUID = header.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = header.SeriesInstanceUID
    series.ReferencedInstanceSequence = [instance]
    return series


def _patient_orientation(header: Dataset) -> tuple[str, str] | None:
    value = header.get("PatientOrientation")
    if value is None or value == "":
        return None
    values = [value] if isinstance(value, str) else list(value)
    cleaned = [str(v).strip().upper() for v in values]
    if len(cleaned) != 2 or not all(cleaned):
        return None
    return cleaned[0], cleaned[1]


def _is_ours(value: object) -> bool:
    return str(value or "").strip().casefold() == MANUFACTURER.casefold()


def _items(ds: Dataset) -> Sequence[Dataset]:
    items = ds.get("ContributingEquipmentSequence")
    return list(items) if items else []


def _font_size(columns: int) -> int:
    return int(min(40, max(10, round(columns / 42))))


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _line_height(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return int(font.getbbox("Ay")[3]) + max(2, int(font.getbbox("Ay")[3]) // 4)


def _band_rows(lines: int, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> int:
    return lines * _line_height(font) + 2 * _MARGIN


def _wrap(
    lines: Sequence[str], font: ImageFont.FreeTypeFont | ImageFont.ImageFont, room: int
) -> list[str]:
    """Break lines at spaces so each fits in ``room`` pixels (a lone long word may not)."""
    wrapped: list[str] = []
    for line in lines:
        if font.getlength(line) <= room:
            wrapped.append(line)
            continue
        current = ""
        for word in line.split():
            candidate = f"{current} {word}" if current else word
            if current and font.getlength(candidate) > room:
                wrapped.append(current)
                current = word
            else:
                current = candidate
        if current:
            wrapped.append(current)
    return wrapped


def _draw_band(
    lines: Sequence[str],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    columns: int,
    rows: int,
    background: tuple[int, int, int] = _BAND_COLOUR,
) -> np.ndarray:
    band = Image.new("RGB", (columns, rows), background)
    draw = ImageDraw.Draw(band)
    step = _line_height(font)
    for i, line in enumerate(lines):
        draw.text((_MARGIN, _MARGIN + i * step), line, font=font, fill=_TEXT_COLOUR)
    return np.asarray(band, dtype=np.uint8)


__all__ = [
    "DISCLAIMER",
    "MANUFACTURER",
    "NOT_ASSESSED",
    "NotAssessedFinding",
    "OutputIdentity",
    "TriageFinding",
    "TriageImage",
    "check_finding",
    "check_not_assessed",
    "is_chestaid_output",
    "not_assessed_image",
    "not_assessed_report",
    "not_assessed_secondary_capture",
    "not_assessed_text",
    "secondary_capture",
    "source_header",
    "structured_report",
    "triage_image",
    "triage_text",
    "turned_upright_text",
]
