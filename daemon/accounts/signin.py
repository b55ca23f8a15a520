"""Sign-in by user name and password, with its rate limits.

After ``login_max_failures`` failures from one address, or
``login_max_failures_per_user`` (more) for one user name from any address, within
``login_window_minutes``, sign-in is refused (without checking the password) until
the oldest of those failures leaves the window. Attempts are counted in the
database, so every web process of a site shares the count.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import audit
from daemon.accounts.errors import SignInError, SignInRateLimitedError
from daemon.accounts.passwords import hash_password, needs_rehash, verify_stored
from daemon.accounts.people import find_user
from daemon.db.models import LoginAttempt, User, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.settings import WebSettings

logger = logging.getLogger(__name__)


def lock_remaining(
    session: Session, *, username: str, address: str, settings: WebSettings, now: datetime
) -> timedelta | None:
    """How long sign-in stays refused for this name from this address (None: it is not).

    Two limits: ``login_max_failures`` failures from the address (whatever the names),
    and ``login_max_failures_per_user`` failures for the name from any address. The
    second is higher, so one address guessing at a colleague's name locks itself out,
    not the colleague; guessing from many addresses is still bounded.
    """
    window = timedelta(minutes=settings.login_window_minutes)
    recent = select(LoginAttempt.at).where(
        LoginAttempt.at >= now - window, LoginAttempt.succeeded.is_(False)
    )
    remaining: list[timedelta] = []
    for column, value, limit in (
        (LoginAttempt.address, address, settings.login_max_failures),
        (LoginAttempt.username, username, settings.login_max_failures_per_user),
    ):
        failures = list(
            session.scalars(recent.where(column == value).order_by(LoginAttempt.at)).all()
        )
        if len(failures) >= limit:
            remaining.append(failures[-limit] + window - now)
    return max(remaining) if remaining else None


def sign_in(
    sessions: SessionFactory,
    *,
    username: str,
    password: str,
    address: str,
    settings: WebSettings,
    now: datetime | None = None,
) -> User:
    """Check a user name and password, counting failures for rate limiting.

    The password is checked between two short transactions, never while holding the
    database's write lock: Argon2id takes about 0.1 s on purpose, and the receiver
    and the worker share that lock. A refusal by the rate limit is logged, not
    audited (anyone can cause one; the failures that led to it are audited).

    Raises:
        SignInRateLimitedError: too many recent failures for the name or the address.
        SignInError: the name is unknown, the password wrong or the account disabled.
    """
    now = now or utcnow()
    username = username.strip().lower()[:64]
    address = address[:64]
    stored: str | None = None
    with writing(sessions) as session:
        retry_after = lock_remaining(
            session, username=username, address=address, settings=settings, now=now
        )
        if retry_after is None:
            user = find_user(session, username=username)
            stored = user.password_hash if user is not None and user.active else None
    if retry_after is not None:
        logger.warning(
            "sign-in refused: too many failures",
            extra={"username": username, "address": address},
        )
        raise SignInRateLimitedError(
            "too many failed sign-ins; try again later", max(retry_after, timedelta(seconds=1))
        )
    ok = verify_stored(stored, password)
    rehashed = hash_password(password) if ok and needs_rehash(stored or "") else None
    with writing(sessions) as session:
        user = find_user(session, username=username) if ok else None
        # A wrong password, or the account changed while the password was checked.
        ok = user is not None and user.active and user.password_hash == stored
        session.add(LoginAttempt(at=now, username=username, address=address, succeeded=ok))
        if not ok or user is None:
            audit.record(
                session,
                actor=username or "-",
                action="login.failed",
                detail={"address": address},
                now=now,
            )
        else:
            if rehashed is not None:
                user.password_hash = rehashed
            user.last_login_at = now
            audit.record(
                session,
                actor=username,
                action="login.succeeded",
                detail={"address": address},
                now=now,
            )
    if not ok or user is None:
        raise SignInError("unknown user name or wrong password")
    return user
