"""Web accounts: users and roles, Argon2id passwords, sessions, sign-in rate limiting.

A user is a radiologist (reads, gives feedback, analyses images) or an admin (also
the dashboard, calibration and users). On first start, when no user exists, an
``admin`` account is created with a one-time password that the caller writes to the
log; a one-time password (the first, or after a reset) must be changed at the next
sign-in.

Sessions are random tokens; the database keeps only their SHA-256, so a copy of the
database signs nobody in. A browser session ends after ``session_idle_minutes``
without a request and after ``session_max_hours`` in any case; an API token lasts
``api_token_days``. Every sign-in, failure, refusal, sign-out and account change is in
the audit log.

Rate limiting: after ``login_max_failures`` failures from one address, or
``login_max_failures_per_user`` (more) for one user name from any address, within
``login_window_minutes``, sign-in is refused (without checking the password) until
the oldest of those failures leaves the window. Attempts are counted in the
database, so every web process of a site shares the count.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from daemon import audit
from daemon.db.models import LoginAttempt, User, UserRole, WebSession, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.errors import DaemonError
from daemon.settings import WebSettings

logger = logging.getLogger(__name__)

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
FIRST_ADMIN = "admin"
BROWSER, API = "browser", "api"
# A session's last request is written at most this often (fewer writes per page).
TOUCH_EVERY = timedelta(seconds=60)
# Ended sessions and old sign-in attempts are deleted this long after they stop mattering.
KEEP_ENDED = timedelta(days=1)

_hasher = PasswordHasher()  # Argon2id with the library's current recommended costs
# Verified against when the user name is unknown, so the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(DaemonError):
    """An account change that cannot be made (bad name or password, last admin)."""


class SignInError(DaemonError):
    """Sign-in failed: unknown user, wrong password or a disabled account (not said which)."""


class SignInRateLimitedError(SignInError):
    """Too many recent failures for this user name or address."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted; parameters encoded in the hash)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the hash (False for a malformed hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def one_time_password() -> str:
    """A random password for a new account or a reset (about 96 bits)."""
    return secrets.token_urlsafe(12)


