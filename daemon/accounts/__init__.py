"""Web accounts: users and roles, Argon2id passwords, sessions, sign-in rate limiting.

A user is a radiologist (reads, gives feedback, analyses images) or an admin (also
the dashboard, calibration and users). Every sign-in, failure, refusal, sign-out and
account change is in the audit log. By concern:

- :mod:`.people`: users and roles, the first admin, password changes and resets
  (not ``users``, the name of the function that lists them);
- :mod:`.passwords`: Argon2id hashes, one-time passwords, the password rules;
- :mod:`.sessions`: browser sessions and API tokens (only their SHA-256 is stored);
- :mod:`.signin`: sign-in and its rate limits, counted in the database;
- :mod:`.housekeeping`: deleting old sign-in attempts and ended sessions;
- :mod:`.errors`: what goes wrong.

Callers use the names re-exported here (``accounts.sign_in``, ``accounts.BROWSER``).
"""

from __future__ import annotations

from daemon.accounts.errors import AccountError, SignInError, SignInRateLimitedError
from daemon.accounts.housekeeping import KEEP_ENDED, purge_expired
from daemon.accounts.passwords import (
    check_password_rules,
    hash_password,
    one_time_password,
    verify_password,
)
from daemon.accounts.people import (
    FIRST_ADMIN,
    USERNAME,
    change_password,
    create_user,
    ensure_first_admin,
    find_user,
    reset_password,
    set_active,
    set_role,
    users,
)
from daemon.accounts.sessions import (
    API,
    BROWSER,
    TOUCH_EVERY,
    NewSession,
    end_session,
    end_session_by_token,
    resolve_session,
    session_update_due,
    start_session,
    token_hash,
    web_session,
)
from daemon.accounts.signin import sign_in

__all__ = [
    "API",
    "BROWSER",
    "FIRST_ADMIN",
    "KEEP_ENDED",
    "TOUCH_EVERY",
    "USERNAME",
    "AccountError",
    "NewSession",
    "SignInError",
    "SignInRateLimitedError",
    "change_password",
    "check_password_rules",
    "create_user",
    "end_session",
    "end_session_by_token",
    "ensure_first_admin",
    "find_user",
    "hash_password",
    "one_time_password",
    "purge_expired",
    "reset_password",
    "resolve_session",
    "session_update_due",
    "set_active",
    "set_role",
    "sign_in",
    "start_session",
    "token_hash",
    "users",
    "verify_password",
    "web_session",
]
