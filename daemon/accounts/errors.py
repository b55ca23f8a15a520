"""What goes wrong with accounts and sign-in."""

from __future__ import annotations

from datetime import timedelta

from daemon.errors import DaemonError


class AccountError(DaemonError):
    """An account change that cannot be made (bad name or password, last admin)."""


class SignInError(DaemonError):
    """Sign-in failed: unknown user, wrong password or a disabled account (not said which)."""


class SignInRateLimitedError(SignInError):
    """Too many recent failures for this user name or address."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after
