"""Tokens and the signed-in user: sign in for a bearer token, sign out, change the password."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from daemon import accounts
from daemon.db.session import writing
from daemon.web.api.common import ERRORS, ApiUser
from daemon.web.api.schemas import Me, PasswordChange, TokenOut, TokenRequest
from daemon.web.database import Writing
from daemon.web.security import (
    Principal,
    api_user_pending,
    client_address,
    context,
)

logger = logging.getLogger(__name__)
router = APIRouter()


@router.post("/tokens", response_model=TokenOut, responses={401: ERRORS[401], 429: {}})
def issue_token(request: Request, body: TokenRequest) -> TokenOut:
    """Sign in and get a bearer token (rate limited like the sign-in page)."""
    ctx = context(request)
    address = client_address(request)
    try:
        user = accounts.sign_in(
            ctx.sessions,
            username=body.username,
            password=body.password,
            address=address,
            settings=ctx.settings.web,
        )
    except accounts.SignInRateLimitedError as exc:
        raise HTTPException(
            429,
            str(exc),
            headers={"Retry-After": str(int(exc.retry_after.total_seconds()) + 1)},
        ) from exc
    except accounts.SignInError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    with writing(ctx.sessions) as session:
        started = accounts.start_session(
            session, user=user, kind=accounts.API, address=address, settings=ctx.settings.web
        )
    return TokenOut(
        token=started.token,
        expires_at=started.expires_at,
        username=user.username,
        role=user.role.value,
    )


@router.delete("/tokens/current", status_code=204, responses=ERRORS)
def revoke_token(request: Request, principal: ApiUser, session: Writing) -> Response:
    """Sign out: the token (or session) stops working at once."""
    live = accounts.web_session(session, principal.session_id)
    if live is not None:
        accounts.end_session(session, web_session=live)
    return Response(status_code=204)


@router.get("/me", response_model=Me, responses=ERRORS)
def me(principal: Annotated[Principal, Depends(api_user_pending)]) -> Me:
    """Who the token belongs to (works before a one-time password is changed)."""
    return Me(username=principal.username, role=principal.role.value)


@router.post("/me/password", status_code=204, responses={**ERRORS, 422: {}})
def change_password(
    request: Request,
    body: PasswordChange,
    principal: Annotated[Principal, Depends(api_user_pending)],
) -> Response:
    """Choose a new password (needed after a one-time password); other sessions end."""
    ctx = context(request)
    try:
        accounts.change_password(
            ctx.sessions,
            user_id=principal.user_id,
            current=body.current,
            new=body.new,
            settings=ctx.settings.web,
            keep_session_id=principal.session_id,
        )
    except accounts.AccountError as exc:
        raise HTTPException(422, str(exc)) from exc
    return Response(status_code=204)
