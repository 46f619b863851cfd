"""Errors of channel account management (cheap to import: the API's error handlers use them).

Messages name fields, never their values: a secret never reaches an exception.
"""

from __future__ import annotations


class AccountError(ValueError):
    """Invalid channel account input (unknown connector, missing secret ...). API: 422."""

    status_code = 422


class AccountConflict(AccountError):
    """The tenant already has an account for this connector and shop. API: 409."""

    status_code = 409


class AccountNotFound(AccountError):
    """No such channel account in this tenant. API: 404."""

    status_code = 404
