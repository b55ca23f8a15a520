"""The Comprehensive SR (TID 1500 Measurement Report) of a scored image."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from highdicom import ContributingEquipment
from highdicom.sr import (
    AlgorithmIdentification,
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
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from chestaid import __version__
from chestaid.dicom_outputs.common import (
    ALGORITHM_NAME,
    CHEST_XRAY,
    CHESTAID_SCHEME,
    CHESTAID_SCHEME_NAME,
    COMMENT,
    DISCLAIMER,
    MANUFACTURER,
    MODEL_NAME,
    NO,
    PNEUMONIA_PROBABILITY,
    PNEUMONIA_SUSPECTED,
    RATIO,
    REFUSALS,
    SCORED_CONTRIBUTION,
    SR_SERIES_DESCRIPTION,
    TRACKING_IDENTIFIER,
    YES,
    OutputIdentity,
    StudyContext,
    TriageFinding,
    check_finding,
    class_probability_code,
    contributing_equipment,
    predecessor,
    source_header,
    study_texts,
    turned_upright_text,
)
from chestaid.display import score_pair_text
from chestaid.errors import OutputError

logger = logging.getLogger(__name__)


def structured_report(
    source: Dataset,
    finding: TriageFinding,
    identity: OutputIdentity,
    *,
    device_observer_uid: str | None = None,
    study: StudyContext | None = None,
) -> Dataset:
    """Build the Comprehensive SR (TID 1500 Measurement Report) for the source's study.

    One measurement group (TID 1501) references the source image and holds what the
    algorithm computed, never a diagnosis: the measurement "Probability of pneumonia"
    (the calibrated score, unit {ratio}), the triage flag "Pneumonia suspected by
    triage algorithm": Yes when the probability is at or above the governed threshold,
    otherwise No, the algorithm's identification (TID 4019: name, version and
    parameters: the threshold, the rule of the flag and the calibration version), and
    a comment with the priority band and that this is triage support, not a diagnosis
    (and, for an image turned upright before scoring, a second comment saying so). An
    N-class model's finding adds one measurement per class, "Probability of class
    NAME" (ChestAid's code ``PROB-NAME``, unit {ratio}, summing to one), and a
    parameter saying the probability of pneumonia is that of any class but NORMAL. It
    states no finding of pneumonia (no Present or Absent) and no Certainty of Finding.
    The report is marked complete, unverified and preliminary.

    Args:
        source: the received dataset; only its header is used.
        finding: the score and its context.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        device_observer_uid: the UID naming this ChestAid installation as observer;
            by default one derived from the product name.
        study: for a study-level report (the source is the study's deciding image):
            the study's images, said in further comments, and the earlier report it
            replaces, if any (its Predecessor Documents Sequence).

    Returns:
        The SR document, Explicit VR Little Endian, ready for ``save_as``.

    Raises:
        OutputError: the source lacks its UIDs, the finding is not reportable, or
            highdicom refuses a value.
    """
    check_finding(finding)
    turned = turned_upright_text(finding.quarter_turns)
    header = source_header(source)
    comments = [_report_comment(finding)]
    if turned is not None:
        comments.append(f"{turned}: the image was received on its side.")
    if study is not None:
        comments.extend(study_texts(study))
    group = measurement_group(
        header,
        identity,
        model_version=finding.model_version,
        parameters=[
            f"governed threshold {score_pair_text(finding.score, finding.threshold)[1]}",
            "pneumonia suspected when the probability of pneumonia is at or above the "
            "governed threshold",
            f"calibration version {finding.calibration_version}",
            *_class_parameters(finding),
        ],
        suspected=YES if finding.above_threshold else NO,
        score=finding.score,
        comments=comments,
        class_probabilities=finding.class_probabilities,
    )
    return measurement_report_sr(
        header,
        group,
        identity,
        equipment=contributing_equipment(
            finding.model_version, finding.calibration_version, SCORED_CONTRIBUTION
        ),
        device_observer_uid=device_observer_uid,
        replaces=None if study is None or study.replaces is None else [predecessor(study.replaces)],
    )


def measurement_group(
    header: Dataset,
    identity: OutputIdentity,
    *,
    model_version: str,
    parameters: Sequence[str],
    suspected: Code,
    score: float | None,
    comments: Sequence[str],
    class_probabilities: Sequence[tuple[str, float]] = (),
) -> MeasurementsAndQualitativeEvaluations:
    """The one TID 1501 group of a report on the source image.

    Args:
        header: the source header (see :func:`source_header`).
        identity: the report's UIDs; its tracking UID is derived from them.
        model_version: the algorithm's version.
        parameters: the algorithm's parameters, as stated.
        suspected: the value of the triage flag "Pneumonia suspected by triage
            algorithm" (Yes, No, or Presence Undetermined for an image not assessed).
        score: the calibrated score as "Probability of pneumonia", or None for no
            measurement.
        comments: text items added to the group, in order.
        class_probabilities: an N-class model's probability of each class, measured
            after the probability of pneumonia, in the model's order.

    Raises:
        OutputError: highdicom refuses a value.
    """
    try:
        group = MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(
                uid=str(generate_uid(entropy_srcs=[identity.sop_instance_uid, "tracking"])),
                identifier=TRACKING_IDENTIFIER,
            ),
            algorithm_id=AlgorithmIdentification(
                name=ALGORITHM_NAME,
                version=model_version,
                parameters=list(parameters),
                manufacturer=MANUFACTURER,
            ),
            measurements=(
                None
                if score is None
                else [
                    Measurement(name=PNEUMONIA_PROBABILITY, value=score, unit=RATIO),
                    *(
                        Measurement(name=class_probability_code(name), value=p, unit=RATIO)
                        for name, p in class_probabilities
                    ),
                ]
            ),
            qualitative_evaluations=[
                QualitativeEvaluation(name=PNEUMONIA_SUSPECTED, value=suspected)
            ],
            source_images=[
                SourceImageForMeasurementGroup(
                    referenced_sop_class_uid=str(header.SOPClassUID),
                    referenced_sop_instance_uid=str(header.SOPInstanceUID),
                )
            ],
        )
        for comment in comments:
            group[0].ContentSequence.append(
                TextContentItem(
                    name=COMMENT, value=comment, relationship_type=RelationshipTypeValues.CONTAINS
                )
            )
    except REFUSALS as exc:
        raise OutputError(f"highdicom refused the structured report: {exc}") from exc
    return group


def measurement_report_sr(
    header: Dataset,
    group: MeasurementsAndQualitativeEvaluations,
    identity: OutputIdentity,
    *,
    equipment: ContributingEquipment,
    device_observer_uid: str | None,
    replaces: Sequence[Dataset] | None = None,
) -> Dataset:
    """A TID 1500 Measurement Report of one measurement group, as a Comprehensive SR
    (``replaces``: headers of the earlier reports it replaces)."""
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
            previous_versions=list(replaces) if replaces else None,
        )
    except REFUSALS as exc:
        raise OutputError(f"highdicom refused the structured report: {exc}") from exc
    sr.CodingSchemeIdentificationSequence = [_chestaid_scheme()]
    logger.debug("structured report built", extra={"sop_instance_uid": identity.sop_instance_uid})
    return sr


def _chestaid_scheme() -> Dataset:
    item = Dataset()
    item.CodingSchemeDesignator = CHESTAID_SCHEME
    item.CodingSchemeName = CHESTAID_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = MANUFACTURER
    return item


def _class_parameters(finding: TriageFinding) -> list[str]:
    """The parameter an N-class model adds: how its classes make the probability of
    pneumonia (nothing for a binary model)."""
    if not finding.class_probabilities:
        return []
    names = ", ".join(name for name, _ in finding.class_probabilities)
    return [
        f"classes {names}: the probability of pneumonia is the calibrated probability "
        "of any class but NORMAL"
    ]


def _report_comment(finding: TriageFinding) -> str:
    relation = "at or above" if finding.above_threshold else "below"
    suspected = "suspected" if finding.above_threshold else "not suspected"
    score, threshold = score_pair_text(finding.score, finding.threshold)
    return (
        f"Priority band {finding.priority}: pneumonia {suspected} by triage. "
        f"Probability of pneumonia: calibrated score {score} is {relation} the "
        f"governed threshold {threshold}. {DISCLAIMER}; the image must be "
        "read by a qualified reader."
    )
