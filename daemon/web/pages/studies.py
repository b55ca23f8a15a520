"""A study: its images with scores and heatmaps, feedback, and marking it read."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import ChestAidError
from daemon import feedback
from daemon.db.models import FeedbackLabel
from daemon.db.session import reading, writing
from daemon.errors import DaemonError
from daemon.studies import StudyDetail, image_source, study_detail
from daemon.web import imaging, views
from daemon.web.database import Reading
from daemon.web.pages.common import Posted, User_, heatmap_response
from daemon.web.rendering import render, url_part
from daemon.web.security import (
    context,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def _study(request: Request, uid: str) -> StudyDetail | None:
    with reading(context(request).sessions) as session:
        return study_detail(session, study_instance_uid=uid)


def _no_such_study(request: Request) -> Response:
    return render(
        request,
        "error.html",
        status_code=404,
        title="No such study",
        message="ChestAid has not received this study.",
    )


@router.get("/studies/{uid}")
def study_page(request: Request, uid: str, principal: User_) -> Response:
    """A study: its images with the heatmap, the score, the feedback form and history."""
    detail = _study(request, uid)
    if detail is None:
        return _no_such_study(request)
    return render(
        request,
        "study.html",
        study=detail,
        labels=[(label.value, views.LABEL_TEXT[label]) for label in FeedbackLabel],
        label_text={label.value: text for label, text in views.LABEL_TEXT.items()},
        overlay_alpha=context(request).settings.worker.overlay_alpha,
        max_comment=feedback.MAX_COMMENT,
    )


@router.post("/studies/{uid}/feedback")
def give_feedback(
    request: Request,
    uid: str,
    principal: Posted,
    label: Annotated[str, Form(max_length=32)] = "",
    comment: Annotated[str, Form(max_length=feedback.MAX_COMMENT)] = "",
) -> Response:
    """Give or change the study's finding; the study is marked read."""
    ctx = context(request)
    try:
        finding = FeedbackLabel(label)
    except ValueError:
        return render(
            request,
            "error.html",
            status_code=422,
            title="Not accepted",
            message="Choose a finding.",
        )
    try:
        with writing(ctx.sessions) as session:
            feedback.record_feedback(
                session,
                study_instance_uid=uid,
                label=finding,
                user=principal.username,
                comment=comment.strip() or None,
            )
    except feedback.UnknownStudyError:
        return render(
            request,
            "error.html",
            status_code=404,
            title="No such study",
            message="ChestAid has not scored this study.",
        )
    except feedback.FeedbackError as exc:
        return render(
            request, "error.html", status_code=422, title="Not accepted", message=str(exc)
        )
    return RedirectResponse(f"/studies/{url_part(uid)}?saved=1", status_code=303)


@router.post("/studies/{uid}/read")
def mark_read(request: Request, uid: str, principal: Posted) -> Response:
    """Mark a study read without feedback; it leaves the worklist."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            feedback.mark_read(session, study_instance_uid=uid, user=principal.username)
    except feedback.UnknownStudyError:
        return _no_such_study(request)
    return RedirectResponse("/worklist", status_code=303)


@router.get("/studies/{uid}/images/{result_id}/source.png")
def source_png(
    request: Request, uid: str, result_id: Id, principal: User_, session: Reading
) -> Response:
    """A scored image of the study as shown (8-bit grey PNG)."""
    ctx = context(request)
    spool_name, _ = image_source(session, study_instance_uid=uid, result_id=result_id)
    if spool_name is None:
        return Response(status_code=404)
    try:
        image = imaging.study_image(
            ctx.settings.storage.spool / spool_name, max_pixels=ctx.settings.worker.max_pixels
        )
    except (ChestAidError, DaemonError) as exc:
        # Purged by retention (410), or a file that no longer decodes (a typed 4xx).
        logger.warning("study image not shown", extra={"result_id": result_id, "reason": str(exc)})
        return Response(status_code=imaging.http_status(exc))
    return Response(imaging.grey_png(image.pixels), media_type="image/png")


@router.get("/studies/{uid}/images/{result_id}/heatmap.png")
def heatmap_png(
    request: Request,
    uid: str,
    result_id: Id,
    principal: User_,
    session: Reading,
    width: int = 512,
    height: int = 512,
) -> Response:
    """The image's stored Grad-CAM map as a colour PNG of the requested size."""
    _, cam = image_source(session, study_instance_uid=uid, result_id=result_id)
    if cam is None:
        return Response(status_code=404)
    size = (min(max(height, 8), 2048), min(max(width, 8), 2048))
    return heatmap_response(cam, size, what=f"result {result_id}")
