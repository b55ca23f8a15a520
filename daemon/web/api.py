"""The JSON API: the worklist, studies, feedback, the report, alerts, calibration, analysis.

Same accounts and roles as the pages. Authenticate with ``POST /api/v1/tokens`` and
send ``Authorization: Bearer <token>``; a browser's session cookie works too, with the
``X-CSRF-Token`` header on changes.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from chestaid.display import percent_pair_text
from chestaid.errors import ChestAidError
from daemon import accounts, analyses, feedback, monitoring, recalibration
from daemon.db.models import FeedbackLabel
from daemon.db.session import writing
from daemon.heatmaps import encode_cam
from daemon.studies import study_detail
from daemon.web import imaging, views
from daemon.web.security import (
    Principal,
    api_admin,
    api_user,
    api_user_pending,
    client_address,
    context,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")

ANALYSIS_WAIT_SECONDS = 30.0  # for a free analysis slot, then 503
ApiUser = Annotated[Principal, Depends(api_user)]
ApiAdmin = Annotated[Principal, Depends(api_admin)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "the role does not allow this, or the CSRF header is missing"},
}


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


class NotAssessedOut(BaseModel):
    reason: str = Field(
        description="stable code: featureless, noise, orientation, inverted or unfamiliar"
    )
    detail: str = Field(description="the reason in one sentence, for people")
    images: int = Field(description="how many of the study's images were not assessable")


class WorklistItemOut(BaseModel):
    position: int
    study_instance_uid: str
    band: str | None = Field(
        description="None when the study stands as not assessed (unless overdue or raised "
        "by its sender)"
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


class ImageOut(BaseModel):
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


class FeedbackChangeOut(BaseModel):
    changed_by: str
    changed_at: datetime
    old_label: str | None
    new_label: str
    old_comment: str | None
    new_comment: str | None


class StudyOut(BaseModel):
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


class AlertOut(BaseModel):
    raised_at: datetime
    kind: str
    window_days: int
    message: str


class CalibrationOut(BaseModel):
    version: int
    state: str
    method: str
    threshold: float
    target_sensitivity: float
    cases: int
    fitted_by: str
    fitted_at: datetime
    activated_by: str | None
    activated_at: datetime | None


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


@router.post("/tokens", response_model=TokenOut, responses={401: ERRORS[401], 429: {}})
def issue_token(request: Request, body: TokenRequest) -> TokenOut:
    """Sign in and get a bearer token (rate limited like the sign-in page)."""
    ctx = context(request)
    address = client_address(request)
    try:
        user = accounts.sign_in(
            ctx.sessions,
            username=body.username,
            password=body.password,
            address=address,
            settings=ctx.settings.web,
        )
    except accounts.SignInRateLimitedError as exc:
        raise HTTPException(
            429,
            str(exc),
            headers={"Retry-After": str(int(exc.retry_after.total_seconds()) + 1)},
        ) from exc
    except accounts.SignInError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    with writing(ctx.sessions) as session:
        started = accounts.start_session(
            session, user=user, kind=accounts.API, address=address, settings=ctx.settings.web
        )
    return TokenOut(
        token=started.token,
        expires_at=started.expires_at,
        username=user.username,
        role=user.role.value,
    )


@router.delete("/tokens/current", status_code=204, responses=ERRORS)
def revoke_token(request: Request, principal: ApiUser) -> Response:
    """Sign out: the token (or session) stops working at once."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        live = accounts.web_session(session, principal.session_id)
        if live is not None:
            accounts.end_session(session, web_session=live)
    return Response(status_code=204)


@router.get("/me", response_model=Me, responses=ERRORS)
def me(principal: Annotated[Principal, Depends(api_user_pending)]) -> Me:
    """Who the token belongs to (works before a one-time password is changed)."""
    return Me(username=principal.username, role=principal.role.value)


class PasswordChange(BaseModel):
    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


@router.post("/me/password", status_code=204, responses={**ERRORS, 422: {}})
def change_password(
    request: Request,
    body: PasswordChange,
    principal: Annotated[Principal, Depends(api_user_pending)],
) -> Response:
    """Choose a new password (needed after a one-time password); other sessions end."""
    ctx = context(request)
    try:
        accounts.change_password(
            ctx.sessions,
            user_id=principal.user_id,
            current=body.current,
            new=body.new,
            settings=ctx.settings.web,
            keep_session_id=principal.session_id,
        )
    except accounts.AccountError as exc:
        raise HTTPException(422, str(exc)) from exc
    return Response(status_code=204)


