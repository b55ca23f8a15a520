"""The worklist and studies: reading order, a study's images and scores, feedback, reads."""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from daemon import feedback, reads
from daemon.db.models import utcnow
from daemon.db.session import Session
from daemon.studies import study_detail
from daemon.web import views
from daemon.web.api.common import ERRORS, ApiUser
from daemon.web.api.schemas import (
    FeedbackIn,
    NotAssessedOut,
    ReadOut,
    RecentReadOut,
    StudyOut,
    UndoneReadOut,
    WorklistItemOut,
    WorklistPageOut,
)
from daemon.web.database import Reading, Writing
from daemon.web.security import (
    context,
)
from daemon.worklist import MAX_PAGE_ROWS, WorklistFilters, WorklistQueryError

DEFAULT_PAGE_ROWS = 100

logger = logging.getLogger(__name__)
router = APIRouter()


@router.get("/worklist", response_model=WorklistPageOut, responses={**ERRORS, 422: {}})
def get_worklist(
    request: Request,
    principal: ApiUser,
    session: Reading,
    page: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    per_page: Annotated[int | None, Query(ge=1, le=MAX_PAGE_ROWS)] = None,
    limit: Annotated[int | None, Query(ge=1, le=MAX_PAGE_ROWS)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    band: Annotated[
        str | None, Query(max_length=16, description="a band's name or NOT_ASSESSED")
    ] = None,
    waiting: Annotated[
        int | None, Query(ge=0, le=10_000_000, description="waiting longer than this many minutes")
    ] = None,
    modality: Annotated[str | None, Query(max_length=16)] = None,
    date_from: Annotated[
        date | None, Query(alias="from", description="study date from (YYYY-MM-DD)")
    ] = None,
    date_to: Annotated[
        date | None, Query(alias="to", description="study date to (YYYY-MM-DD)")
    ] = None,
    q: Annotated[
        str | None,
        Query(max_length=64, description="accession number or patient ID, exact or prefix"),
    ] = None,
) -> WorklistPageOut:
    """Open studies (scored, not read) in reading order, one page, with the total.

    ``mode`` says whether the site runs live or in shadow (nothing sent to PACS or RIS).

    ``page`` and ``per_page`` (or ``limit`` and ``offset``) choose the page, at most
    500 rows; ``total`` counts every open study matching the filters.
    """
    ctx = context(request)
    size = per_page or limit or DEFAULT_PAGE_ROWS
    start = (page - 1) * size if page is not None else offset
    filters = WorklistFilters(
        band=band.strip().upper() if band else None,
        waiting_minutes=None if waiting is None else float(waiting),
        modality=modality,
        study_date_from=date_from,
        study_date_to=date_to,
        search=q,
    )
    try:
        view = views.worklist_view(session, ctx, filters=filters, offset=start, limit=size)
    except WorklistQueryError as exc:
        raise HTTPException(422, str(exc)) from exc
    items = [
        WorklistItemOut.model_validate(
            {
                **dataclasses.asdict(r),
                "not_assessed_images": None
                if not r.not_assessed_images
                else NotAssessedOut(
                    reason=r.not_assessed_reason or "",
                    detail=r.not_assessed_detail or "",
                    images=r.not_assessed_images,
                ),
            }
        )
        for r in view.rows
    ]
    return WorklistPageOut(
        items=items,
        total=view.total,
        offset=start,
        limit=size,
        page=start // size + 1,
        per_page=size,
        pages=view.pages,
        mode=ctx.settings.site.mode,
    )


def _study_out(session: Session, uid: str) -> StudyOut:
    detail = study_detail(session, study_instance_uid=uid)
    if detail is None:
        raise HTTPException(404, f"no study {uid}")
    return StudyOut.model_validate(detail)


@router.get("/studies/{uid}", response_model=StudyOut, responses={**ERRORS, 404: {}})
def get_study(uid: str, principal: ApiUser, session: Reading) -> StudyOut:
    """A study's images and scores, its feedback with history, and its read."""
    return _study_out(session, uid)


@router.put(
    "/studies/{uid}/feedback", response_model=StudyOut, responses={**ERRORS, 404: {}, 422: {}}
)
def put_feedback(uid: str, body: FeedbackIn, principal: ApiUser, session: Writing) -> StudyOut:
    """Give or change the finding on a study (history kept; marks the study read)."""
    try:
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
    return _study_out(session, uid)


@router.post("/studies/{uid}/read", response_model=ReadOut, responses={**ERRORS, 404: {}, 409: {}})
def post_read(
    request: Request,
    uid: str,
    principal: ApiUser,
    session: Writing,
    confirm_urgent: bool = False,
) -> ReadOut:
    """Mark a study read without feedback (it leaves the worklist). A study in the top band
    (by score or its sender's HIGH priority) needs ``confirm_urgent=true``: 409 without."""
    ctx = context(request)
    try:
        newly = reads.mark_read(
            session,
            study_instance_uid=uid,
            user=principal.username,
            top_band=ctx.serving.current(session).bands.cutoffs[0][0],
            confirmed=confirm_urgent,
        )
    except feedback.UnknownStudyError as exc:
        raise HTTPException(404, str(exc)) from exc
    except reads.ConfirmationRequiredError as exc:
        raise HTTPException(409, str(exc)) from exc
    return ReadOut(study_instance_uid=uid, newly_read=newly)


@router.delete("/studies/{uid}/read", response_model=UndoneReadOut, responses={**ERRORS, 409: {}})
def delete_read(request: Request, uid: str, principal: ApiUser, session: Writing) -> UndoneReadOut:
    """Undo a study's read within ``worklist.undo_minutes`` (its reader or an admin): it
    comes back on the worklist; a read made by feedback removes that feedback too (kept in
    the audit log). 403 for someone else's read, 409 when not read or too late."""
    ctx = context(request)
    try:
        undone = reads.undo_read(
            session,
            study_instance_uid=uid,
            user=principal.username,
            admin=principal.is_admin,
            window=timedelta(minutes=ctx.settings.worklist.undo_minutes),
        )
    except reads.UndoNotAllowedError as exc:
        raise HTTPException(403, str(exc)) from exc
    except reads.ReadError as exc:
        raise HTTPException(409, str(exc)) from exc
    return UndoneReadOut.model_validate(undone)


@router.get("/reads", response_model=list[RecentReadOut], responses=ERRORS)
def get_reads(
    request: Request,
    principal: ApiUser,
    session: Reading,
    hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
) -> list[RecentReadOut]:
    """Everyone's reads of the last ``hours``, newest first (at most 200), with whether the
    caller may still undo each."""
    ctx = context(request)
    now = utcnow()
    found = reads.recent_reads(
        session,
        user=principal.username,
        admin=principal.is_admin,
        window=timedelta(minutes=ctx.settings.worklist.undo_minutes),
        since=now - timedelta(hours=hours),
        now=now,
    )
    return [RecentReadOut.model_validate(r) for r in found]
