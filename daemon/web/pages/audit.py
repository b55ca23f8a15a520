"""The audit trail for admins: searched by days, actor and action, a page at a time, and
exported as CSV or JSON (the export is itself audited)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from daemon import audit
from daemon.days import DayRangeError, day_range
from daemon.db.session import Session
from daemon.paging import Page
from daemon.web.database import Reading, Writing
from daemon.web.pages.common import Admin, paging_links
from daemon.web.rendering import render

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)

PAGE_SIZE = 100
First = Annotated[str, Query(alias="from", max_length=32)]
Last = Annotated[str, Query(alias="to", max_length=32)]
Actor = Annotated[str, Query(max_length=64)]
Action = Annotated[str, Query(max_length=64)]
MEDIA = {"csv": "text/csv", "json": "application/json"}


@router.get("/audit")
def audit_page(
    request: Request,
    principal: Admin,
    session: Reading,
    first: First = "",
    last: Last = "",
    actor: Actor = "",
    action: Action = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The audit trail, newest first, filtered; a bad date is said, not guessed."""
    query = {"from": first, "to": last, "actor": actor, "action": action}
    try:
        days = day_range(first, last)
    except DayRangeError as exc:
        return render(
            request, "audit.html", status_code=422, error=str(exc), query=query, listed=None
        )
    entries, total = audit.search(
        session,
        days=days,
        actor=actor.strip(),
        action_prefix=action.strip(),
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    listed = Page(entries, total, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    return render(
        request,
        "audit.html",
        error=None,
        query=query,
        listed=listed,
        links=paging_links("/admin/audit", query, listed),
        export_query={k: v for k, v in query.items() if v},
    )


@router.get("/audit.csv")
def audit_csv(
    request: Request,
    principal: Admin,
    session: Writing,
    first: First = "",
    last: Last = "",
    actor: Actor = "",
    action: Action = "",
) -> Response:
    """The entries the filters select, as CSV for spreadsheets (audited)."""
    return _export(request, session, principal.username, "csv", first, last, actor, action)


@router.get("/audit.json")
def audit_json(
    request: Request,
    principal: Admin,
    session: Writing,
    first: First = "",
    last: Last = "",
    actor: Actor = "",
    action: Action = "",
) -> Response:
    """The entries the filters select, as JSON (audited)."""
    return _export(request, session, principal.username, "json", first, last, actor, action)


def _export(
    request: Request,
    session: Session,
    username: str,
    fmt: str,
    first: str,
    last: str,
    actor: str,
    action: str,
) -> Response:
    try:
        days = day_range(first, last)
    except DayRangeError as exc:
        return render(
            request, "error.html", status_code=422, title="Not exported", message=str(exc)
        )
    text = audit.export(
        session,
        actor=username,
        fmt=fmt,
        days=days,
        by=actor.strip(),
        action_prefix=action.strip(),
    )
    return Response(
        text,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="chestaid-audit.{fmt}"'},
    )
