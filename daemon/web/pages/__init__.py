"""The HTML pages: for every signed-in user (sign-in, worklist, studies, image analysis)
and for admins (dashboard, feedback report, calibration, users, failed images, dead
deliveries and audit)."""

from __future__ import annotations

from fastapi import APIRouter

from daemon.web.pages import (
    analyses,
    audit,
    auth,
    calibrations,
    dashboard,
    operations,
    reports,
    studies,
    users,
    worklist,
)

router = APIRouter()
for _room in (
    auth,
    worklist,
    studies,
    analyses,
    dashboard,
    reports,
    calibrations,
    users,
    operations,
    audit,
):
    router.include_router(_room.router)
