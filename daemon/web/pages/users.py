"""Accounts for admins: create, disable, reset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from daemon import accounts
from daemon.db.models import UserRole
from daemon.db.session import Session, reading, writing
from daemon.web.pages.common import Admin, AdminPost
from daemon.web.rendering import render
from daemon.web.security import (
    context,
)
from daemon.web.views import Id

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/admin", include_in_schema=False)


def _users_page(
    request: Request, *, issued: tuple[str, str] | None = None, error: str | None = None
) -> Response:
    """The users page, with a one-time password just issued or the error of a change."""
    with reading(context(request).sessions) as session:
        rows = accounts.users(session)
    return render(
        request,
        "users.html",
        status_code=422 if error else 200,
        users=rows,
        roles=[r.value for r in UserRole],
        issued=issued,
        error=error,
    )


@router.get("/users")
def users_page(request: Request, principal: Admin) -> Response:
    """Every account and the forms to change them."""
    return _users_page(request)


def _account_change(
    request: Request, change: Callable[[Session], tuple[str, str] | None]
) -> Response:
    """Apply one change to accounts and show the page again: with the one-time password
    it issued (shown once), or with the reason it was refused (nothing changed)."""
    issued = None
    error = None
    try:
        with writing(context(request).sessions) as session:
            issued = change(session)
    except ValueError:
        error = "Choose a role."
    except accounts.AccountError as exc:
        error = str(exc)
    return _users_page(request, issued=issued, error=error)


@router.post("/users")
def create_user(
    request: Request,
    principal: AdminPost,
    username: Annotated[str, Form(max_length=64)] = "",
    role_text: Annotated[str, Form(alias="role", max_length=16)] = "",
) -> Response:
    """Create an account; its one-time password is shown once."""

    def create(session: Session) -> tuple[str, str]:
        user, password = accounts.create_user(
            session, username=username, role=UserRole(role_text), actor=principal.username
        )
        return user.username, password

    return _account_change(request, create)


@router.post("/users/{user_id}")
def change_user(
    request: Request,
    user_id: Id,
    principal: AdminPost,
    action: Annotated[str, Form(max_length=16)] = "",
    role_text: Annotated[str, Form(alias="role", max_length=16)] = "",
) -> Response:
    """One change to an account: reset its password, set its role, enable or disable it."""

    def change(session: Session) -> tuple[str, str] | None:
        actor = principal.username
        if action == "reset":
            user, password = accounts.reset_password(session, user_id=user_id, actor=actor)
            return user.username, password
        if action == "role":
            accounts.set_role(session, user_id=user_id, role=UserRole(role_text), actor=actor)
        elif action in ("enable", "disable"):
            accounts.set_active(session, user_id=user_id, active=action == "enable", actor=actor)
        else:
            raise accounts.AccountError("Unknown change.")
        return None

    return _account_change(request, change)
