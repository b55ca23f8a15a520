"""Users and roles: create, find, change password, reset, change role, enable, disable.

On first start, when no user exists, an ``admin`` account is created with a one-time
password that the caller writes to the log; a one-time password (the first, or after
a reset) must be changed at the next sign-in. A change of password, role or status
ends the user's sessions; the last active admin can be neither demoted nor disabled.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon import audit
from daemon.accounts.errors import AccountError
from daemon.accounts.passwords import (
    check_password_rules,
    hash_password,
    one_time_password,
    verify_password,
)
from daemon.accounts.sessions import end_all_sessions
from daemon.db.models import User, UserRole, WebSession, utcnow
from daemon.db.session import SessionFactory, writing
from daemon.settings import WebSettings

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
FIRST_ADMIN = "admin"


def find_user(session: Session, *, username: str) -> User | None:
    """The user of that name, or None."""
    return session.scalar(select(User).where(User.username == username))


def users(session: Session) -> list[User]:
    """Every user, by name."""
    return list(session.scalars(select(User).order_by(User.username)).all())


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise AccountError(f"no user {user_id}")
    return user


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
    """Create the ``admin`` account when there is no user; its one-time password, else None.

    Two web processes starting together on one database may both find no user: the
    second one, finding ``admin`` made by the first (its insert waited for the first's
    commit, or the first committed before it looked the name up), gives way (None)
    instead of failing its start.
    """
    if session.scalar(select(func.count(User.id))):
        return None
    try:
        with session.begin_nested():
            _, password = create_user(
                session, username=FIRST_ADMIN, role=UserRole.ADMIN, actor="system"
            )
    except (IntegrityError, AccountError):
        if find_user(session, username=FIRST_ADMIN) is None:
            raise
        return None
    return password


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

    As in :func:`daemon.accounts.signin.sign_in`, the hashing happens between two
    short transactions, not while holding the database's write lock.

    Raises:
        AccountError: no such user, the current password is wrong, or the new one breaks
            a rule or is the same.
    """
    now = now or utcnow()
    with writing(sessions) as session:
        user = _user(session, user_id)
        stored, username = user.password_hash, user.username
    if not verify_password(stored, current):
        raise AccountError("the current password is wrong")
    if new == current:
        raise AccountError("the new password must differ from the current one")
    check_password_rules(new, settings, username=username)
    new_hash = hash_password(new)
    with writing(sessions) as session:
        found = session.get(User, user_id)
        if found is None or found.password_hash != stored:
            raise AccountError("the password was changed meanwhile; try again")
        found.password_hash = new_hash
        found.must_change_password = False
        found.password_changed_at = now
        keep = session.get(WebSession, keep_session_id) if keep_session_id is not None else None
        end_all_sessions(session, user=found, now=now, keep=keep)
        audit.record(session, actor=username, action="user.password_changed", now=now)


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
    end_all_sessions(session, user=user, now=now)
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
    end_all_sessions(session, user=user, now=now or utcnow())
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
        end_all_sessions(session, user=user, now=now)
    audit.record(
        session,
        actor=actor,
        action="user.enabled" if active else "user.disabled",
        subject=user.username,
        now=now,
    )
    return user
