"""Signing in and out, and choosing a password."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from daemon import accounts
from daemon.db.session import writing
from daemon.web.database import Writing
from daemon.web.pages.common import PostedPending
from daemon.web.rendering import render
from daemon.web.security import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    client_address,
    context,
    find_principal,
    signed_in,
)

logger = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no protocol-relative URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/worklist"


def _set_session_cookie(request: Request, response: Response, token: str) -> None:
    web = context(request).settings.web
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(timedelta(hours=web.session_max_hours).total_seconds()),
        httponly=True,
        secure=web.secure_cookies,
        samesite="strict",
        path="/",
    )


@router.get("/")
def home() -> Response:
    """The start page is the worklist."""
    return RedirectResponse("/worklist", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    """The sign-in form (or straight on, when already signed in)."""
    if find_principal(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return _login_form(request, next=next)


def _login_form(
    request: Request, *, next: str | None, error: str | None = None, status_code: int = 200
) -> Response:
    # Before sign-in there is no session: the form's token is a double-submit cookie.
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        next=_safe_next(next),
        error=error,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=context(request).settings.web.secure_cookies,
        samesite="strict",
        path="/login",
    )
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/worklist",
) -> Response:
    """Sign in: a session cookie on success; 401 or 429 with the form again otherwise."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, csrf_token):
        return _login_form(
            request, next=next, error="The sign-in form expired; try again.", status_code=403
        )
    ctx = context(request)
    address = client_address(request)
    try:
        user = accounts.sign_in(
            ctx.sessions,
            username=username,
            password=password,
            address=address,
            settings=ctx.settings.web,
        )
    except accounts.SignInRateLimitedError as exc:
        retry_after = int(exc.retry_after.total_seconds()) + 1
        minutes = max(1, round(retry_after / 60))
        response = _login_form(
            request,
            next=next,
            error=f"Too many failed sign-ins. Try again in about {minutes} minute(s).",
            status_code=429,
        )
        response.headers["Retry-After"] = str(retry_after)
        return response
    except accounts.SignInError:
        return _login_form(
            request, next=next, error="Unknown user name or wrong password.", status_code=401
        )
    with writing(ctx.sessions) as session:
        previous = request.cookies.get(COOKIE)
        if previous:
            # A new sign-in in this browser ends the session it had, if any.
            accounts.end_session_by_token(session, token=previous)
        started = accounts.start_session(
            session, user=user, kind=accounts.BROWSER, address=address, settings=ctx.settings.web
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    _set_session_cookie(request, response, started.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, principal: PostedPending, session: Writing) -> Response:
    """Sign out: the session ends at once."""
    web_session = accounts.web_session(session, principal.session_id)
    if web_session is not None:
        accounts.end_session(session, web_session=web_session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/account/password")
def password_page(request: Request) -> Response:
    """The form to choose a new password."""
    principal = signed_in(request, allow_password_change=True)
    return render(request, "password.html", forced=principal.must_change_password, error=None)


@router.post("/account/password")
def change_password(
    request: Request,
    principal: PostedPending,
    current: Annotated[str, Form(max_length=1024)] = "",
    new: Annotated[str, Form(max_length=1024)] = "",
    again: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Choose a new password (required after a one-time password)."""
    ctx = context(request)
    error = None
    if new != again:
        error = "The two new passwords differ."
    else:
        try:
            accounts.change_password(
                ctx.sessions,
                user_id=principal.user_id,
                current=current,
                new=new,
                settings=ctx.settings.web,
                keep_session_id=principal.session_id,
            )
        except accounts.AccountError as exc:
            error = str(exc)
    if error:
        return render(
            request,
            "password.html",
            status_code=422,
            forced=principal.must_change_password,
            error=error,
        )
    return RedirectResponse("/worklist", status_code=303)
