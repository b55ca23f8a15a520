"""Admin pages for what needs mending by hand: failed and skipped images, dead-lettered
deliveries, each with a retry (the same audited service functions as the command line)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from daemon import operations
from daemon.days import DayRange, DayRangeError, day_range
from daemon.web.database import Reading, Writing
from daemon.web.pages.common import Admin, AdminPost, paging_links
from daemon.web.rendering import render
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 50
DayText = Annotated[str, Query(max_length=32)]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
Retried = Annotated[int | None, Query(ge=0, le=1_000_000)]


def _days(first: str, last: str) -> tuple[DayRange, str | None]:
    """The days asked for, or no filter and the reason they were refused."""
    try:
        return day_range(first, last), None
    except DayRangeError as exc:
        return DayRange(), str(exc)


@router.get("/images")
def images_page(
    request: Request,
    principal: Admin,
    session: Reading,
    state: Annotated[str, Query(max_length=16)] = "",
    first: Annotated[str, Query(alias="from", max_length=32)] = "",
    last: Annotated[str, Query(alias="to", max_length=32)] = "",
    page: PageNumber = 1,
    retried: Retried = None,
) -> Response:
    """Failed and skipped images with their reasons, newest first; a retry for failed ones."""
    days, error = _days(first, last)
    if error is None and state not in ("", *(s.value for s in operations.PROBLEM_STATES)):
        error = "State: choose failed or skipped (or both)."
    listed = None
    if error is None:
        offset = (page - 1) * PAGE_SIZE
        listed = operations.image_problems(
            session, state=state, days=days, limit=PAGE_SIZE, offset=offset
        )
    query = {"state": state, "from": first, "to": last}
    return render(
        request,
        "images.html",
        status_code=422 if error else 200,
        listed=listed,
        error=error,
        query=query,
        links=paging_links("/admin/images", query, listed) if listed else {},
        retried=retried,
    )


@router.post("/images/retry")
def retry_all_images(request: Request, principal: AdminPost, session: Writing) -> Response:
    """Queue every failed image again (audited)."""
    queued = operations.retry_images(session, actor=principal.username, via="web", all_failed=True)
    return RedirectResponse(f"/admin/images?retried={len(queued)}", status_code=303)


@router.post("/images/{job_id}/retry")
def retry_image(request: Request, job_id: Id, principal: AdminPost, session: Writing) -> Response:
    """Queue one failed image again (audited); one not failed is left as it is."""
    queued = operations.retry_images(session, actor=principal.username, via="web", ids=[job_id])
    return RedirectResponse(f"/admin/images?retried={len(queued)}", status_code=303)


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    principal: Admin,
    session: Reading,
    first: Annotated[str, Query(alias="from", max_length=32)] = "",
    last: Annotated[str, Query(alias="to", max_length=32)] = "",
    page: PageNumber = 1,
    retried: Retried = None,
) -> Response:
    """Dead-lettered deliveries, newest first, with a retry."""
    days, error = _days(first, last)
    listed = None
    if error is None:
        offset = (page - 1) * PAGE_SIZE
        listed = operations.dead_deliveries(session, days=days, limit=PAGE_SIZE, offset=offset)
    query = {"from": first, "to": last}
    return render(
        request,
        "deliveries.html",
        status_code=422 if error else 200,
        listed=listed,
        error=error,
        query=query,
        links=paging_links("/admin/deliveries", query, listed) if listed else {},
        retried=retried,
    )


@router.post("/deliveries/retry")
def retry_all_deliveries(request: Request, principal: AdminPost, session: Writing) -> Response:
    """Queue every dead delivery again (audited)."""
    queued = operations.retry_deliveries(
        session, actor=principal.username, via="web", all_dead=True
    )
    return RedirectResponse(f"/admin/deliveries?retried={len(queued)}", status_code=303)


@router.post("/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request, delivery_id: Id, principal: AdminPost, session: Writing
) -> Response:
    """Queue one dead delivery again (audited); one not dead is left as it is."""
    queued = operations.retry_deliveries(
        session, actor=principal.username, via="web", ids=[delivery_id]
    )
    return RedirectResponse(f"/admin/deliveries?retried={len(queued)}", status_code=303)
