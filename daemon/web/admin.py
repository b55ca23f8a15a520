"""Admin pages: the dashboard, the feedback report and export, calibration, users, audit."""

from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import BundleError, CalibrationError
from chestaid.threshold import GovernedThreshold
from daemon import accounts, audit, feedback, maintenance, monitoring, recalibration
from daemon.db.models import UserRole, utcnow
from daemon.db.session import Session, writing
from daemon.web import charts
from daemon.web.context import WebContext
from daemon.web.rendering import render
from daemon.web.security import Principal, context, csrf_form_admin, require_admin
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)

Admin = Annotated[Principal, Depends(require_admin)]
AdminPost = Annotated[Principal, Depends(csrf_form_admin)]

PERIODS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365, "all": None}


def period_start(period: str, *, now: datetime) -> datetime | None:
    """The start of a named period (None: everything); unknown names mean 30 days."""
    days = PERIODS.get(period, 30)
    return None if days is None else now - timedelta(days=days)


def dashboard_data(session: Session, ctx: WebContext, *, period: str) -> dict[str, Any]:
    """Everything the dashboard shows, from the database (no model)."""
    now = utcnow()
    since = period_start(period, now=now)
    served = ctx.serving.current()
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
def dashboard(request: Request, principal: Admin, period: str = "30d") -> Response:
    """The monitoring dashboard for a period."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
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


@router.get("/feedback")
def feedback_report(request: Request, principal: Admin, period: str = "30d") -> Response:
    """The feedback report for a period, and the latest feedback."""
    ctx = context(request)
    since = period_start(period, now=utcnow())
    with writing(ctx.sessions) as session:
        cases = feedback.labelled_cases(session, since=since)
        outcomes = monitoring.outcome_counts(session, since=since)
    groups = [g.to_dict() for g in feedback.report(cases)]
    return render(
        request,
        "feedback_report.html",
        groups=groups,
        outcomes=outcomes,
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
def feedback_export(request: Request, principal: Admin, period: str = "all") -> Response:
    """Every feedback of a period with its prediction, as CSV (audited)."""
    ctx = context(request)
    period = period if period in PERIODS else "all"
    since = period_start(period, now=utcnow())
    with writing(ctx.sessions) as session:
        cases = feedback.labelled_cases(session, since=since)
        audit.record(
            session,
            actor=principal.username,
            action="feedback.exported",
            detail={"period": period, "rows": len(cases)},
        )
    return Response(
        feedback.csv_text([case.to_dict() for case in cases]),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="chestaid-feedback.csv"'},
    )


@router.get("/calibration")
def calibration_page(request: Request, principal: Admin, message: str | None = None) -> Response:
    """The calibration in use and every local version."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        rows = [
            {
                "version": r.version,
                "state": r.state.value,
                "method": r.method,
                "threshold": r.threshold,
                "target_sensitivity": r.target_sensitivity,
                "cases": r.n_cases,
                "fitted_by": r.fitted_by,
                "fitted_at": r.fitted_at,
                "activated_by": r.activated_by,
                "activated_at": r.activated_at,
                "report": json.loads(r.report),
                "model_version": r.model_version,
            }
            for r in recalibration.versions(session)
        ]
    return render(
        request,
        "calibration.html",
        versions=rows,
        served=ctx.serving.current(),
        bundle_threshold=_bundle_threshold(ctx),
        active=next((r for r in rows if r["state"] == "active"), None),
        message=message,
    )


def _bundle_threshold(ctx: WebContext) -> GovernedThreshold | None:
    """The served bundle's threshold record with its intervals (None if it has none)."""
    try:
        record = ctx.serving.manifest().threshold
        return None if record is None else GovernedThreshold.from_dict(record)
    except (BundleError, CalibrationError) as exc:
        # The page still shows the threshold in use; only the intervals are missing.
        logger.warning("bundle threshold record unreadable", extra={"error": str(exc)})
        return None


def _calibration_error(request: Request, message: str) -> Response:
    return render(request, "error.html", status_code=422, title="Not done", message=message)


@router.post("/calibration/{version}/activate")
def activate(request: Request, version: Id, principal: AdminPost) -> Response:
    """Put a calibration version in use for the next study."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            recalibration.activate(session, version=version, user=principal.username)
    except recalibration.RecalibrationError as exc:
        return _calibration_error(request, str(exc))
    return RedirectResponse(f"/admin/calibration?message=v{version}+active", status_code=303)


@router.post("/calibration/deactivate")
def deactivate(request: Request, principal: AdminPost) -> Response:
    """Go back to the bundle's own calibration."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        recalibration.deactivate(
            session,
            model_version=ctx.serving.current().model_version,
            user=principal.username,
        )
    return RedirectResponse("/admin/calibration?message=bundle+calibration+in+use", status_code=303)


