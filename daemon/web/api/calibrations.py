"""Local calibration versions: list and activate (admin)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from daemon import recalibration
from daemon.web.api.common import ERRORS, ApiAdmin
from daemon.web.api.schemas import CalibrationOut
from daemon.web.database import Reading, Writing
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


@router.post(
    "/calibrations/{version}/activate",
    response_model=CalibrationOut,
    responses={**ERRORS, 404: {}},
)
def activate_calibration(
    request: Request, version: Id, principal: ApiAdmin, session: Writing
) -> CalibrationOut:
    """Put a calibration version in use for the next study (admin; audited)."""
    try:
        return _calibration_out(
            recalibration.activate(session, version=version, user=principal.username)
        )
    except recalibration.RecalibrationError as exc:
        raise HTTPException(404, str(exc)) from exc
