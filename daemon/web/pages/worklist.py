"""The worklist page and its periodically refreshed rows: one page, filtered by a GET form."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from daemon import reads
from daemon.web import views
from daemon.web.database import Reading
from daemon.web.pages.common import User_
from daemon.web.rendering import render
from daemon.web.security import (
    context,
)
from daemon.worklist import WorklistFilters, WorklistQueryError

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

# The filters and the page as the form and the paging links send them; each is read as
# text and checked in views.parse_filters, so a bad value is said on the page.
Text = str | None


def _params(
    band: Text = None,
    waiting: Text = None,
    modality: Text = None,
    date_from: Annotated[str | None, Query(alias="from")] = None,
    date_to: Annotated[str | None, Query(alias="to")] = None,
    q: Text = None,
    page: Text = None,
) -> dict[str, str | None]:
    return {
        "band": band,
        "waiting": waiting,
        "modality": modality,
        "date_from": date_from,
        "date_to": date_to,
        "q": q,
        "page": page,
    }


Params = Annotated[dict[str, str | None], Depends(_params)]


def _view(
    request: Request, session: Reading, params: dict[str, str | None]
) -> tuple[views.WorklistView, str | None]:
    """The page asked for, or the first unfiltered page and why the request was refused."""
    ctx = context(request)
    page = (params.pop("page") or "1").strip()
    try:
        if not (page.isdigit() and len(page) <= 6 and 1 <= int(page) <= 100_000):
            raise WorklistQueryError("page must be a whole number from 1")
        filters = views.parse_filters(**params)
        limit = ctx.settings.web.worklist_rows
        return views.worklist_view(
            session, ctx, filters=filters, offset=(int(page) - 1) * limit
        ), None
    except WorklistQueryError as exc:
        return views.worklist_view(session, ctx, filters=WorklistFilters()), str(exc)


@router.get("/worklist")
def worklist_page(
    request: Request,
    principal: User_,
    session: Reading,
    params: Params,
    read: Text = None,
) -> Response:
    """The worklist, most urgent first, one page of it; after a read (``?read=UID``), a
    button to undo it."""
    ctx = context(request)
    view, error = _view(request, session, params)
    return render(
        request,
        "worklist.html",
        status_code=400 if error else 200,
        rows=view.rows,
        total=view.total,
        view=view,
        filter_error=error,
        band_choices=views.band_choices(ctx, session),
        bands=ctx.serving.current(session).bands.cutoffs,
        # Only the user's own read, still undoable: no text from the URL is shown.
        just_read=None
        if not read
        else reads.recent_read(
            session,
            study_instance_uid=read[:128],
            user=principal.username,
            admin=False,  # the user's own read, just made
            window=timedelta(minutes=ctx.settings.worklist.undo_minutes),
        ),
    )


@router.get("/worklist/rows")
def worklist_rows(
    request: Request,
    principal: User_,
    session: Reading,
    params: Params,
) -> Response:
    """The table body alone, same filters and page, for the page's periodic refresh."""
    view, error = _view(request, session, params)
    return render(
        request,
        "_worklist_rows.html",
        status_code=400 if error else 200,
        rows=view.rows,
        total=view.total,
        view=view,
    )
