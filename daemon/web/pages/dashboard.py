"""The admin's monitoring dashboard, and running monitoring now."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from daemon import audit, feedback, maintenance, monitoring, operations
from daemon.db.models import utcnow
from daemon.db.session import Session, writing
from daemon.web import charts
from daemon.web.context import WebContext
from daemon.web.database import Reading
from daemon.web.pages.common import PERIODS, Admin, AdminPost, period_start
from daemon.web.rendering import render
from daemon.web.security import (
    context,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)


def dashboard_data(session: Session, ctx: WebContext, *, period: str) -> dict[str, Any]:
    """Everything the dashboard shows, from the database (no model)."""
    now = utcnow()
    since = period_start(period, now=now)
    served = ctx.serving.current(session)
    model_version = served.model_version
    cases = [
        c for c in feedback.labelled_cases(session, since=since) if c.model_version == model_version
    ]
    definite = [c for c in cases if feedback.TRUTH[c.label] is not None]
    overall = feedback.summarise(cases, model_version=model_version)
    c = overall.confusion
    # The drift history of the shortest window, in the period.
    psi_points = monitoring.psi_history(
        session, window_days=min(ctx.settings.monitoring.windows_days), since=since
    )
    return {
        "period": period,
        "periods": list(PERIODS),
        "model_version": model_version,
        "served": served,
        "report": overall.to_dict(),
        "outcomes": monitoring.outcome_counts(session, since=since, model_version=model_version),
        "windows": [
            {"days": days, "ran_at": ran_at, "figures": figures}
            for days, (ran_at, figures) in sorted(monitoring.latest_runs(session).items())
        ],
        "recent_alerts": monitoring.recent_alerts(session, limit=20),
        "trouble": operations.trouble_counts(session),
        "reliability_svg": charts.reliability_diagram_svg(
            [x.score for x in definite], [int(feedback.TRUTH[x.label] or 0) for x in definite]
        ),
        "distribution_svg": charts.score_distribution_svg(
            monitoring.daily_scores(session, model_version=model_version, since=since),
            threshold=served.threshold if math.isfinite(served.threshold) else None,
        ),
        "confusion_svg": charts.confusion_matrix_svg(tp=c.tp, fp=c.fp, tn=c.tn, fn=c.fn),
        "psi_svg": charts.psi_history_svg(
            psi_points, alert_level=ctx.settings.monitoring.psi_alert
        ),
    }


@router.get("")
def dashboard(
    request: Request, principal: Admin, session: Reading, period: str = "30d"
) -> Response:
    """The monitoring dashboard for a period."""
    ctx = context(request)
    data = dashboard_data(session, ctx, period=period if period in PERIODS else "30d")
    return render(request, "admin.html", **data)


@router.post("/monitoring/run")
def run_monitoring_now(request: Request, principal: AdminPost) -> Response:
    """Run the monitoring job now (audited)."""
    ctx = context(request)
    summary = maintenance.monitor(ctx.sessions, settings=ctx.settings, serving=ctx.serving)
    with writing(ctx.sessions) as session:
        audit.record(session, actor=principal.username, action="monitoring.run", detail=summary)
    return RedirectResponse("/admin", status_code=303)
