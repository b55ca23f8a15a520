"""The worklist page and its periodically refreshed rows."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from daemon.web import views
from daemon.web.database import Reading
from daemon.web.pages.common import User_
from daemon.web.rendering import render
from daemon.web.security import (
    context,
)

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/worklist")
def worklist_page(request: Request, principal: User_, session: Reading) -> Response:
    """The worklist, most urgent first."""
    ctx = context(request)
    rows = views.worklist_rows(session, ctx)
    shown = ctx.settings.web.worklist_rows
    return render(
        request,
        "worklist.html",
        rows=rows[:shown],
        total=len(rows),
        bands=ctx.serving.current(session).bands.cutoffs,
    )


@router.get("/worklist/rows")
def worklist_rows(request: Request, principal: User_, session: Reading) -> Response:
    """The table body alone, for the page's periodic refresh."""
    ctx = context(request)
    rows = views.worklist_rows(session, ctx)
    return render(
        request,
        "_worklist_rows.html",
        rows=rows[: ctx.settings.web.worklist_rows],
        total=len(rows),
    )
