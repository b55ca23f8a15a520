"""Local calibration for admins: versions, fit, activate, back to the bundle's."""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import BundleError, CalibrationError
from chestaid.threshold import GovernedThreshold
from daemon import recalibration
from daemon.db.session import reading, writing
from daemon.web.context import WebContext
from daemon.web.database import Reading, Writing
from daemon.web.pages.common import Admin, AdminPost, calibration_error
from daemon.web.rendering import render
from daemon.web.security import (
    context,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)


@router.get("/calibration")
def calibration_page(
    request: Request, principal: Admin, session: Reading, message: str | None = None
) -> Response:
    """The calibration in use and every local version."""
    ctx = context(request)
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
        served=ctx.serving.current(session),
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


@router.post("/calibration/{version}/activate")
def activate(request: Request, version: Id, principal: AdminPost) -> Response:
    """Put a calibration version in use for the next study."""
    ctx = context(request)
    try:
        with writing(ctx.sessions) as session:
            recalibration.activate(session, version=version, user=principal.username)
    except recalibration.RecalibrationError as exc:
        return calibration_error(request, str(exc))
    return RedirectResponse(f"/admin/calibration?message=v{version}+active", status_code=303)


@router.post("/calibration/deactivate")
def deactivate(request: Request, principal: AdminPost, session: Writing) -> Response:
    """Go back to the bundle's own calibration."""
    ctx = context(request)
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
        return calibration_error(request, "minimum cases and target sensitivity are numbers")
    if not (10 <= min_cases <= 100_000 and 0.5 <= target < 1.0):
        return calibration_error(
            request, "minimum cases from 10; target sensitivity from 0.5 to below 1"
        )
    try:
        # Fitted while reading: the cross-validation holds no lock; stored in a short unit.
        with reading(ctx.sessions) as session:
            fitted = recalibration.fit(
                session,
                model_version=served.model_version,
                bundle_calibration_version=served.bundle_calibration_version,
                target_sensitivity=target,
                min_cases=min_cases,
            )
        with writing(ctx.sessions) as session:
            version = recalibration.store(session, fitted, user=principal.username).version
    except recalibration.RecalibrationError as exc:
        return calibration_error(request, str(exc))
    return RedirectResponse(
        f"/admin/calibration?message=v{version}+fitted+(pending)", status_code=303
    )
