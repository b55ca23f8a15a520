"""The admin's feedback report (with the shadow period's) and its CSV export."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from daemon import audit, feedback, monitoring, shadow
from daemon.db.models import utcnow
from daemon.web.database import Reading, Writing
from daemon.web.pages.common import PERIODS, Admin, period_start
from daemon.web.rendering import render
from daemon.web.security import context

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/feedback")
def feedback_report(
    request: Request, principal: Admin, session: Reading, period: str = "30d"
) -> Response:
    """The feedback report for a period, the shadow period's report (whole, whatever the
    period), and the latest feedback."""
    since = period_start(period, now=utcnow())
    cases = feedback.labelled_cases(session, since=since)
    outcomes = monitoring.outcome_counts(session, since=since)
    groups = [g.to_dict() for g in feedback.report(cases)]
    trial = shadow.shadow_report(session, mode=context(request).settings.site.mode)
    return render(
        request,
        "feedback_report.html",
        groups=groups,
        outcomes=outcomes,
        shadow=trial.to_dict(),
        shadow_period=(trial.first_scored_at, trial.last_scored_at),
        cases=cases[-200:][::-1],
        period=period if period in PERIODS else "30d",
        periods=list(PERIODS),
        label_text={
            "pneumonia": "Pneumonia",
            "no_pneumonia": "No pneumonia",
            "indeterminate": "Indeterminate",
        },
    )


@router.get("/feedback.csv")
def feedback_export(
    request: Request,
    principal: Admin,
    session: Writing,
    period: str = "all",
    identified: bool = False,
) -> Response:
    """Every feedback of a period with its prediction, as CSV (audited); with the
    patients' identifying fields only when ``identified`` (admins only, audited so)."""
    period = period if period in PERIODS else "all"
    since = period_start(period, now=utcnow())
    cases = feedback.labelled_cases(session, since=since)
    audit.record(
        session,
        actor=principal.username,
        action="feedback.exported",
        detail={"period": period, "rows": len(cases), "identified": identified},
    )
    rows = feedback.export_rows(session, cases, identified=identified, actor=principal.username)
    return Response(
        feedback.csv_text(rows),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="chestaid-feedback.csv"'},
    )
