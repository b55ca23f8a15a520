"""Argon2id password hashes, one-time passwords and the rules a new password keeps.

Pure of the database: these functions hash, verify and judge strings.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from daemon.accounts.errors import AccountError
from daemon.settings import WebSettings

_hasher = PasswordHasher()  # Argon2id with the library's current recommended costs
# Verified against when the user name is unknown, so the answer takes as long.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted; parameters encoded in the hash)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches the hash (False for a malformed hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_stored(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches a stored hash; with none (an unknown or disabled
    user), False after as long as a real check takes, so timing does not tell."""
    return verify_password(password_hash or _DUMMY_HASH, password) and password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with other costs than the current ones."""
    return _hasher.check_needs_rehash(password_hash)


def one_time_password() -> str:
    """A random password for a new account or a reset (about 96 bits)."""
    return secrets.token_urlsafe(12)


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
