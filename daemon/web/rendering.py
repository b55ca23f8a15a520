"""Rendering pages: the templates, with the user, CSRF token and alert banner filled in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context

from chestaid.display import (
    interval_text,
    percent_pair_text,
    percent_text,
    reading_percent_pair,
)
from daemon import monitoring
from daemon.db.models import MonitoringAlert
from daemon.db.session import reading
from daemon.web.context import WebContext
from daemon.web.database import request_unit
from daemon.web.security import find_principal

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def interval(values: Sequence[float] | None) -> str:
    """A 95% interval ``[low, high]`` of a proportion on the 0..1 scale; ``n/a`` when unknown."""
    if values is None:
        return interval_text(None, None)
    low, high = values
    return interval_text(low, high)


def interval_percent(values: Sequence[float] | None) -> str:
    """A 95% interval ``[low, high]`` of a probability as percentages; ``n/a`` when unknown."""
    if values is None:
        return interval_text(None, None)
    low, high = values
    return interval_text(low, high, percent=True)


def url_part(value: object) -> str:
    """A value as one path segment of a URL (a study UID from a sender is not trusted)."""
    return quote(str(value), safe="")


# Every score a page shows goes through chestaid.display: alone ("pct"), or with the
# threshold it was compared with ("pct_pair"), so the two print apart and in order.
templates.env.filters["pct"] = percent_text
templates.env.filters["pct_interval"] = interval_percent
templates.env.filters["interval"] = interval
templates.env.globals["pct_pair"] = percent_pair_text
templates.env.filters["urlpart"] = url_part
# The worklist and study pages show a score at the resolution a reading decision needs.
templates.env.globals["reading_pair"] = reading_percent_pair


def local_time(value: datetime | None, time_zone: str, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored time (UTC; naive means UTC) in the site's time zone; empty for None."""
    if value is None:
        return ""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(time_zone)).strftime(fmt)


@pass_context
def _local_time_filter(
    context: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S"
) -> str:
    return local_time(value, context["settings"].web.time_zone, fmt)


# ``{{ when|localtime }}``: in web.time_zone, which the column heading names.
templates.env.filters["localtime"] = _local_time_filter


def render(request: Request, name: str, *, status_code: int = 200, **values: Any) -> Response:
    """A page from its template, with the user, CSRF token and alert banner filled in."""
    ctx: WebContext = request.app.state.context
    principal = find_principal(request)
    alerts: list[MonitoringAlert] = []
    if principal is not None:
        unit = request_unit(request)
        if unit is not None:
            alerts = monitoring.banner_alerts(unit)
        else:
            with reading(ctx.sessions) as session:
                alerts = monitoring.banner_alerts(session)
    return templates.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "csrf_token": principal.csrf_token if principal else "",
            "alerts": alerts,
            "settings": ctx.settings,
            **values,
        },
        status_code=status_code,
    )
