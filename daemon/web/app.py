"""The web application: pages for readers and admins, and the JSON API.

Built by :func:`create_app` from a :class:`~daemon.web.context.WebContext`; served by
the daemon's ``web`` role (see :mod:`daemon.web.server`). Pages are rendered on the
server (Jinja2) with a little script for refreshing the worklist and the sliders; the
API under ``/api/v1`` is described by OpenAPI at ``/api/v1/openapi.json``.

Every response carries a strict Content-Security-Policy (scripts and styles from
ChestAid only), no caching (pages show clinical data), and no framing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.web import api, api_docs, metrics, pages
from daemon.web.context import WebContext
from daemon.web.rendering import HERE, render
from daemon.web.security import (
    CSRFError,
    ForbiddenError,
    NotSignedInError,
    PasswordChangeRequiredError,
)

logger = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


# Forms and JSON bodies are small; only the image upload (which has its own limit,
# web.upload_max_mb) may be larger.
BODY_MAX_BYTES = 1 << 20
UPLOAD_PATHS = frozenset({"/api/v1/analyses"})


class BodyLimit:
    """Refuses request bodies beyond a size (413), by Content-Length or as they stream."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt: frozenset[str]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (a chunked body): read it here, up to the limit, then replay.
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_bytes:
                await _too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"detail": "the request body is too large"}, status_code=413)
    await response(scope, receive, send)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


# The error page's title and text for HTTP errors raised outside a page's own handling
# (an address no route has, a method a route does not take); others show their detail.
PAGE_ERRORS = {
    404: ("Not found", "There is no page at this address."),
    405: ("Not allowed here", "This address does not take that kind of request."),
}


def create_app(context: WebContext) -> FastAPI:
    """The web application on ``context``."""
    app = FastAPI(
        title="ChestAid",
        version="1",
        summary="Chest-radiograph triage: worklist, studies, feedback and the admin report.",
        description=(
            "ChestAid supports triage and double reading; it does not diagnose. "
            "Authenticate with a bearer token from `POST /api/v1/tokens` (or a browser "
            "session cookie plus the `X-CSRF-Token` header for changes)."
        ),
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive docs load scripts from a CDN; the JSON is enough
        redoc_url=None,
    )
    app.state.context = context
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(api_docs.router)
    app.include_router(metrics.router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        if context.settings.web.https:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        return response

    app.add_middleware(BodyLimit, max_bytes=BODY_MAX_BYTES, exempt=UPLOAD_PATHS)

    @app.exception_handler(NotSignedInError)
    def not_signed_in(request: Request, exc: NotSignedInError) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(PasswordChangeRequiredError)
    def password_change(request: Request, exc: PasswordChangeRequiredError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return RedirectResponse("/account/password", status_code=303)

    @app.exception_handler(ForbiddenError)
    def forbidden(request: Request, exc: ForbiddenError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return render(request, "error.html", status_code=403, title="Not allowed", message=str(exc))

    @app.exception_handler(CSRFError)
    def csrf(request: Request, exc: CSRFError) -> Response:
        logger.warning(
            "request refused: CSRF token missing or wrong", extra={"path": request.url.path}
        )
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return render(request, "error.html", status_code=403, title="Refused", message=str(exc))

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        title, message = PAGE_ERRORS.get(exc.status_code, ("Refused", str(exc.detail)))
        page = render(
            request, "error.html", status_code=exc.status_code, title=title, message=message
        )
        page.headers.update(exc.headers or {})
        return page

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
            for err in exc.errors()
        )
        if _wants_json(request):
            return JSONResponse({"detail": problems}, status_code=422)
        return render(
            request, "error.html", status_code=422, title="Not accepted", message=problems
        )

    return app
