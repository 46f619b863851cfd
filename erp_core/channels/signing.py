"""Signing primitives for channel connectors: pure functions, exact on bytes and strings.

* Taobao/Tmall TOP: ``md5``, ``hmac`` (HMAC-MD5) and ``hmac-sha256`` over the parameters sorted
  by name and concatenated ``k1v1k2v2…`` (see ``PROTOCOLS.md`` §1); hex upper case.
* Alipay RSA2: SHA256withRSA (PKCS#1 v1.5) over ``k=v&k=v`` of the sorted parameters, Base64.
* :func:`constant_time_equals` for comparing signatures without a timing side channel.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "TopSignMethod",
    "alipay_sign",
    "alipay_sign_content",
    "alipay_verify",
    "constant_time_equals",
    "load_rsa_private_key",
    "load_rsa_public_key",
    "rsa2_sign",
    "rsa2_verify",
    "top_sign",
    "top_sign_content",
]

TopSignMethod = Literal["md5", "hmac", "hmac-sha256"]

ParamValue = str | int | Decimal | bytes | None
Params = Mapping[str, ParamValue]


def _text(name: str, value: str | int | Decimal) -> str:
    if isinstance(value, bool):
        # Platforms expect "true"/"false"; Python's "True" would sign something else.
        return "true" if value else "false"
    if isinstance(value, str | int | Decimal):
        return str(value)
    raise TypeError(f"parameter {name!r}: cannot sign a value of type {type(value).__name__}")


# --- Taobao / Tmall TOP -------------------------------------------------------------------------


def top_sign_content(params: Params) -> str:
    """The TOP canonical string: ``k1v1k2v2…`` sorted by name (code point order).

    ``sign``, empty values (``None`` or ``""``) and byte/file parameters are left out, as the
    official SDKs do.
    """
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        if name == "sign" or value is None or isinstance(value, bytes | bytearray):
            continue
        text = _text(name, value)
        if text == "":
            continue
        items.append((name, text))
    items.sort()
    return "".join(name + text for name, text in items)


def top_sign(params: Params, secret: str, method: TopSignMethod = "md5", *, body: str = "") -> str:
    """The TOP ``sign`` of ``params`` with the app secret, hex upper case. ``body``: the request
    body of a call that carries its content there (TOP's batch API), signed after the
    parameters' canonical string."""
    content = (top_sign_content(params) + body).encode("utf-8")
    key = secret.encode("utf-8")
    if method == "md5":
        digest = hashlib.md5(key + content + key).hexdigest()
    elif method == "hmac":
        digest = hmac.new(key, content, hashlib.md5).hexdigest()
    elif method == "hmac-sha256":
        digest = hmac.new(key, content, hashlib.sha256).hexdigest()
    else:
        raise ValueError(f"unknown TOP sign_method {method!r}")
    return digest.upper()


# --- RSA keys -----------------------------------------------------------------------------------


def _der_from_bare(text: str) -> bytes:
    body = "".join(text.split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError("not a PEM key nor a Base64 key body") from exc


def load_rsa_private_key(key: str | bytes | rsa.RSAPrivateKey) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``) or
    from the bare Base64 body (either form) as the Alipay key tool writes it."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key
    raw = key.encode("ascii") if isinstance(key, str) else key
    if b"-----BEGIN" in raw:
        loaded = serialization.load_pem_private_key(raw, password=None)
    else:
        loaded = serialization.load_der_private_key(_der_from_bare(raw.decode("ascii")), None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return loaded


def load_rsa_public_key(key: str | bytes | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (``PUBLIC KEY`` or ``RSA PUBLIC KEY``) or from the bare
    Base64 body shown by the Alipay console."""
    if isinstance(key, rsa.RSAPublicKey):
        return key
    raw = key.encode("ascii") if isinstance(key, str) else key
    if b"-----BEGIN" in raw:
        loaded = serialization.load_pem_public_key(raw)
    else:
        loaded = serialization.load_der_public_key(_der_from_bare(raw.decode("ascii")))
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return loaded


def rsa2_sign(content: str | bytes, private_key: str | bytes | rsa.RSAPrivateKey) -> str:
    """SHA256withRSA (PKCS#1 v1.5) of ``content`` (UTF-8 if text), Base64."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    key = load_rsa_private_key(private_key)
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa2_verify(
    content: str | bytes, signature: str, public_key: str | bytes | rsa.RSAPublicKey
) -> bool:
    """Whether ``signature`` (Base64) is a valid SHA256withRSA signature of ``content``."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    key = load_rsa_public_key(public_key)
    try:
        raw = base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# --- Alipay -------------------------------------------------------------------------------------


def alipay_sign_content(params: Params, *, notification: bool = False) -> str:
    """The Alipay canonical string ``k=v&k=v`` (sorted, raw UTF-8, not URL-encoded).

    For a request (``notification=False``): everything but ``sign``, empty values left out.
    For verifying an async notification (``notification=True``): everything but ``sign`` and
    ``sign_type``, empty values kept (``PROTOCOLS.md`` §2).
    """
    excluded = {"sign", "sign_type"} if notification else {"sign"}
    items: list[tuple[str, str]] = []
    for name, value in params.items():
        if name in excluded:
            continue
        if isinstance(value, bytes | bytearray):
            raise TypeError(f"parameter {name!r}: cannot sign bytes")
        text = "" if value is None else _text(name, value)
        if text == "" and not notification:
            continue
        items.append((name, text))
    items.sort()
    return "&".join(f"{name}={text}" for name, text in items)


def alipay_sign(params: Params, private_key: str | bytes | rsa.RSAPrivateKey) -> str:
    """The RSA2 ``sign`` of an Alipay request."""
    return rsa2_sign(alipay_sign_content(params), private_key)


def alipay_verify(params: Params, public_key: str | bytes | rsa.RSAPublicKey) -> bool:
    """Whether an Alipay async notification (form fields, already URL-decoded) carries a valid
    ``sign`` from the Alipay public key. A missing ``sign`` is invalid."""
    signature = params.get("sign")
    if not isinstance(signature, str) or not signature:
        return False
    return rsa2_verify(alipay_sign_content(params, notification=True), signature, public_key)


# --- comparison ---------------------------------------------------------------------------------


def constant_time_equals(
    expected: str | bytes, received: str | bytes, *, ignore_case: bool = False
) -> bool:
    """Compare two signatures (hex or Base64) in constant time.

    ``ignore_case`` suits hex digests (platforms differ on upper/lower case); never use it for
    Base64. Non-ASCII input never matches.
    """
    try:
        a = expected.encode("ascii") if isinstance(expected, str) else bytes(expected)
        b = received.encode("ascii") if isinstance(received, str) else bytes(received)
    except UnicodeEncodeError:
        return False
    if ignore_case:
        a, b = a.lower(), b.lower()
    return hmac.compare_digest(a, b)
