"""The admin's figures: the feedback report and export, the shadow period's report, and
the alerts that hold."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from daemon import feedback, monitoring, shadow
from daemon.web.api.common import ERRORS, ApiAdmin, ApiUser, since_time
from daemon.web.api.schemas import AlertOut, LabelledCaseOut, ReportGroupOut, ShadowReportOut
from daemon.web.database import Reading, Writing
from daemon.web.security import context

logger = logging.getLogger(__name__)
router = APIRouter()


@router.get("/report", response_model=list[ReportGroupOut], responses={**ERRORS, 422: {}})
def get_report(
    request: Request,
    principal: ApiAdmin,
    session: Reading,
    since: Annotated[str | None, Query(description="30d, 12h, 90m or an ISO date")] = None,
) -> list[dict[str, Any]]:
    """The feedback report: overall, then per model and calibration version (admin)."""
    start = since_time(since)
    cases = feedback.labelled_cases(session, since=start)
    return [group.to_dict() for group in feedback.report(cases)]


@router.get("/report/shadow", response_model=ShadowReportOut, responses=ERRORS)
def get_shadow_report(request: Request, principal: ApiAdmin, session: Reading) -> dict[str, Any]:
    """The shadow period against the labels (admin): every labelled study whose prediction
    was made in shadow mode, the confusion at each prediction's threshold, sensitivity,
    specificity, PPV and NPV with Wilson 95% intervals, and the labels by source. It
    always covers the whole shadow period; ``mode`` is the site's mode now."""
    mode = context(request).settings.site.mode
    return shadow.shadow_report(session, mode=mode).to_dict()


@router.get(
    "/feedback",
    response_model=list[LabelledCaseOut],
    response_model_exclude_unset=True,
    responses={**ERRORS, 422: {}},
)
def export_feedback(
    request: Request,
    principal: ApiAdmin,
    session: Writing,
    since: Annotated[str | None, Query(description="30d, 12h, 90m or an ISO date")] = None,
    identified: Annotated[
        bool, Query(description="add patient name and ID, accession and study date (audited)")
    ] = False,
) -> list[dict[str, Any]]:
    """Every feedback with its prediction (the export, admin); identified only on request."""
    start = since_time(since)
    cases = feedback.labelled_cases(session, since=start)
    return feedback.export_rows(session, cases, identified=identified, actor=principal.username)


@router.get("/alerts", response_model=list[AlertOut], responses=ERRORS)
def get_alerts(request: Request, principal: ApiUser, session: Reading) -> list[AlertOut]:
    """The alerts that still hold (those of each window's latest monitoring run)."""
    return [AlertOut.model_validate(a) for a in monitoring.banner_alerts(session)]
