"""What the pages share: who may see them, periods, paging, error pages and heatmap
responses."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request, Response

from daemon.heatmaps import CamError, decode_cam
from daemon.paging import Page
from daemon.web import imaging
from daemon.web.rendering import render
from daemon.web.security import (
    Principal,
    csrf_form,
    csrf_form_admin,
    csrf_form_pending,
    require_admin,
    require_user,
)

logger = logging.getLogger(__name__)

User_ = Annotated[Principal, Depends(require_user)]


Posted = Annotated[Principal, Depends(csrf_form)]


PostedPending = Annotated[Principal, Depends(csrf_form_pending)]


Admin = Annotated[Principal, Depends(require_admin)]


AdminPost = Annotated[Principal, Depends(csrf_form_admin)]


PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365, "all": None}


def period_start(period: str, *, now: datetime) -> datetime | None:
    """The start of a named period (None: everything); unknown names mean 30 days."""
    days = PERIODS.get(period, 30)
    return None if days is None else now - timedelta(days=days)


def heatmap_response(cam: str, size: tuple[int, int], *, what: str) -> Response:
    """A stored map as a colour PNG; 404 (and a log line) when the stored map is unusable."""
    try:
        return Response(imaging.heatmap_png(decode_cam(cam), size=size), media_type="image/png")
    except CamError as exc:
        logger.error("stored heatmap unusable", extra={"of": what, "reason": str(exc)})
        return Response(status_code=404)


def calibration_error(request: Request, message: str) -> Response:
    return render(request, "error.html", status_code=422, title="Not done", message=message)


def paging_links(path: str, query: dict[str, str], page: Page[Any]) -> dict[str, str]:
    """The previous and next pages' addresses, keeping the filters (absent at the ends)."""
    links = {}
    kept = {k: v for k, v in query.items() if v}
    if page.number > 1:
        links["previous"] = f"{path}?{urlencode({**kept, 'page': page.number - 1})}"
    if page.number < page.pages:
        links["next"] = f"{path}?{urlencode({**kept, 'page': page.number + 1})}"
    return links
