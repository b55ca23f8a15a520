"""The audit trail for admins: searched by days, actor and action, a page at a time, and
exported as CSV or JSON (the export is itself audited)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from daemon import audit
from daemon.days import DayRangeError, day_range
from daemon.db.session import reading, writing
from daemon.paging import Page
from daemon.web.database import Reading
from daemon.web.pages.common import Admin, paging_links
from daemon.web.rendering import render
from daemon.web.security import context

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
    first: First = "",
    last: Last = "",
    actor: Actor = "",
    action: Action = "",
) -> Response:
    """The entries the filters select, as CSV for spreadsheets (audited)."""
    return _export(request, principal.username, "csv", first, last, actor, action)


@router.get("/audit.json")
def audit_json(
    request: Request,
    principal: Admin,
    first: First = "",
    last: Last = "",
    actor: Actor = "",
    action: Action = "",
) -> Response:
    """The entries the filters select, as JSON (audited)."""
    return _export(request, principal.username, "json", first, last, actor, action)


def _export(
    request: Request,
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
    by, prefix = actor.strip(), action.strip()
    # Read outside the write lock (an export may be long); then record it, briefly.
    with reading(context(request).sessions) as session:
        rows, matching = audit.export_rows(session, days=days, by=by, action_prefix=prefix)
    text = audit.export_text(rows, fmt)
    with writing(context(request).sessions) as session:
        audit.record_export(
            session,
            actor=username,
            fmt=fmt,
            days=days,
            rows=len(rows),
            matching=matching,
            by=by,
            action_prefix=prefix,
        )
    return Response(
        text,
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="chestaid-audit.{fmt}"'},
    )
