"""The JSON API: the worklist, studies, feedback, the report, alerts, calibration, analysis.

Same accounts and roles as the pages. Authenticate with ``POST /api/v1/tokens`` and
send ``Authorization: Bearer <token>``; a browser's session cookie works too, with the
``X-CSRF-Token`` header on changes.
"""

from __future__ import annotations

from fastapi import APIRouter

from daemon.web.api import analyses, calibrations, reports, studies, tokens

router = APIRouter(prefix="/api/v1")
for _resource in (tokens, studies, reports, calibrations, analyses):
    router.include_router(_resource.router)
