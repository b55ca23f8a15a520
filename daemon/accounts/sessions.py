"""Web sessions and API tokens: start, resolve, end.

Sessions are random tokens; the database keeps only their SHA-256, so a copy of the
database signs nobody in. A browser session ends after ``session_idle_minutes``
without a request and after ``session_max_hours`` in any case; an API token lasts
``api_token_days``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from daemon import audit
from daemon.db.models import User, WebSession, utcnow
from daemon.settings import WebSettings

BROWSER, API = "browser", "api"
# A session's last request is written at most this often (fewer writes per page).
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(token: str) -> str:
    """What is stored of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewSession:
    """A started session: the token goes to the client once and is never stored."""

    token: str
    csrf_token: str
    expires_at: datetime


def start_session(
    session: Session,
    *,
    user: User,
    kind: str,
    address: str,
    settings: WebSettings,
    now: datetime | None = None,
) -> NewSession:
    """Start a browser session or issue an API token for a signed-in user."""
    now = now or utcnow()
    lifetime = (
        timedelta(hours=settings.session_max_hours)
        if kind == BROWSER
        else timedelta(days=settings.api_token_days)
    )
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=token_hash(token),
            user_id=user.id,
            kind=kind,
            csrf_token=csrf,
            address=address[:64],
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return NewSession(token=token, csrf_token=csrf, expires_at=now + lifetime)


def _by_token(session: Session, token: str) -> WebSession | None:
    return session.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))


def resolve_session(
    session: Session,
    *,
    token: str,
    settings: WebSettings,
    now: datetime | None = None,
    activity: bool = True,
) -> WebSession | None:
    """The live session of a token (its user active), or None.

    Args:
        activity: whether the request is the user's doing and so keeps the session from
            idling out (False for a page's own periodic refresh: a worklist left open on
            an unattended screen must still sign out).
    """
    now = now or utcnow()
    found = _by_token(session, token)
    verdict = _verdict(found, settings=settings, now=now, activity=activity)
    if verdict == "idle":
        assert found is not None
        found.ended_at = now
    elif verdict == "touch":
        assert found is not None
        found.last_seen_at = now
    return found if verdict in ("live", "touch") else None


def session_update_due(
    session: Session, *, token: str, settings: WebSettings, now: datetime, activity: bool = True
) -> bool:
    """Whether :func:`resolve_session` at ``now`` would change the session's row (it
    idled out, or its last-seen time is due): only then does it need a writing unit."""
    found = _by_token(session, token)
    return _verdict(found, settings=settings, now=now, activity=activity) in ("idle", "touch")


def _verdict(
    found: WebSession | None, *, settings: WebSettings, now: datetime, activity: bool
) -> str:
    """What a token's session is now: none, idle (to be ended), touch (live, last seen
    to be moved on) or live."""
    if found is None or found.ended_at is not None or found.expires_at <= now:
        return "none"
    if found.kind == BROWSER and now - found.last_seen_at > timedelta(
        minutes=settings.session_idle_minutes
    ):
        return "idle"
    if not found.user.active:
        return "none"
    if activity and now - found.last_seen_at >= TOUCH_EVERY:
        return "touch"
    return "live"


def web_session(session: Session, session_id: int) -> WebSession | None:
    """A web session (browser or API token) by id."""
    return session.get(WebSession, session_id)


def end_session(session: Session, *, web_session: WebSession, now: datetime | None = None) -> None:
    """Sign out: the token stops working at once."""
    now = now or utcnow()
    web_session.ended_at = now
    audit.record(
        session,
        actor=web_session.user.username,
        action="logout",
        detail={"kind": web_session.kind},
        now=now,
    )


def end_session_by_token(session: Session, *, token: str, now: datetime | None = None) -> None:
    """End the session of a token, if it is still live (no audit: the user is signing in)."""
    found = _by_token(session, token)
    if found is not None and found.ended_at is None:
        found.ended_at = now or utcnow()


def end_all_sessions(
    session: Session, *, user: User, now: datetime, keep: WebSession | None = None
) -> None:
    """End every live session of ``user`` but ``keep`` (a password, role or status change)."""
    query = update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(WebSession.id != keep.id)
    session.execute(query.values(ended_at=now))
