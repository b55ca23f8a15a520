"""The JSON API: the worklist, studies, feedback, the report, alerts, calibration, analysis,
failed images, dead deliveries and the audit trail.

Same accounts and roles as the pages. Authenticate with ``POST /api/v1/tokens`` and
send ``Authorization: Bearer <token>``; a browser's session cookie works too, with the
``X-CSRF-Token`` header on changes.
"""

from __future__ import annotations

from fastapi import APIRouter

from daemon.web.api import analyses, calibrations, operations, reports, studies, tokens

router = APIRouter(prefix="/api/v1")
for _resource in (tokens, studies, reports, calibrations, analyses, operations):
    router.include_router(_resource.router)
