"""What an admin mends by hand, and the audit trail: failed and skipped images, dead
deliveries (both with a retry, audited) and the audit search (admin)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from daemon import audit, operations
from daemon.days import DayRange, DayRangeError, day_range
from daemon.paging import Page
from daemon.web.api.common import ERRORS, ApiAdmin
from daemon.web.api.schemas import (
    AuditEntriesOut,
    AuditEntryOut,
    DeadDeliveriesOut,
    DeadDeliveryOut,
    ImageProblemOut,
    ImageProblemsOut,
    RetryIn,
    RetryOut,
)
from daemon.web.database import Reading, Writing

logger = logging.getLogger(__name__)
router = APIRouter()

First = Annotated[str, Query(alias="from", max_length=32, description="YYYY-MM-DD (UTC)")]
Last = Annotated[str, Query(alias="to", max_length=32, description="YYYY-MM-DD, included")]
Limit = Annotated[int, Query(ge=1, le=operations.MAX_PAGE)]
Offset = Annotated[int, Query(ge=0, le=2**62)]
LISTED = {**ERRORS, 422: {"description": "a bad date, state or page"}}


def _days(first: str, last: str) -> DayRange:
    try:
        return day_range(first, last)
    except DayRangeError as exc:
        raise HTTPException(422, str(exc)) from exc


@router.get("/images", response_model=ImageProblemsOut, responses=LISTED)
def get_images(
    request: Request,
    principal: ApiAdmin,
    session: Reading,
    state: Annotated[str, Query(max_length=16, description="failed, skipped or both")] = "",
    first: First = "",
    last: Last = "",
    limit: Limit = 50,
    offset: Offset = 0,
) -> ImageProblemsOut:
    """Failed and skipped images with their reasons, newest first (admin)."""
    days = _days(first, last)
    try:
        page = operations.image_problems(
            session, state=state, days=days, limit=limit, offset=offset
        )
    except operations.OperationsError as exc:
        raise HTTPException(422, str(exc)) from exc
    return ImageProblemsOut(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        items=[ImageProblemOut.model_validate(p) for p in page.items],
    )


@router.post("/images/retry", response_model=RetryOut, responses=ERRORS)
def retry_images(
    request: Request, body: RetryIn, principal: ApiAdmin, session: Writing
) -> RetryOut:
    """Queue failed images again: those of ``ids``, or every one with ``all`` (admin;
    audited). Skipped images and ids that are not failed are left as they are."""
    queued = operations.retry_images(
        session, actor=principal.username, via="api", ids=body.ids, all_failed=body.all
    )
    return RetryOut(queued=queued)


@router.get("/deliveries", response_model=DeadDeliveriesOut, responses=LISTED)
def get_deliveries(
    request: Request,
    principal: ApiAdmin,
    session: Reading,
    first: First = "",
    last: Last = "",
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeadDeliveriesOut:
    """Dead-lettered deliveries, newest first (admin)."""
    page = operations.dead_deliveries(session, days=_days(first, last), limit=limit, offset=offset)
    return DeadDeliveriesOut(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        items=[DeadDeliveryOut.model_validate(d) for d in page.items],
    )


@router.post("/deliveries/retry", response_model=RetryOut, responses=ERRORS)
def retry_deliveries(
    request: Request, body: RetryIn, principal: ApiAdmin, session: Writing
) -> RetryOut:
    """Queue dead deliveries again: those of ``ids``, or every one with ``all`` (admin;
    audited)."""
    queued = operations.retry_deliveries(
        session, actor=principal.username, via="api", ids=body.ids, all_dead=body.all
    )
    return RetryOut(queued=queued)


@router.get("/audit", response_model=AuditEntriesOut, responses=LISTED)
def get_audit(
    request: Request,
    principal: ApiAdmin,
    session: Reading,
    first: First = "",
    last: Last = "",
    actor: Annotated[str, Query(max_length=64, description="exactly this user")] = "",
    action: Annotated[str, Query(max_length=64, description="actions starting so")] = "",
    limit: Limit = 100,
    offset: Offset = 0,
) -> AuditEntriesOut:
    """The audit trail, newest first, filtered by days, actor and action (admin)."""
    entries, total = audit.search(
        session,
        days=_days(first, last),
        actor=actor.strip(),
        action_prefix=action.strip(),
        limit=limit,
        offset=offset,
    )
    page = Page(entries, total, limit, offset)
    return AuditEntriesOut(
        total=page.total,
        limit=page.limit,
        offset=page.offset,
        items=[AuditEntryOut.model_validate(e) for e in page.items],
    )
