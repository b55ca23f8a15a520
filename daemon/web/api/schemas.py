"""The JSON API's request and response bodies (the OpenAPI schema is built from them)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from daemon import feedback
from daemon.db.models import FeedbackLabel, FeedbackSource


class FromDomain(BaseModel):
    """A response read from a domain object's attributes (a row, a dataclass)."""

    model_config = ConfigDict(from_attributes=True)


class TokenRequest(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class TokenOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    username: str
    role: str


class Me(BaseModel):
    username: str
    role: str


class PasswordChange(BaseModel):
    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


class NotAssessedOut(FromDomain):
    reason: str = Field(
        description="stable code: featureless, noise, orientation, inverted or unfamiliar"
    )
    detail: str = Field(description="the reason in one sentence, for people")
    images: int = Field(description="how many of the study's images were not assessable")


class WorklistItemOut(FromDomain):
    position: int
    study_instance_uid: str
    band: str | None = Field(
        description="the band of the study's score; None when it stands as not assessed. An "
        "overdue or sender-HIGH study keeps its score's band: see reasons for its place"
    )
    score: float | None = Field(
        description="calibrated probability of pneumonia (triage, not diagnosis); None when "
        "the study stands as not assessed"
    )
    threshold: float
    above_threshold: bool | None = Field(description="None when there is no score")
    not_assessed: bool = Field(
        description="placed by an image ChestAid could not assess: after overdue and top-band "
        "studies, before every other band"
    )
    not_assessed_images: NotAssessedOut | None = Field(
        description="the study's images that were not assessable (the first one's reason), "
        "also when another image decides its place"
    )
    arrived_at: datetime
    waiting_seconds: int
    overdue: bool = Field(description="waiting longer than the maximum wait: promoted to the top")
    raised_by_sender: bool
    images: int
    model_version: str
    calibration_version: int
    reasons: list[Literal["urgent_by_score", "overdue", "sender_high", "not_assessed"]] = Field(
        description="why the study stands where it does: its score is in the top band, it "
        "waited longer than the maximum, its sender asked for HIGH priority, an image was "
        "not assessed"
    )
    viewer_url: str | None = Field(
        description="the study in the site's PACS viewer (web.viewer_url_template); None "
        "when not configured"
    )
    patient_name: str | None = Field(
        default=None,
        description="identifying fields of the study's header (None for studies received "
        "before they were kept, and past retention)",
    )
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = Field(default=None, description="YYYY-MM-DD")
    study_time: str | None = Field(default=None, description="HH:MM")
    patient_age: str | None = None
    patient_sex: str | None = None
    study_description: str | None = None
    modality: str | None = None


class WorklistPageOut(BaseModel):
    items: list[WorklistItemOut]
    total: int = Field(description="open studies matching the filters, on every page")
    offset: int
    limit: int
    page: int = Field(description="this page's number, from 1")
    per_page: int
    pages: int
    mode: Literal["live", "shadow"] = Field(
        description='the site\'s mode: "shadow" while ChestAid runs silently (results are '
        "scored and kept here, nothing is sent to PACS or RIS)"
    )


class ImageOut(FromDomain):
    sop_instance_uid: str
    series_instance_uid: str
    modality: str | None
    received_at: datetime
    state: str
    reason: str | None
    result_id: int | None
    score: float | None
    threshold: float | None
    above_threshold: bool | None
    band: str | None
    model_version: str | None
    calibration_version: int | None
    has_heatmap: bool
    has_pixels: bool
    assessable: bool | None = Field(
        description="False: ChestAid could not assess the image (no score, call, band or "
        "heatmap; see the reason); None: the image has no result"
    )
    not_assessable_reason: str | None = Field(
        description="featureless, noise, orientation, inverted or unfamiliar"
    )
    not_assessable_detail: str | None = Field(description="the reason in one sentence")
    quarter_turns: int = Field(
        description="quarter turns the image was given to score it upright (its heatmap is "
        "of the image as received)"
    )
    shadow: bool = Field(
        default=False,
        description="the result was made in shadow mode: kept here, never sent to PACS or RIS",
    )
    class_probabilities: list[tuple[str, float]] = Field(
        default_factory=list,
        description="an N-class model's calibrated probability of each class, as [name, "
        "probability] pairs in the model's order (the score is that of any class but "
        "NORMAL); empty for a binary model or an image not assessed",
    )


class FeedbackChangeOut(FromDomain):
    changed_by: str
    changed_at: datetime
    old_label: str | None
    new_label: str
    old_comment: str | None
    new_comment: str | None


class StudyOut(FromDomain):
    study_instance_uid: str
    images: list[ImageOut]
    feedback_label: str | None
    feedback_comment: str | None
    feedback_by: str | None
    feedback_at: datetime | None
    history: list[FeedbackChangeOut]
    read_by: str | None
    read_at: datetime | None


class FeedbackIn(BaseModel):
    label: FeedbackLabel
    comment: str | None = Field(default=None, max_length=feedback.MAX_COMMENT)


class ReadOut(BaseModel):
    study_instance_uid: str
    newly_read: bool


class UndoneReadOut(FromDomain):
    study_instance_uid: str
    read_by: str
    via: str = Field(description="explicit (marked read) or feedback")
    feedback_removed: bool = Field(
        description="a read made by feedback takes the feedback with it (kept in the audit log)"
    )


class RecentReadOut(FromDomain):
    study_instance_uid: str
    read_by: str
    read_at: datetime
    via: str = Field(description="explicit (marked read) or feedback")
    feedback_label: str | None
    band: str | None = Field(description="the band of the study's score")
    score: float | None
    threshold: float | None
    undo_until: datetime
    undoable: bool = Field(description="whether the caller may undo it now")


class RateOut(BaseModel):
    value: float | None = Field(description="None when undefined (no case in the denominator)")
    ci95: list[float | None] = Field(description="Wilson 95% interval [low, high]")


class ReportGroupOut(BaseModel):
    model_version: str = Field(description='"all" for the overall group')
    calibration_version: int | None = Field(description="None for the overall group")
    feedback: int
    labelled: int = Field(
        description="with a definite finding (indeterminate and not assessable left out)"
    )
    indeterminate: int
    not_assessable: int = Field(
        description="feedback on studies ChestAid could not assess: counted apart, never in "
        "the confusion matrix, rates or ECE"
    )
    by_source: dict[FeedbackSource, int] = Field(
        description="the feedback by where its label came from: a reader's click here, or "
        "the final report received from the RIS"
    )
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: RateOut
    specificity: RateOut
    ppv: RateOut
    npv: RateOut
    ece: float | None = Field(description="expected calibration error on the labelled cases")


class ShadowReportOut(BaseModel):
    mode: Literal["live", "shadow"] = Field(description="the site's mode now")
    results: int = Field(description="images scored in shadow mode")
    studies: int = Field(description="studies with an image scored in shadow mode")
    unlabelled: int = Field(description="of those studies, the ones with no label yet")
    first_scored_at: datetime | None = Field(description="the shadow period's first result")
    last_scored_at: datetime | None = Field(description="and its last")
    feedback: int = Field(description="labelled studies whose prediction was made in shadow")
    labelled: int = Field(
        description="with a definite finding (indeterminate and not assessable left out)"
    )
    indeterminate: int
    not_assessable: int
    by_source: dict[str, int] = Field(
        description="the labels by where they came from: a reader, or the final report"
    )
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: RateOut
    specificity: RateOut
    ppv: RateOut
    npv: RateOut
    ece: float | None = Field(description="expected calibration error on the labelled cases")


class LabelledCaseOut(BaseModel):
    study_instance_uid: str
    label: FeedbackLabel
    assessable: bool = Field(description="False: the prediction was not assessable")
    not_assessable_reason: str = Field(description="empty when assessable")
    score: float = Field(description="for audit only when the prediction was not assessable")
    logit: float
    threshold: float
    above_threshold: bool
    model_version: str
    calibration_version: int
    given_by: str
    given_at: datetime
    comment: str
    source: FeedbackSource = Field(
        description="reader: clicked here; report: from the final report"
    )
    evidence: str = Field(description="for a label from a report, the phrase that decided it")
    shadow: bool = Field(default=False, description="the prediction was made in shadow mode")
    # Only in an identified export (admins, audited); absent otherwise.
    patient_name: str | None = None
    patient_id: str | None = None
    accession_number: str | None = None
    study_date: str | None = None


class AlertOut(FromDomain):
    raised_at: datetime
    kind: str
    window_days: int
    message: str


class CalibrationOut(FromDomain):
    version: int
    state: str
    method: str
    threshold: float
    target_sensitivity: float
    cases: int = Field(validation_alias=AliasChoices("cases", "n_cases"))
    fitted_by: str
    fitted_at: datetime
    activated_by: str | None
    activated_at: datetime | None


class CalibrationPreviewOut(BaseModel):
    days: int
    since: datetime
    studies: int
    changed: int
    raised: int
    lowered: int
    flagged_before: int
    flagged_after: int
    not_compared: int


class CalibrationReviewOut(BaseModel):
    version: int
    refused: bool
    reasons: list[str]
    preview: CalibrationPreviewOut | None


class CalibrationActivateIn(BaseModel):
    # The number of recent studies that would change band, as the review counted it.
    confirm_changes: int = Field(ge=0, le=10**9)


class AnalysisOut(BaseModel):
    filename: str
    sha256: str
    source_format: str
    score: float
    logit: float
    threshold: float
    above_threshold: bool
    score_text: str = Field(
        description="the score as a percentage for display, with the digits that tell it "
        "apart from the threshold and keep their order"
    )
    threshold_text: str = Field(description="the threshold as a percentage, the same way")
    model_version: str
    calibration_version: int
    image_png: str = Field(description="the image as shown, PNG, base64")
    heatmap_png: str = Field(description="the Grad-CAM colour map at the same size, PNG, base64")
    saved_id: int | None = Field(description="set when the analysis was kept (keep=true)")


class ImageProblemOut(FromDomain):
    job_id: int
    state: Literal["failed", "skipped"]
    at: datetime = Field(description="when the job ended (UTC)")
    received_at: datetime
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    calling_ae_title: str
    reason: str = Field(description="why it failed or was skipped, in one sentence")
    attempts: int
    retryable: bool = Field(description="only a failed image is queued again by a retry")


class ImageProblemsOut(BaseModel):
    total: int = Field(description="how many images match, over all pages")
    limit: int
    offset: int
    items: list[ImageProblemOut]


class DeadDeliveryOut(FromDomain):
    delivery_id: int
    kind: str = Field(description="sc (secondary capture) or sr (structured report)")
    destination: str
    attempts: int
    last_status: int | None = Field(description="the destination's last DIMSE status")
    last_error: str
    created_at: datetime
    sop_instance_uid: str = Field(description="of the output")


class DeadDeliveriesOut(BaseModel):
    total: int = Field(description="how many dead deliveries match, over all pages")
    limit: int
    offset: int
    items: list[DeadDeliveryOut]


class RetryIn(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(
        default_factory=list, max_length=10_000
    )
    all: bool = Field(default=False, description="every failed image (or dead delivery)")


class RetryOut(BaseModel):
    queued: list[int] = Field(description="the ids queued again; others were left as they were")


class AuditEntryOut(FromDomain):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str | None
    detail: str | None = Field(description="JSON text")


class AuditEntriesOut(BaseModel):
    total: int = Field(description="how many entries match, over all pages")
    limit: int
    offset: int
    items: list[AuditEntryOut]
