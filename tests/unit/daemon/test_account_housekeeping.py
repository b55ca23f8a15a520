"""Ended sessions and old sign-in attempts are deleted; live ones stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from daemon import accounts
from daemon.db.models import LoginAttempt, UserRole, WebSession, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.settings import WebSettings


def test_housekeeping_keeps_live_sessions_and_recent_attempts(sessions: SessionFactory) -> None:
    settings = WebSettings()
    now = utcnow()
    long_ago = now - timedelta(days=3)
    with writing(sessions) as session:
        user, _ = accounts.create_user(
            session, username="reader", role=UserRole.RADIOLOGIST, actor="test"
        )
        live = accounts.start_session(
            session, user=user, kind=accounts.BROWSER, address="127.0.0.1", settings=settings
        )
        old = accounts.start_session(
            session,
            user=user,
            kind=accounts.BROWSER,
            address="127.0.0.1",
            settings=settings,
            now=long_ago,
        )
        session.add(LoginAttempt(at=long_ago, username="reader", address="x", succeeded=False))
        session.add(LoginAttempt(at=now, username="reader", address="x", succeeded=False))
    with writing(sessions) as session:
        purged = accounts.purge_expired(session, settings=settings, now=now)
    assert purged == {"login_attempts": 1, "web_sessions": 1}
    with writing(sessions) as session:
        assert session.scalar(select(func.count(LoginAttempt.id))) == 1
        kept = session.scalars(select(WebSession.token_hash)).all()
        assert kept == [accounts.token_hash(live.token)]
        assert accounts.token_hash(old.token) not in kept
        assert accounts.resolve_session(session, token=live.token, settings=settings) is not None
