"""The outputs of an image ChestAid did not assess: no score, no map, the reason said.

The Secondary Capture shows the image alone above a dark red "NOT ASSESSED BY
CHESTAID" band; the SR's triage flag "Pneumonia suspected by triage algorithm" is
Presence Undetermined, with the reason in its comment.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from chestaid.assessment import REASONS
from chestaid.dicom_outputs.common import (
    DISCLAIMER,
    NOT_ASSESSED,
    NOT_ASSESSED_CONTRIBUTION,
    NOT_ASSESSED_SC_SERIES_DESCRIPTION,
    PRESENCE_UNDETERMINED,
    NotAssessedFinding,
    OutputIdentity,
    StudyContext,
    contributing_equipment,
    source_header,
    study_texts,
    turned_upright_text,
)
from chestaid.dicom_outputs.secondary_capture import (
    TriageImage,
    check_picture_inputs,
    secondary_capture_of,
    with_band,
)
from chestaid.dicom_outputs.structured_report import measurement_group, measurement_report_sr
from chestaid.errors import OutputError
from chestaid.overlay import display_image

_NOT_ASSESSED_BAND_COLOUR = (128, 0, 0)  # dark red: this picture carries no score


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


def not_assessed_detail(finding: NotAssessedFinding) -> str:
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
        f"{NOT_ASSESSED}: {not_assessed_detail(finding)} - read by a radiologist",
        reason,
        f"Model {finding.model_version}  calibration v{finding.calibration_version}",
        f"{DISCLAIMER}.",
    ]


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
    check_picture_inputs(max_side, grey=grey)
    shown = np.clip(display_image(grey, max_side=max_side), 0.0, 1.0)
    plain = np.repeat(np.round(shown * 255.0).astype(np.uint8)[..., None], 3, axis=2)
    return with_band(plain, lines, _NOT_ASSESSED_BAND_COLOUR)


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
    return secondary_capture_of(
        source,
        header,
        image,
        identity,
        equipment=contributing_equipment(
            finding.model_version, finding.calibration_version, NOT_ASSESSED_CONTRIBUTION
        ),
        series_description=NOT_ASSESSED_SC_SERIES_DESCRIPTION,
        derivation=(
            "Source image downsampled and a NOT ASSESSED notice burned in by ChestAid: "
            f"the image was not assessed ({finding.reason}), so no score or heat map is "
            f"shown. {DISCLAIMER}."
        ),
    )


def not_assessed_report(
    source: Dataset,
    finding: NotAssessedFinding,
    identity: OutputIdentity,
    *,
    device_observer_uid: str | None = None,
    study: StudyContext | None = None,
) -> Dataset:
    """Build the Comprehensive SR (TID 1500) saying ChestAid did NOT assess the image.

    One measurement group references the source image and holds no score: its
    triage flag "Pneumonia suspected by triage algorithm" is Presence Undetermined
    (never Yes or No, and no finding of pneumonia Present or Absent), and its comment "Not assessable: <reason>: <detail>", that the image
    must be read by a radiologist, and the disclaimer. The algorithm is identified
    as in :func:`structured_report`, without a threshold.

    Args:
        source: the received dataset; only its header is used.
        finding: the reason the image was not assessed, and the versions.
        identity: Series and SOP Instance UIDs and numbers of the new object.
        device_observer_uid: as in :func:`structured_report`.
        study: for a study-level report of a study none of whose images could be
            assessed: the study's images, said in a further comment.

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
        f"Not assessable: {finding.reason}: {not_assessed_detail(finding)}. The image was "
        "NOT assessed by ChestAid and must be read by a radiologist; no score is given. "
        f"{DISCLAIMER}."
    )
    if turned is not None:
        comment += f" (Turned upright by {finding.quarter_turns} x 90 degrees before assessment.)"
    group = measurement_group(
        header,
        identity,
        model_version=finding.model_version,
        parameters=[
            f"calibration version {finding.calibration_version}",
            f"not assessable: {finding.reason}",
        ],
        suspected=PRESENCE_UNDETERMINED,
        score=None,
        comments=[comment, *([] if study is None else study_texts(study))],
    )
    return measurement_report_sr(
        header,
        group,
        identity,
        equipment=contributing_equipment(
            finding.model_version, finding.calibration_version, NOT_ASSESSED_CONTRIBUTION
        ),
        device_observer_uid=device_observer_uid,
    )
