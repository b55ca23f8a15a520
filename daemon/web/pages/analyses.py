"""Image analysis: the upload page and the analyses users kept."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from daemon import analyses
from daemon.db.models import SavedAnalysis, UserRole, utcnow
from daemon.db.session import reading
from daemon.web.database import Reading, Writing
from daemon.web.pages.common import Posted, User_, heatmap_response
from daemon.web.rendering import render
from daemon.web.security import (
    Principal,
    context,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


@router.get("/analyse")
def analyse_page(request: Request, principal: User_, session: Reading) -> Response:
    """The upload form and the analyses this user kept."""
    ctx = context(request)
    saved = analyses.listed(
        session, user_id=principal.user_id, everyone=principal.role == UserRole.ADMIN
    )
    return render(
        request,
        "analyse.html",
        saved=saved,
        max_mb=ctx.settings.web.upload_max_mb,
        overlay_alpha=ctx.settings.worker.overlay_alpha,
        now=utcnow(),
    )


def _saved(request: Request, principal: Principal, analysis_id: int) -> SavedAnalysis | None:
    """A kept analysis its user (or an admin) may see."""
    ctx = context(request)
    with reading(ctx.sessions) as session:
        return analyses.visible(
            session,
            analysis_id=analysis_id,
            user_id=principal.user_id,
            everyone=principal.is_admin,
        )


@router.get("/analyses/{analysis_id}")
def saved_analysis_page(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return render(
            request, "error.html", status_code=404, title="Not found", message="No such analysis."
        )
    return render(
        request,
        "saved_analysis.html",
        analysis=row,
        source_src=f"/analyses/{row.id}/image.png",
        heatmap_src=f"/analyses/{row.id}/heatmap.png",
        overlay_alpha=context(request).settings.worker.overlay_alpha,
    )


@router.get("/analyses/{analysis_id}/image.png")
def saved_analysis_image(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis's image."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return Response(status_code=404)
    return Response(row.image_png, media_type="image/png")


@router.get("/analyses/{analysis_id}/heatmap.png")
def saved_analysisheatmap_response(request: Request, analysis_id: Id, principal: User_) -> Response:
    """A kept analysis's heatmap."""
    row = _saved(request, principal, analysis_id)
    if row is None:
        return Response(status_code=404)
    return heatmap_response(row.cam, (512, 512), what=f"analysis {analysis_id}")


@router.post("/analyses/{analysis_id}/delete")
def delete_saved_analysis(
    request: Request, analysis_id: Id, principal: Posted, session: Writing
) -> Response:
    """Delete a kept analysis (its owner or an admin)."""
    analyses.delete(
        session,
        analysis_id=analysis_id,
        user_id=principal.user_id,
        everyone=principal.is_admin,
        actor=principal.username,
    )
    return RedirectResponse("/analyse", status_code=303)