@router.post("/calibration/fit")
def fit(
    request: Request,
    principal: AdminPost,
    min_cases_text: Annotated[str, Form(alias="min_cases", max_length=16)] = "",
    target_text: Annotated[str, Form(alias="target_sensitivity", max_length=16)] = "",
) -> Response:
    """Fit a pending calibration version on the labelled studies."""
    ctx = context(request)
    try:
        min_cases = int(min_cases_text or 100)
        served = ctx.serving.current()
        target = float(target_text or served.target_sensitivity)
    except ValueError:
        return _calibration_error(request, "minimum cases and target sensitivity are numbers")
    if not (10 <= min_cases <= 100_000 and 0.5 <= target < 1.0):
        return _calibration_error(
            request, "minimum cases from 10; target sensitivity from 0.5 to below 1"
        )
    try:
        with writing(ctx.sessions) as session:
            row = recalibration.fit_local_calibration(
                session,
                model_version=served.model_version,
                bundle_calibration_version=served.bundle_calibration_version,
                target_sensitivity=target,
                min_cases=min_cases,
                user=principal.username,
            )
            version = row.version
    except recalibration.RecalibrationError as exc:
        return _calibration_error(request, str(exc))
    return RedirectResponse(
        f"/admin/calibration?message=v{version}+fitted+(pending)", status_code=303
    )


def _users_page(
    request: Request, *, issued: tuple[str, str] | None = None, error: str | None = None
) -> Response:
    """The users page, with a one-time password just issued or the error of a change."""
    with writing(context(request).sessions) as session:
        rows = accounts.users(session)
    return render(
        request,
        "users.html",
        status_code=422 if error else 200,
        users=rows,
        roles=[r.value for r in UserRole],
        issued=issued,
        error=error,
    )


@router.get("/users")
def users_page(request: Request, principal: Admin) -> Response:
    """Every account and the forms to change them."""
    return _users_page(request)


@router.post("/users")
def create_user(
    request: Request,
    principal: AdminPost,
    username: Annotated[str, Form(max_length=64)] = "",
    role_text: Annotated[str, Form(alias="role", max_length=16)] = "",
) -> Response:
    """Create an account; its one-time password is shown once."""
    ctx = context(request)
    issued = None
    error = None
    try:
        role = UserRole(role_text)
        with writing(ctx.sessions) as session:
            user, password = accounts.create_user(
                session,
                username=username,
                role=role,
                actor=principal.username,
            )
            issued = (user.username, password)
    except ValueError:
        error = "Choose a role."
    except accounts.AccountError as exc:
        error = str(exc)
    return _users_page(request, issued=issued, error=error)


@router.post("/users/{user_id}")
def change_user(
    request: Request,
    user_id: Id,
    principal: AdminPost,
    action: Annotated[str, Form(max_length=16)] = "",
    role_text: Annotated[str, Form(alias="role", max_length=16)] = "",
) -> Response:
    """One change to an account: reset its password, set its role, enable or disable it."""
    ctx = context(request)
    issued = None
    error = None
    try:
        with writing(ctx.sessions) as session:
            if action == "reset":
                user, password = accounts.reset_password(
                    session, user_id=user_id, actor=principal.username
                )
                issued = (user.username, password)
            elif action == "role":
                accounts.set_role(
                    session,
                    user_id=user_id,
                    role=UserRole(role_text),
                    actor=principal.username,
                )
            elif action in ("enable", "disable"):
                accounts.set_active(
                    session, user_id=user_id, active=action == "enable", actor=principal.username
                )
            else:
                error = "Unknown change."
    except ValueError:
        error = "Choose a role."
    except accounts.AccountError as exc:
        error = str(exc)
    return _users_page(request, issued=issued, error=error)


@router.get("/audit")
def audit_page(request: Request, principal: Admin, action: str = "") -> Response:
    """The audit trail, newest first."""
    ctx = context(request)
    with writing(ctx.sessions) as session:
        entries = audit.entries(session, limit=500, action_prefix=action, newest_first=True)
    return render(request, "audit.html", entries=entries, action=action)