def token_hash(token: str) -> str:
    """What is stored of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_rules(password: str, settings: WebSettings, *, username: str) -> None:
    """Refuse a short password or one equal to the user name.

    Raises:
        AccountError: naming the rule.
    """
    if len(password) < settings.min_password_length:
        raise AccountError(
            f"the password must have at least {settings.min_password_length} characters"
        )
    if password.strip().lower() == username.lower():
        raise AccountError("the password must not be the user name")


def find_user(session: Session, *, username: str) -> User | None:
    """The user of that name, or None."""
    return session.scalar(select(User).where(User.username == username))


def users(session: Session) -> list[User]:
    """Every user, by name."""
    return list(session.scalars(select(User).order_by(User.username)).all())


def _active_admins(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count(User.id)).where(User.role == UserRole.ADMIN, User.active.is_(True))
        )
        or 0
    )


def create_user(
    session: Session,
    *,
    username: str,
    role: UserRole,
    actor: str,
    now: datetime | None = None,
) -> tuple[User, str]:
    """Create an account with a one-time password; returns the user and that password.

    Raises:
        AccountError: a bad or taken user name.
    """
    username = username.strip().lower()
    if not USERNAME.fullmatch(username):
        raise AccountError(
            "a user name has 2-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    if find_user(session, username=username) is not None:
        raise AccountError(f"the user name {username!r} is taken")
    now = now or utcnow()
    password = one_time_password()
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        active=True,
        must_change_password=True,
        created_at=now,
        created_by=actor,
        password_changed_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.created",
        subject=username,
        detail={"role": role.value},
        now=now,
    )
    return user, password


def ensure_first_admin(session: Session) -> str | None:
    """Create the ``admin`` account when there is no user; its one-time password, else None."""
    if session.scalar(select(func.count(User.id))):
        return None
    _, password = create_user(session, username=FIRST_ADMIN, role=UserRole.ADMIN, actor="system")
    return password


def _lock_remaining(
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
        retry_after = _lock_remaining(
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
    ok = verify_password(stored or _DUMMY_HASH, password) and stored is not None
    rehashed = hash_password(password) if ok and _hasher.check_needs_rehash(stored or "") else None
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
    found = session.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))
    if found is None or found.ended_at is not None or found.expires_at <= now:
        return None
    if found.kind == BROWSER and now - found.last_seen_at > timedelta(
        minutes=settings.session_idle_minutes
    ):
        found.ended_at = now
        return None
    if not found.user.active:
        return None
    if activity and now - found.last_seen_at >= TOUCH_EVERY:
        found.last_seen_at = now
    return found


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
    found = session.scalar(select(WebSession).where(WebSession.token_hash == token_hash(token)))
    if found is not None and found.ended_at is None:
        found.ended_at = now or utcnow()


def _end_all_sessions(
    session: Session, *, user: User, now: datetime, keep: WebSession | None = None
) -> None:
    query = update(WebSession).where(WebSession.user_id == user.id, WebSession.ended_at.is_(None))
    if keep is not None:
        query = query.where(WebSession.id != keep.id)
    session.execute(query.values(ended_at=now))


def change_password(
    sessions: SessionFactory,
    *,
    user_id: int,
    current: str,
    new: str,
    settings: WebSettings,
    keep_session_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """A user changes their own password; their other sessions end.

    As in :func:`sign_in`, the hashing happens between two short transactions, not
    while holding the database's write lock.

    Raises:
        AccountError: no such user, the current password is wrong, or the new one breaks
            a rule or is the same.
    """
    now = now or utcnow()
    with writing(sessions) as session:
        user = session.get(User, user_id)
        if user is None:
            raise AccountError(f"no user {user_id}")
        stored, username = user.password_hash, user.username
    if not verify_password(stored, current):
        raise AccountError("the current password is wrong")
    if new == current:
        raise AccountError("the new password must differ from the current one")
    check_password_rules(new, settings, username=username)
    new_hash = hash_password(new)
    with writing(sessions) as session:
        user = session.get(User, user_id)
        if user is None or user.password_hash != stored:
            raise AccountError("the password was changed meanwhile; try again")
        user.password_hash = new_hash
        user.must_change_password = False
        user.password_changed_at = now
        keep = session.get(WebSession, keep_session_id) if keep_session_id is not None else None
        _end_all_sessions(session, user=user, now=now, keep=keep)
        audit.record(session, actor=username, action="user.password_changed", now=now)


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AccountError(f"no user {user_id}")
    return user


def reset_password(
    session: Session, *, user_id: int, actor: str, now: datetime | None = None
) -> tuple[User, str]:
    """An admin gives a user a new one-time password; the user's sessions end."""
    now = now or utcnow()
    user = _user(session, user_id)
    password = one_time_password()
    user.password_hash = hash_password(password)
    user.must_change_password = True
    user.password_changed_at = now
    _end_all_sessions(session, user=user, now=now)
    audit.record(session, actor=actor, action="user.password_reset", subject=user.username, now=now)
    return user, password


def set_role(
    session: Session, *, user_id: int, role: UserRole, actor: str, now: datetime | None = None
) -> User:
    """Change a user's role.

    Raises:
        AccountError: it would leave no active admin.
    """
    user = _user(session, user_id)
    if user.role == role:
        return user
    if user.role == UserRole.ADMIN and user.active and _active_admins(session) <= 1:
        raise AccountError("the last active admin cannot lose the admin role")
    old = user.role
    user.role = role
    _end_all_sessions(session, user=user, now=now or utcnow())
    audit.record(
        session,
        actor=actor,
        action="user.role_changed",
        subject=user.username,
        detail={"old": old.value, "new": role.value},
        now=now,
    )
    return user


def set_active(
    session: Session, *, user_id: int, active: bool, actor: str, now: datetime | None = None
) -> User:
    """Enable or disable an account (a disabled one is signed out everywhere).

    Raises:
        AccountError: it would disable the last active admin.
    """
    now = now or utcnow()
    user = _user(session, user_id)
    if user.active == active:
        return user
    if not active and user.role == UserRole.ADMIN and _active_admins(session) <= 1:
        raise AccountError("the last active admin cannot be disabled")
    user.active = active
    if not active:
        _end_all_sessions(session, user=user, now=now)
    audit.record(
        session,
        actor=actor,
        action="user.enabled" if active else "user.disabled",
        subject=user.username,
        now=now,
    )
    return user


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
