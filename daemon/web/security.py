"""Who is asking: sessions from the cookie or a bearer token, roles, and CSRF checks.

Browsers carry a session cookie (HttpOnly, SameSite=Strict, Secure unless configured
off) and must send the session's CSRF token with every form (a hidden field) or
state-changing API call (the ``X-CSRF-Token`` header). API clients use a bearer token
from ``POST /api/v1/tokens``; a bearer token is never sent by a browser on its own,
so such calls need no CSRF token.
"""

from __future__ import annotations

import functools
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from daemon import accounts
from daemon.db.models import UserRole, utcnow
from daemon.db.session import Session, reading, writing
from daemon.errors import DaemonError
from daemon.settings import WebSettings
from daemon.web.context import WebContext

COOKIE = "chestaid_session"
LOGIN_CSRF_COOKIE = "chestaid_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Sent by the pages' own periodic refreshes, which are not the user's activity.
REFRESH_HEADER = "X-ChestAid-Refresh"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request."""

    user_id: int
    username: str
    role: UserRole
    must_change_password: bool
    session_id: int
    csrf_token: str
    via: str  # "cookie" or "bearer"

    @property
    def is_admin(self) -> bool:
        """Whether the user may administer."""
        return self.role == UserRole.ADMIN


class NotSignedInError(DaemonError):
    """No valid session: pages redirect to sign-in, the API answers 401."""


class PasswordChangeRequiredError(DaemonError):
    """The user signed in with a one-time password and must choose a new one first."""


class ForbiddenError(DaemonError):
    """The user's role does not allow this."""


class CSRFError(DaemonError):
    """A state-changing request without the session's CSRF token."""


def context(request: Request) -> WebContext:
    """The application's shared context."""
    ctx: WebContext = request.app.state.context
    return ctx


def forwarded_client(peer: str, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address: the peer's, or behind trusted proxies the nearest untrusted hop.

    X-Forwarded-For is read from the right (the hop nearest to us), and only while each
    hop is a trusted proxy, so a client cannot choose its own address by sending one.
    """
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if not networks or not forwarded_for or not is_trusted(peer):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return hop
    return hops[0] if hops else peer


def client_address(request: Request) -> str:
    """The address sign-in limits count against (see :func:`forwarded_client`)."""
    peer = request.client.host if request.client else "unknown"
    return forwarded_client(
        peer, request.headers.get("x-forwarded-for"), context(request).settings.web.trusted_proxies
    )


def _token(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), "bearer"
    cookie = request.cookies.get(COOKIE)
    return (cookie, "cookie") if cookie else None


def _principal(
    session: Session, token: str, via: str, *, settings: WebSettings, now: datetime, activity: bool
) -> Principal | None:
    live = accounts.resolve_session(
        session, token=token, settings=settings, now=now, activity=activity
    )
    if live is None or (via == "cookie") != (live.kind == accounts.BROWSER):
        return None
    return Principal(
        user_id=live.user.id,
        username=live.user.username,
        role=live.user.role,
        must_change_password=live.user.must_change_password,
        session_id=live.id,
        csrf_token=live.csrf_token,
        via=via,
    )


def find_principal(request: Request) -> Principal | None:
    """The request's signed-in user, or None (cached on the request).

    Most requests change nothing and are resolved in a reading unit, without a lock;
    only a session that idled out, or whose last-seen time is due, is resolved again
    in a writing unit.
    """
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    found = _token(request)
    principal = None
    if found is not None:
        token, via = found
        ctx = context(request)
        web, now = ctx.settings.web, utcnow()
        activity = request.headers.get(REFRESH_HEADER) != "1"
        with reading(ctx.sessions) as session:
            due = accounts.session_update_due(
                session, token=token, settings=web, now=now, activity=activity
            )
            if not due:
                principal = _principal(
                    session, token, via, settings=web, now=now, activity=activity
                )
        if due:
            with writing(ctx.sessions) as session:
                principal = _principal(
                    session, token, via, settings=web, now=now, activity=activity
                )
    request.state.principal = principal
    return principal


def signed_in(request: Request, *, allow_password_change: bool = False) -> Principal:
    """The signed-in user who has chosen their own password.

    Raises:
        NotSignedInError: no valid session.
        PasswordChangeRequiredError: a one-time password is still in use.
    """
    principal = find_principal(request)
    if principal is None:
        raise NotSignedInError("sign in first")
    if principal.must_change_password and not allow_password_change:
        raise PasswordChangeRequiredError("choose a new password first")
    return principal


def require_user(request: Request) -> Principal:
    """Dependency: any signed-in user (radiologist or admin)."""
    return signed_in(request)


def require_admin(request: Request) -> Principal:
    """Dependency: a signed-in admin.

    Raises:
        ForbiddenError: the user is not an admin.
    """
    principal = signed_in(request)
    if not principal.is_admin:
        raise ForbiddenError("this needs the admin role")
    return principal


def check_csrf(principal: Principal, presented: str | None) -> None:
    """Refuse a browser's state-changing request without its session's CSRF token.

    Raises:
        CSRFError: the token is missing or wrong.
    """
    if principal.via == "bearer":
        return
    if not presented or not secrets.compare_digest(presented, principal.csrf_token):
        raise CSRFError("the form is out of date or not from ChestAid; reload the page")


async def _checked_form(request: Request, *, allow_password_change: bool) -> Principal:
    # The session lookup touches the database: off the event loop.
    principal = await run_in_threadpool(
        functools.partial(signed_in, request, allow_password_change=allow_password_change)
    )
    form = await request.form()
    value = form.get(CSRF_FIELD)
    check_csrf(principal, value if isinstance(value, str) else None)
    return principal


async def csrf_form(request: Request) -> Principal:
    """Dependency for form posts: a signed-in user and the form's CSRF token checked."""
    return await _checked_form(request, allow_password_change=False)


async def csrf_form_pending(request: Request) -> Principal:
    """As :func:`csrf_form`, also for a user who still has a one-time password."""
    return await _checked_form(request, allow_password_change=True)


async def csrf_form_admin(request: Request) -> Principal:
    """Dependency for admin form posts."""
    principal = await csrf_form(request)
    if not principal.is_admin:
        raise ForbiddenError("this needs the admin role")
    return principal


# Declares the bearer scheme in the OpenAPI document; the token itself is read by
# find_principal (which also accepts a browser's session cookie).
bearer_scheme = HTTPBearer(
    auto_error=False, description="a token from POST /api/v1/tokens", scheme_name="token"
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]


def _api_principal(request: Request, *, allow_password_change: bool) -> Principal:
    principal = signed_in(request, allow_password_change=allow_password_change)
    if request.method in UNSAFE_METHODS:
        check_csrf(principal, request.headers.get(CSRF_HEADER))
    return principal


def api_user(request: Request, _: Bearer = None) -> Principal:
    """Dependency for the API: a signed-in user; unsafe cookie calls need the CSRF header."""
    return _api_principal(request, allow_password_change=False)


def api_user_pending(request: Request, _: Bearer = None) -> Principal:
    """Dependency for the API calls a one-time password allows (the password change)."""
    return _api_principal(request, allow_password_change=True)


def api_admin(request: Request, _: Bearer = None) -> Principal:
    """Dependency for admin API calls."""
    principal = _api_principal(request, allow_password_change=False)
    if not principal.is_admin:
        raise ForbiddenError("this needs the admin role")
    return principal
