"""The two DICOM objects ChestAid sends back to the PACS for a chest radiograph.

A Secondary Capture shows the image, downsampled, with the Grad-CAM overlay and a
burned-in text band (score, threshold, priority band, model and calibration versions,
and that this is triage support, not a diagnosis). A Comprehensive SR in the shape of
TID 1500 holds the same result as coded content, as an AI triage result and never
as a diagnosis: the calibrated score as the measurement "Probability of pneumonia",
the triage flag "Pneumonia suspected by triage algorithm" (Yes at or above the
governed threshold, No below it), and the algorithm that produced them with its
threshold.

Both objects belong to the source study (patient and study attributes copied from the
source), each in a new series whose UIDs the caller chooses, and both reference the
source image. They are built with highdicom's validated constructors. Only the
source's header is used: its pixel data is never read (the decoded grey image is
passed in separately).

An image that is not a judgeable frontal chest radiograph (see
:mod:`chestaid.assessment`) gets the "not assessed" variants instead: a Secondary
Capture of the image alone, with no heat map and a burned-in "NOT ASSESSED BY
CHESTAID" band naming the reason, and an SR whose triage flag is Presence
Undetermined with the reason in its comment. Neither states a score or a band: a
score on such an image means nothing. An image turned upright before it was scored
is said to be so in both objects, and its map is shown on the image as received.
"""

from chestaid.dicom_outputs.common import (
    ALGORITHM_NAME,
    DISCLAIMER,
    MANUFACTURER,
    MODEL_NAME,
    NOT_ASSESSED,
    NOT_ASSESSED_SC_SERIES_DESCRIPTION,
    SC_SERIES_DESCRIPTION,
    SR_SERIES_DESCRIPTION,
    NotAssessedFinding,
    OutputIdentity,
    ReplacedReport,
    StudyContext,
    TriageFinding,
    check_finding,
    is_chestaid_output,
    source_header,
    turned_upright_text,
)
from chestaid.dicom_outputs.not_assessed import (
    check_not_assessed,
    not_assessed_image,
    not_assessed_report,
    not_assessed_secondary_capture,
    not_assessed_text,
)
from chestaid.dicom_outputs.secondary_capture import (
    MIN_SIDE,
    TriageImage,
    secondary_capture,
    triage_image,
    triage_text,
)
from chestaid.dicom_outputs.structured_report import structured_report

__all__ = [
    "ALGORITHM_NAME",
    "DISCLAIMER",
    "MANUFACTURER",
    "MIN_SIDE",
    "MODEL_NAME",
    "NOT_ASSESSED",
    "NOT_ASSESSED_SC_SERIES_DESCRIPTION",
    "SC_SERIES_DESCRIPTION",
    "SR_SERIES_DESCRIPTION",
    "NotAssessedFinding",
    "OutputIdentity",
    "ReplacedReport",
    "StudyContext",
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
