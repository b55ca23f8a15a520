"""What the API's resources share: who may call, the error responses, query parsing."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException

from daemon import feedback
from daemon.web.security import (
    Principal,
    api_admin,
    api_user,
)

ApiUser = Annotated[Principal, Depends(api_user)]


ApiAdmin = Annotated[Principal, Depends(api_admin)]


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "not signed in"},
    403: {"description": "the role does not allow this, or the CSRF header is missing"},
}


def since_time(text: str | None) -> datetime | None:
    """A ``since`` query value as a time; 422 when it is neither a span nor a date."""
    try:
        return feedback.parse_since(text) if text else None
    except feedback.FeedbackError as exc:
        raise HTTPException(422, str(exc)) from exc
