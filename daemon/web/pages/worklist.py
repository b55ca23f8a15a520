"""The worklist page and its periodically refreshed rows."""

from __future__ import annotations

import logging
from datetime import timedelta

from fastapi import APIRouter, Request, Response

from daemon import reads
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
    """The worklist, most urgent first; after a read (``?read=UID``), a button to undo it."""
    ctx = context(request)
    rows = views.worklist_rows(session, ctx)
    shown = ctx.settings.web.worklist_rows
    just_read = request.query_params.get("read")
    return render(
        request,
        "worklist.html",
        rows=rows[:shown],
        total=len(rows),
        bands=ctx.serving.current(session).bands.cutoffs,
        # Only the user's own read, still undoable: no text from the URL is shown.
        just_read=None
        if not just_read
        else reads.recent_read(
            session,
            study_instance_uid=just_read[:128],
            user=principal.username,
            admin=False,  # the user's own read, just made
            window=timedelta(minutes=ctx.settings.worklist.undo_minutes),
        ),
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
