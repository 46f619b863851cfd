"""Secrets at rest: AES-256-GCM under keys derived from the settings' ``secret_key``.

A ciphertext is the text ``erpenc1.<key id>.<base64url(nonce || ciphertext+tag)>``:

- ``erpenc1`` names the format; ``key id`` (8 hex digits) identifies the key it was made
  with, so that a later rotation can keep old keys to decrypt with while new ciphertexts use
  the new one (:class:`SecretBox` already accepts several keys; the first encrypts).
- Keys are derived with HKDF-SHA256 from ``secret_key`` with an ``info`` label per purpose, so
  the key that protects channel secrets is not the one that signs cookies.
- The associated data binds each ciphertext to where it is stored (tenant, row, column):
  a blob copied to another row, column or tenant fails to decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from erp_core.settings import Settings

log = logging.getLogger(__name__)

FORMAT = "erpenc1"
DEFAULT_SECRET_KEY = "change-me-in-production"
#: HKDF ``info`` label of the key that encrypts channel account credentials.
CHANNEL_SECRETS = "erp-core/channel-account-secrets/v1"
_SALT = b"erp-core secrets at rest"
_NONCE = 12


class CryptoError(Exception):
    """A ciphertext cannot be decrypted: malformed, another key, or stored somewhere else."""


class InsecureKeyError(CryptoError):
    """Refused to encrypt under the default ``secret_key``."""


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` derived from ``secret_key`` (HKDF-SHA256)."""
    if not secret_key:
        raise InsecureKeyError("secret_key is empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=purpose.encode())
    return hkdf.derive(secret_key.encode("utf-8"))


def key_id(key: bytes) -> str:
    """8 hex digits naming a key (a hash of it; reveals nothing usable)."""
    return hashlib.sha256(b"erp key id\0" + key).hexdigest()[:8]


def binding(*parts: object) -> bytes:
    """Associated data from the parts naming where a ciphertext lives (NUL-separated)."""
    return "\0".join(str(p) for p in parts).encode("utf-8")


class SecretBox:
    """Encrypts with the first key, decrypts with whichever key the ciphertext names."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._keys = [(key_id(k), AESGCM(k)) for k in keys]

    def __repr__(self) -> str:
        return f"<SecretBox keys={[kid for kid, _ in self._keys]}>"

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        kid, aead = self._keys[0]
        nonce = os.urandom(_NONCE)
        data = nonce + aead.encrypt(nonce, plaintext, aad)
        return f"{FORMAT}.{kid}.{base64.urlsafe_b64encode(data).decode('ascii')}"

    def decrypt(self, token: str, aad: bytes) -> bytes:
        fmt, _, rest = token.partition(".")
        kid, _, body = rest.partition(".")
        if fmt != FORMAT or not kid or not body:
            raise CryptoError("not a ciphertext of a known format")
        aead = next((a for k, a in self._keys if k == kid), None)
        if aead is None:
            raise CryptoError(f"ciphertext made with key {kid}, which is not configured")
        try:
            data = base64.urlsafe_b64decode(body.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise CryptoError("ciphertext is not valid base64") from None
        if len(data) < _NONCE + 16:
            raise CryptoError("ciphertext is truncated")
        try:
            return aead.decrypt(data[:_NONCE], data[_NONCE:], aad)
        except InvalidTag:
            raise CryptoError(
                "ciphertext does not verify: altered, or copied from another row or tenant"
            ) from None


def channel_box(settings: Settings, *, for_writing: bool = False) -> SecretBox:
    """The box of channel account credentials under ``settings.secret_key``.

    With ``for_writing`` and the default ``secret_key``: refused on PostgreSQL (a production
    deployment must set its own key), allowed with a warning on SQLite (the demo, a laptop).
    """
    if for_writing and settings.secret_key == DEFAULT_SECRET_KEY:
        if settings.resolved_database_url().startswith("postgresql"):
            raise InsecureKeyError(
                "refusing to store channel secrets under the default secret_key: set "
                "ERP_SECRET_KEY (or secret_key in the configuration) to a long random value"
            )
        log.warning(
            "channel secrets are encrypted under the default secret_key; set ERP_SECRET_KEY "
            "before storing real credentials"
        )
    return SecretBox([derive_key(settings.secret_key, CHANNEL_SECRETS)])
