"""``/metrics``: Prometheus's scrape of this process, for Prometheus and admins only.

Prometheus presents the token of ``[metrics] token_file`` as a bearer token; a
signed-in admin (browser session or API token) may look too. Anyone else gets 401
(no or unknown credentials) or 403 (signed in, not an admin): the scrape names no
patient, but it tells how busy the node is and which model it serves.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from daemon.metrics import CONTENT_TYPE, token_matches
from daemon.web.security import context, find_principal

router = APIRouter(include_in_schema=False)


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


@router.get("/metrics")
def scrape(request: Request) -> Response:
    """The metrics in Prometheus's text format (404 when ``[metrics] enabled`` is false)."""
    ctx = context(request)
    if ctx.metrics is None:
        return Response("metrics are disabled\n", status_code=404, media_type="text/plain")
    if not token_matches(ctx.metrics_token, _bearer(request)):
        principal = find_principal(request)
        if principal is None:
            return Response(
                "sign in as an admin, or present the metrics token\n",
                status_code=401,
                media_type="text/plain",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.is_admin or principal.must_change_password:
            return Response("this needs the admin role\n", status_code=403, media_type="text/plain")
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE)
