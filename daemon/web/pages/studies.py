"""A study: its images with scores and heatmaps, feedback, and marking it read."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import ChestAidError
from daemon import feedback, reads
from daemon.db.models import FeedbackLabel, utcnow
from daemon.db.session import Session, reading, writing
from daemon.errors import DaemonError
from daemon.studies import image_source, study_detail
from daemon.web import imaging, views
from daemon.web.database import Reading
from daemon.web.pages.common import Posted, User_, heatmap_response
from daemon.web.rendering import render, url_part
from daemon.web.security import (
    Principal,
    context,
)
from daemon.web.views import Id, next_study, study_place, viewer_url

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
RECENT_HOURS = 24  # the recently-read page's span
READS_SHOWN = 50  # rows of each of its tables


def undo_window(request: Request) -> timedelta:
    """How long after a read it may be undone (``worklist.undo_minutes``)."""
    return timedelta(minutes=context(request).settings.worklist.undo_minutes)


def top_band(request: Request, session: Session) -> str:
    """The name of the top priority band of the model in service."""
    return context(request).serving.current(session).bands.cutoffs[0][0]


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
    """A study: its images with the heatmap, the score, the feedback form and history,
    why it stands where it does, the next study, and undo while a read may be undone."""
    ctx = context(request)
    with reading(ctx.sessions) as session:
        detail = study_detail(session, study_instance_uid=uid)
        if detail is not None:
            place = study_place(session, ctx, uid)
            urgent = reads.urgent(
                session, study_instance_uid=uid, top_band=top_band(request, session)
            )
            undoable = reads.recent_read(
                session,
                study_instance_uid=uid,
                user=principal.username,
                admin=principal.is_admin,
                window=undo_window(request),
            )
    if detail is None:
        return _no_such_study(request)
    return render(
        request,
        "study.html",
        study=detail,
        place=place,
        urgent=urgent,
        undoable=undoable,
        viewer=viewer_url(
            ctx.settings.web.viewer_url_template,
            study_instance_uid=uid,
            accession_number=place.accession_number,
        ),
        labels=[(label.value, views.LABEL_TEXT[label]) for label in FeedbackLabel],
        label_text={label.value: text for label, text in views.LABEL_TEXT.items()},
        overlay_alpha=context(request).settings.worker.overlay_alpha,
        max_comment=feedback.MAX_COMMENT,
    )


@router.get("/studies/{uid}/next")
def next_study_page(request: Request, uid: str, principal: User_, session: Reading) -> Response:
    """The next open study after this one in reading order (the first open one when this
    one is read); the worklist when there is none."""
    found = next_study(session, context(request), uid)
    target = "/worklist" if found is None else f"/studies/{url_part(found)}"
    return RedirectResponse(target, status_code=303)


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
def mark_read(
    request: Request,
    uid: str,
    principal: Posted,
    confirm_urgent: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Mark a study read without feedback; it leaves the worklist, which then offers to
    undo it. A study in the top band needs ``confirm_urgent=yes``: without it, a 409 page
    says why and asks again."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            reads.mark_read(
                session,
                study_instance_uid=uid,
                user=principal.username,
                top_band=top_band(request, session),
                confirmed=confirm_urgent == "yes",
            )
    except feedback.UnknownStudyError:
        return _no_such_study(request)
    except reads.ConfirmationRequiredError:
        return render(request, "confirm_read.html", status_code=409, uid=uid)
    return RedirectResponse(f"/worklist?read={url_part(uid)}", status_code=303)


UNDO_BACK = {"study": "/studies/{uid}", "reads": "/reads", "worklist": "/worklist"}


@router.post("/studies/{uid}/undo-read")
def undo_read(
    request: Request,
    uid: str,
    principal: Posted,
    back: Annotated[str, Form(max_length=16)] = "study",
) -> Response:
    """Undo the study's read (its reader or an admin, within the undo window): it comes
    back on the worklist; a read made by feedback takes the feedback with it."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            reads.undo_read(
                session,
                study_instance_uid=uid,
                user=principal.username,
                admin=principal.is_admin,
                window=undo_window(request),
            )
    except reads.UndoNotAllowedError as exc:
        return _undo_refused(request, 403, str(exc))
    except reads.NotReadError:
        # A fixed text: the UID in the address may name no study at all.
        return _undo_refused(
            request, 409, "This study is not marked read (its read may have been undone already)."
        )
    except reads.ReadError as exc:
        return _undo_refused(request, 409, str(exc))
    target = UNDO_BACK.get(back, UNDO_BACK["study"]).format(uid=url_part(uid))
    return RedirectResponse(f"{target}?undone={url_part(uid)}", status_code=303)


def _undo_refused(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status_code=status, title="Not undone", message=message)


@router.get("/reads")
def recent_reads(request: Request, principal: User_) -> Response:
    """The reads of the last 24 hours, the user's own first, with undo while it is open."""
    return render(request, "reads.html", **reads_page(request, principal))


def reads_page(request: Request, principal: Principal) -> dict[str, Any]:
    """What the recently-read page shows."""
    now = utcnow()
    with reading(context(request).sessions) as session:
        recent = reads.recent_reads(
            session,
            user=principal.username,
            admin=principal.is_admin,
            window=undo_window(request),
            since=now - timedelta(hours=RECENT_HOURS),
            now=now,
        )
    mine = [r for r in recent if r.read_by == principal.username]
    return {
        "mine": mine[:READS_SHOWN],
        "mine_total": len(mine),
        "everyone": recent[:READS_SHOWN],
        "everyone_total": len(recent),
        "listed_at_most": reads.RECENT_LIMIT,
        "hours": RECENT_HOURS,
        "undo_minutes": context(request).settings.worklist.undo_minutes,
        "undone": bool(request.query_params.get("undone")),
        "label_text": {label.value: text for label, text in views.LABEL_TEXT.items()},
    }


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
