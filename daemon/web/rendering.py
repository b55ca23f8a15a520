"""Rendering pages: the templates, with the user, CSRF token and alert banner filled in."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.db.models import MonitoringAlert, MonitoringRun
from daemon.db.session import unit_of_work
from daemon.web.context import WebContext
from daemon.web.security import find_principal

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def percent(value: float | None) -> str:
    """A probability as a percentage, with the digits that tell saturated scores apart.

    This model's scores and threshold sit very near 0 or 1 (0.99993, say), where one
    decimal would print 100.0 % for both.
    """
    if value is None:
        return "n/a"
    x = float(value) * 100
    if x <= 0 or x >= 100:
        return f"{min(max(x, 0.0), 100.0):.0f} %"
    if 0.1 <= x <= 99.9:
        return f"{x:.1f} %"
    digits = 3
    while digits < 8 and f"{x:.{digits}f}" in ("100." + "0" * digits, "0." + "0" * digits):
        digits += 1
    return f"{x:.{digits}f} %"


def url_part(value: object) -> str:
    """A value as one path segment of a URL (a study UID from a sender is not trusted)."""
    return quote(str(value), safe="")


templates.env.filters["pct"] = percent
templates.env.filters["urlpart"] = url_part


def banner_alerts(session: Session) -> list[MonitoringAlert]:
    """The alerts of each window's latest monitoring run: the ones that still hold."""
    latest = (
        select(func.max(MonitoringRun.id)).group_by(MonitoringRun.window_days).scalar_subquery()
    )
    query = select(MonitoringAlert).where(MonitoringAlert.run_id.in_(latest))
    return list(session.scalars(query.order_by(MonitoringAlert.id)).all())


def render(request: Request, name: str, *, status_code: int = 200, **values: Any) -> Response:
    """A page from its template, with the user, CSRF token and alert banner filled in."""
    ctx: WebContext = request.app.state.context
    principal = find_principal(request)
    alerts: list[MonitoringAlert] = []
    if principal is not None:
        with unit_of_work(ctx.sessions) as session:
            alerts = banner_alerts(session)
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
