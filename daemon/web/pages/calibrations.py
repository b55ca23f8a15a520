"""Local calibration for admins: versions, fit, review and activate, back to the bundle's.

The banner after an action is one of a fixed set of sentences chosen by a code in the
URL (:data:`MESSAGES`); nothing from the URL is shown as it came.
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from chestaid.errors import BundleError, CalibrationError
from chestaid.threshold import GovernedThreshold
from daemon import calibration_review, recalibration
from daemon.db.session import writing
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


# The banners after an action: a code in the URL picks one; {version} is a number.
MESSAGES = {
    "fitted": "Version {version} fitted; it is pending until activated.",
    "activated": "Version {version} is in use for the next study scored.",
    "bundle": "The bundle's own calibration is in use.",
}


def _banner(done: str | None, version: str | None) -> str | None:
    """The fixed sentence for ``done`` (None for an unknown code or a version not a number)."""
    template = MESSAGES.get(done or "")
    if template is None:
        return None
    if "{version}" not in template:
        return template
    if version is None or not version.isdecimal() or len(version) > 9:
        return None
    return template.format(version=int(version))


@router.get("/calibration")
def calibration_page(
    request: Request,
    principal: Admin,
    session: Reading,
    done: str | None = None,
    version: str | None = None,
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
        message=_banner(done, version),
        floors=calibration_review.floors_of(ctx.settings.calibration),
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


@router.get("/calibration/{version}/review")
def review_page(request: Request, version: Id, principal: Admin, session: Reading) -> Response:
    """A version checked against the guardrails, and what it would change: before activation."""
    ctx = context(request)
    try:
        found = recalibration.review(
            session,
            version=version,
            bands=ctx.settings.priority.bands,
            settings=ctx.settings.calibration,
        )
    except recalibration.NoSuchVersionError as exc:
        return calibration_error(request, str(exc))
    return render(request, "calibration_review.html", review=found)


@router.post("/calibration/{version}/activate")
def activate(
    request: Request,
    version: Id,
    principal: AdminPost,
    confirm_text: Annotated[str, Form(alias="confirm_changes", max_length=16)] = "",
) -> Response:
    """Put a calibration version in use for the next study, if the count confirmed is right."""
    ctx = context(request)
    confirmed = confirm_text.strip()
    if not confirmed.isdecimal():
        return calibration_error(
            request,
            "type the number of studies that would change band, as the review page shows it",
        )
    try:
        with writing(ctx.sessions) as session:
            recalibration.activate(
                session,
                version=version,
                user=principal.username,
                bands=ctx.settings.priority.bands,
                settings=ctx.settings.calibration,
                confirm_changes=int(confirmed),
            )
    except recalibration.RecalibrationError as exc:
        return calibration_error(request, str(exc))
    return RedirectResponse(f"/admin/calibration?done=activated&version={version}", status_code=303)


@router.post("/calibration/deactivate")
def deactivate(request: Request, principal: AdminPost, session: Writing) -> Response:
    """Go back to the bundle's own calibration."""
    ctx = context(request)
    recalibration.deactivate(
        session,
        model_version=ctx.serving.current().model_version,
        user=principal.username,
        bundle=ctx.serving.bundle_candidate(),
        bands=ctx.settings.priority.bands,
        settings=ctx.settings.calibration,
    )
    return RedirectResponse("/admin/calibration?done=bundle", status_code=303)


@router.post("/calibration/fit")
def fit(
    request: Request,
    principal: AdminPost,
    min_cases_text: Annotated[str, Form(alias="min_cases", max_length=16)] = "",
    target_text: Annotated[str, Form(alias="target_sensitivity", max_length=16)] = "",
) -> Response:
    """Fit a pending calibration version on the labelled studies (guardrails in the service)."""
    ctx = context(request)
    try:
        min_cases = int(min_cases_text) if min_cases_text else None
        served = ctx.serving.current()
        target = float(target_text or served.target_sensitivity)
    except ValueError:
        return calibration_error(request, "minimum cases and target sensitivity are numbers")
    if not ((min_cases is None or 1 <= min_cases <= 1_000_000) and 0.5 <= target < 1.0):
        return calibration_error(
            request, "minimum cases up to 1000000; target sensitivity from 0.5 to below 1"
        )
    try:
        # Fitted while reading: the cross-validation holds no lock; stored in a short unit.
        version = recalibration.fit_version(
            ctx.sessions,
            model_version=served.model_version,
            bundle_calibration_version=served.bundle_calibration_version,
            target_sensitivity=target,
            min_cases=min_cases,
            floors=calibration_review.floors_of(ctx.settings.calibration),
            user=principal.username,
        )
    except recalibration.RecalibrationError as exc:
        return calibration_error(request, str(exc))
    return RedirectResponse(f"/admin/calibration?done=fitted&version={version}", status_code=303)
