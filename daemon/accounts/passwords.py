"""Argon2id password hashes, one-time passwords and the rules a new password keeps.

Pure of the database: these functions hash, verify and judge strings. A chosen
password is judged by zxcvbn (a strength estimator that knows common passwords,
words, names, keyboard walks, repeats, sequences and dates) on top of our own rules:
a minimum length, not only spaces, and not containing the user name.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from daemon.accounts.errors import AccountError
from daemon.settings import WebSettings

_hasher = PasswordHasher()  # Argon2id with the library's current recommended costs
# zxcvbn's cost grows steeply with length; it judges this many leading characters (its own
# default limit). A password longer than that is at least as strong as its start.
ESTIMATED_CHARACTERS = 72
NAME_IN_PASSWORD = 4  # a user name this long or longer must not appear in the password
# Words the estimator counts as known to a guesser, besides the user name.
SITE_WORDS = ("chestaid", "radiology", "radiologist", "pneumonia", "admin")
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
    """Refuse a password that is short, only spaces, contains the user name, or is guessable.

    Guessable means zxcvbn scores it below ``settings.min_password_score`` (0-4; 3 is
    "safely unguessable: moderate protection from an offline attack on a slow hash").

    Raises:
        AccountError: saying why, in words a user can act on.
    """
    if len(password) < settings.min_password_length:
        raise AccountError(
            f"the password must have at least {settings.min_password_length} characters"
        )
    if not password.strip():
        raise AccountError("the password must not be only spaces")
    # A very short name (two or three letters) is left to the estimator, which knows it:
    # refusing every password that merely contains "jo" would refuse good passphrases.
    if len(username) >= NAME_IN_PASSWORD and username.lower() in password.lower():
        raise AccountError("the password must not contain the user name")
    judged = zxcvbn(
        password[:ESTIMATED_CHARACTERS],
        user_inputs=[username, *SITE_WORDS],
        max_length=ESTIMATED_CHARACTERS,
    )
    if int(judged["score"]) < settings.min_password_score:
        raise AccountError(_weak_reason(judged["feedback"]))


def _weak_reason(feedback: dict[str, object]) -> str:
    """The refusal of a guessable password: the estimator's warning and suggestions."""
    warning = str(feedback.get("warning") or "").strip().rstrip(".")
    raw = feedback.get("suggestions")
    suggestions = [str(s).strip() for s in raw if str(s).strip()] if isinstance(raw, list) else []
    reason = "the password is too easy to guess"
    if warning:
        reason += f": {warning[0].lower()}{warning[1:]}"
    hints = suggestions or ["Use a few uncommon words together (a passphrase)."]
    return f"{reason}. {' '.join(hints)}"
