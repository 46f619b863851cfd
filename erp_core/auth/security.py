"""Password hashing (argon2), token generation and hashing."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from erp_core.i18n import N_

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 10
TOKEN_PREFIX = "erp"


class PasswordPolicyError(ValueError):
    """The password is too weak."""


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            N_("password must be at least %(n)s characters long", n=MIN_PASSWORD_LENGTH)
        )
    if password.strip() != password or not password.strip():
        raise PasswordPolicyError(N_("password must not start or end with spaces"))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        # Spend comparable time so that unknown users cannot be told apart by timing.
        _hasher.hash(password)
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (tokens, session ids): fast and safe for those."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_token() -> tuple[str, str, str]:
    """Return ``(token, key, secret_hash)``: the token is shown once, the rest is stored."""
    key = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{TOKEN_PREFIX}_{key}_{secret}", key, digest(secret)


def split_api_token(token: str) -> tuple[str, str] | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or len(parts[1]) != 16:
        return None
    return parts[1], parts[2]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_session_key() -> str:
    return secrets.token_urlsafe(32)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)
