"""The HTML pages: for every signed-in user (sign-in, worklist, studies, image analysis)
and for admins (dashboard, feedback report, calibration, users and audit)."""

from __future__ import annotations

from fastapi import APIRouter

from daemon.web.pages import (
    analyses,
    auth,
    calibrations,
    dashboard,
    reports,
    studies,
    users,
    worklist,
)

router = APIRouter()
for _room in (auth, worklist, studies, analyses, dashboard, reports, calibrations, users):
    router.include_router(_room.router)
