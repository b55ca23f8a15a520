"""Deleting the sign-in attempts and sessions that no longer matter."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from daemon.db.models import LoginAttempt, WebSession, utcnow
from daemon.settings import WebSettings

# Ended sessions and old sign-in attempts are deleted this long after they stop mattering.
KEEP_ENDED = timedelta(days=1)


def purge_expired(
    session: Session, *, settings: WebSettings, now: datetime | None = None
) -> dict[str, int]:
    """Delete sign-in attempts past the rate-limit window and sessions ended a day ago.

    Sign-ins stay in the audit log; these rows serve only rate limiting and sign-in.
    """
    now = now or utcnow()
    attempts = session.execute(
        delete(LoginAttempt).where(
            LoginAttempt.at < now - timedelta(minutes=settings.login_window_minutes) - KEEP_ENDED
        )
    )
    cutoff = now - KEEP_ENDED
    ended = session.execute(
        delete(WebSession).where(or_(WebSession.ended_at < cutoff, WebSession.expires_at < cutoff))
    )
    return {
        "login_attempts": int(getattr(attempts, "rowcount", 0) or 0),
        "web_sessions": int(getattr(ended, "rowcount", 0) or 0),
    }
