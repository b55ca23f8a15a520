"""Local calibration versions: list, review and activate (admin)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from daemon import recalibration
from daemon.web.api.common import ERRORS, ApiAdmin
from daemon.web.api.schemas import (
    CalibrationActivateIn,
    CalibrationOut,
    CalibrationReviewOut,
)
from daemon.web.database import Reading, Writing
from daemon.web.security import context
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter()


def _calibration_out(row: Any) -> CalibrationOut:
    return CalibrationOut.model_validate(row)


@router.get("/calibrations", response_model=list[CalibrationOut], responses=ERRORS)
def get_calibrations(
    request: Request, principal: ApiAdmin, session: Reading
) -> list[CalibrationOut]:
    """Local calibration versions, newest first (admin)."""
    return [_calibration_out(r) for r in recalibration.versions(session)]


@router.get(
    "/calibrations/{version}/review",
    response_model=CalibrationReviewOut,
    responses={**ERRORS, 404: {}},
)
def review_calibration(
    request: Request, version: Id, principal: ApiAdmin, session: Reading
) -> CalibrationReviewOut:
    """The guardrails' reasons against a version, or what it would change (admin)."""
    settings = context(request).settings
    try:
        found = recalibration.review(
            session, version=version, bands=settings.priority.bands, settings=settings.calibration
        )
    except recalibration.NoSuchVersionError as exc:
        raise HTTPException(404, str(exc)) from exc
    return CalibrationReviewOut.model_validate(found.to_dict())


@router.post(
    "/calibrations/{version}/activate",
    response_model=CalibrationOut,
    responses={**ERRORS, 404: {}, 409: {}, 422: {}},
)
def activate_calibration(
    request: Request,
    version: Id,
    body: CalibrationActivateIn,
    principal: ApiAdmin,
    session: Writing,
) -> CalibrationOut:
    """Put a version in use for the next study (admin; audited).

    ``confirm_changes`` must be the number of recent studies that would change band,
    counted again now (409 when it is not); a version failing the guardrails is 422.
    """
    settings = context(request).settings
    try:
        row, _ = recalibration.activate(
            session,
            version=version,
            user=principal.username,
            bands=settings.priority.bands,
            settings=settings.calibration,
            confirm_changes=body.confirm_changes,
        )
    except recalibration.NoSuchVersionError as exc:
        raise HTTPException(404, str(exc)) from exc
    except recalibration.ConfirmationMismatchError as exc:
        raise HTTPException(409, str(exc)) from exc
    except recalibration.RecalibrationError as exc:
        raise HTTPException(422, str(exc)) from exc
    return _calibration_out(row)