@router.get("/worklist", response_model=list[WorklistItemOut], responses=ERRORS)
def get_worklist(
    request: Request,
    principal: ApiUser,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[WorklistItemOut]:
    """Open studies (scored, not read) in reading order; ``limit`` from ``offset``."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        rows = views.worklist_rows(session, ctx)[offset : offset + limit]
    return [
        WorklistItemOut(
            position=r.position,
            study_instance_uid=r.study_instance_uid,
            band=r.band,
            score=r.score,
            threshold=r.threshold,
            above_threshold=r.above_threshold,
            not_assessed=r.not_assessed,
            not_assessed_images=None
            if not r.not_assessed_images
            else NotAssessedOut(
                reason=r.not_assessed_reason or "",
                detail=r.not_assessed_detail or "",
                images=r.not_assessed_images,
            ),
            arrived_at=r.arrived_at,
            waiting_seconds=r.waiting_seconds,
            overdue=r.overdue,
            raised_by_sender=r.raised_by_sender,
            images=r.images,
            model_version=r.model_version,
            calibration_version=r.calibration_version,
        )
        for r in rows
    ]


@router.get("/studies/{uid}", response_model=StudyOut, responses={**ERRORS, 404: {}})
def get_study(request: Request, uid: str, principal: ApiUser) -> StudyOut:
    """A study's images and scores, its feedback with history, and its read."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        detail = study_detail(session, study_instance_uid=uid)
        if detail is None:
            raise HTTPException(404, f"no study {uid}")
        history = [
            FeedbackChangeOut(
                changed_by=h.changed_by,
                changed_at=h.changed_at,
                old_label=h.old_label,
                new_label=h.new_label,
                old_comment=h.old_comment,
                new_comment=h.new_comment,
            )
            for h in detail.history
        ]
    return StudyOut(
        study_instance_uid=detail.study_instance_uid,
        images=[
            ImageOut(**{k: getattr(i, k) for k in ImageOut.model_fields}) for i in detail.images
        ],
        feedback_label=detail.feedback_label,
        feedback_comment=detail.feedback_comment,
        feedback_by=detail.feedback_by,
        feedback_at=detail.feedback_at,
        history=history,
        read_by=detail.read_by,
        read_at=detail.read_at,
    )


@router.put(
    "/studies/{uid}/feedback", response_model=StudyOut, responses={**ERRORS, 404: {}, 422: {}}
)
def put_feedback(request: Request, uid: str, body: FeedbackIn, principal: ApiUser) -> StudyOut:
    """Give or change the finding on a study (history kept; marks the study read)."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            feedback.record_feedback(
                session,
                study_instance_uid=uid,
                label=body.label,
                user=principal.username,
                comment=(body.comment or "").strip() or None,
            )
    except feedback.UnknownStudyError as exc:
        raise HTTPException(404, str(exc)) from exc
    except feedback.FeedbackError as exc:
        raise HTTPException(422, str(exc)) from exc
    return get_study(request, uid, principal)


@router.post("/studies/{uid}/read", response_model=ReadOut, responses={**ERRORS, 404: {}})
def post_read(request: Request, uid: str, principal: ApiUser) -> ReadOut:
    """Mark a study read without feedback (it leaves the worklist)."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            newly = feedback.mark_read(session, study_instance_uid=uid, user=principal.username)
    except feedback.UnknownStudyError as exc:
        raise HTTPException(404, str(exc)) from exc
    return ReadOut(study_instance_uid=uid, newly_read=newly)


def _since(text: str | None) -> datetime | None:
    """A ``since`` query value as a time; 422 when it is neither a span nor a date."""
    try:
        return feedback.parse_since(text) if text else None
    except feedback.FeedbackError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/report", response_model=list[ReportGroupOut], responses={**ERRORS, 422: {}})
def get_report(
    request: Request,
    principal: ApiAdmin,
    since: Annotated[str | None, Query(description="30d, 12h, 90m or an ISO date")] = None,
) -> list[dict[str, Any]]:
    """The feedback report: overall, then per model and calibration version (admin)."""
    ctx = context(request)
    start = _since(since)
    with writing(ctx.sessions) as session:
        cases = feedback.labelled_cases(session, since=start)
    return [group.to_dict() for group in feedback.report(cases)]


@router.get("/feedback", response_model=list[LabelledCaseOut], responses={**ERRORS, 422: {}})
def export_feedback(
    request: Request,
    principal: ApiAdmin,
    since: Annotated[str | None, Query(description="30d, 12h, 90m or an ISO date")] = None,
) -> list[dict[str, Any]]:
    """Every feedback with its prediction (the export, admin)."""
    ctx = context(request)
    start = _since(since)
    with writing(ctx.sessions) as session:
        return [case.to_dict() for case in feedback.labelled_cases(session, since=start)]


@router.get("/alerts", response_model=list[AlertOut], responses=ERRORS)
def get_alerts(request: Request, principal: ApiUser) -> list[AlertOut]:
    """The alerts that still hold (those of each window's latest monitoring run)."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        return [
            AlertOut(
                raised_at=a.raised_at, kind=a.kind, window_days=a.window_days, message=a.message
            )
            for a in monitoring.banner_alerts(session)
        ]


def _calibration_out(row: Any) -> CalibrationOut:
    return CalibrationOut(
        version=row.version,
        state=row.state.value,
        method=row.method,
        threshold=row.threshold,
        target_sensitivity=row.target_sensitivity,
        cases=row.n_cases,
        fitted_by=row.fitted_by,
        fitted_at=row.fitted_at,
        activated_by=row.activated_by,
        activated_at=row.activated_at,
    )


@router.get("/calibrations", response_model=list[CalibrationOut], responses=ERRORS)
def get_calibrations(request: Request, principal: ApiAdmin) -> list[CalibrationOut]:
    """Local calibration versions, newest first (admin)."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        return [_calibration_out(r) for r in recalibration.versions(session)]


@router.post(
    "/calibrations/{version}/activate",
    response_model=CalibrationOut,
    responses={**ERRORS, 404: {}},
)
def activate_calibration(request: Request, version: Id, principal: ApiAdmin) -> CalibrationOut:
    """Put a calibration version in use for the next study (admin; audited)."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            return _calibration_out(
                recalibration.activate(session, version=version, user=principal.username)
            )
    except recalibration.RecalibrationError as exc:
        raise HTTPException(404, str(exc)) from exc


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes without reading the rest into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the image is larger than {limit // 2**20} MB")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the image is larger than {limit // 2**20} MB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/analyses",
    response_model=AnalysisOut,
    responses={**ERRORS, 413: {}, 415: {}, 422: {}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def analyse(
    request: Request,
    principal: ApiUser,
    filename: Annotated[str, Query(max_length=255)] = "upload",
    keep: bool = False,
) -> AnalysisOut:
    """Score an uploaded DICOM, PNG or JPEG and return the heatmap.

    The body is the file itself. It is kept in memory only; nothing is stored unless
    ``keep=true`` (then the displayed image, without any DICOM header, and the result).
    """
    ctx = context(request)
    limit = ctx.settings.web.upload_max_mb * 2**20
    data = await _read_capped(request, limit)

    def work() -> AnalysisOut:
        if not ctx.analysis_slots.acquire(timeout=ANALYSIS_WAIT_SECONDS):
            raise HTTPException(
                503, "other images are being analysed; try again shortly", {"Retry-After": "10"}
            )
        try:
            return analyse_now()
        finally:
            ctx.analysis_slots.release()

    def analyse_now() -> AnalysisOut:
        model = ctx.serving.model()
        try:
            result = imaging.analyse_upload(
                data,
                filename=filename,
                model=model,
                max_pixels=ctx.settings.worker.max_pixels,
                max_bytes=limit,
            )
        except (ChestAidError, imaging.UploadError) as exc:
            raise HTTPException(imaging.http_status(exc), str(exc)) from exc
        image_png = imaging.grey_png(result.pixels)
        height, width = result.pixels.shape
        heat_png = imaging.heatmap_png(result.cam, size=(height, width))
        saved_id = None
        if keep:
            kept = analyses.NewAnalysis(
                filename=filename,
                sha256=result.sha256,
                logit=result.logit,
                score=result.score,
                threshold=result.threshold,
                model_version=result.model_version,
                calibration_version=result.calibration_version,
                cam=encode_cam(result.cam),
                image_png=image_png,
            )
            with writing(ctx.sessions) as session:
                saved_id = analyses.keep(session, user_id=principal.user_id, analysis=kept)
        logger.info(
            "image analysed",
            extra={
                "user": principal.username,
                "sha256": result.sha256[:16],
                "score": round(result.score, 6),
                "kept": keep,
            },
        )
        score_text, threshold_text = percent_pair_text(result.score, result.threshold)
        return AnalysisOut(
            filename=filename,
            sha256=result.sha256,
            source_format=result.source_format,
            score=result.score,
            logit=result.logit,
            threshold=result.threshold,
            above_threshold=result.above_threshold,
            score_text=score_text,
            threshold_text=threshold_text,
            model_version=result.model_version,
            calibration_version=result.calibration_version,
            image_png=base64.b64encode(image_png).decode(),
            heatmap_png=base64.b64encode(heat_png).decode(),
            saved_id=saved_id,
        )

    return await run_in_threadpool(work)
