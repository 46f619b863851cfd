"""Secrets at rest: AES-GCM, keys derived per purpose, bound to where they are stored."""

from __future__ import annotations

import logging

import pytest

from erp_core.channels.crypto import (
    CHANNEL_SECRETS,
    CryptoError,
    InsecureKeyError,
    SecretBox,
    binding,
    channel_box,
    derive_key,
    key_id,
)
from erp_core.settings import load_settings


def test_round_trip_and_format():
    box = SecretBox([derive_key("k1", CHANNEL_SECRETS)])
    aad = binding("core_channel_account", 1, 7, "secrets")
    token = box.encrypt("密钥 s3cret".encode(), aad)
    fmt, kid, _ = token.split(".")
    assert fmt == "erpenc1" and kid == key_id(derive_key("k1", CHANNEL_SECRETS))
    assert "s3cret" not in token
    assert box.decrypt(token, aad).decode() == "密钥 s3cret"
    assert box.encrypt(b"x", aad) != box.encrypt(b"x", aad)  # fresh nonce each time


def test_keys_differ_per_purpose_and_secret_key():
    assert derive_key("k1", CHANNEL_SECRETS) != derive_key("k1", "another/purpose")
    assert derive_key("k1", CHANNEL_SECRETS) != derive_key("k2", CHANNEL_SECRETS)
    assert len(derive_key("k1", CHANNEL_SECRETS)) == 32


def test_a_ciphertext_moved_elsewhere_does_not_decrypt():
    box = SecretBox([derive_key("k1", CHANNEL_SECRETS)])
    token = box.encrypt(b"secret", binding("core_channel_account", 1, 7, "secrets"))
    for elsewhere in (
        binding("core_channel_account", 2, 7, "secrets"),  # another tenant
        binding("core_channel_account", 1, 8, "secrets"),  # another row
        binding("core_channel_account", 1, 7, "access_token"),  # another column
    ):
        with pytest.raises(CryptoError, match="does not verify"):
            box.decrypt(token, elsewhere)


def test_tampered_unknown_key_and_garbage_are_refused():
    aad = binding("t", 1)
    box = SecretBox([derive_key("k1", CHANNEL_SECRETS)])
    token = box.encrypt(b"secret", aad)
    body = token.rsplit(".", 1)[1]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(CryptoError):
        box.decrypt(token.rsplit(".", 1)[0] + "." + flipped, aad)
    other = SecretBox([derive_key("k2", CHANNEL_SECRETS)])
    with pytest.raises(CryptoError, match="not configured"):
        other.decrypt(token, aad)
    for junk in ("", "plain", "erpenc1.abc", "erpenc1.abcd1234.!!!", "erpenc1.abcd1234.AAAA"):
        with pytest.raises(CryptoError):
            box.decrypt(junk, aad)


def test_rotation_old_keys_still_decrypt():
    old = SecretBox([derive_key("old", CHANNEL_SECRETS)])
    token = old.encrypt(b"secret", b"aad")
    rotated = SecretBox([derive_key("new", CHANNEL_SECRETS), derive_key("old", CHANNEL_SECRETS)])
    assert rotated.decrypt(token, b"aad") == b"secret"
    assert rotated.encrypt(b"x", b"aad").split(".")[1] == key_id(derive_key("new", CHANNEL_SECRETS))


def test_the_default_secret_key_is_refused_on_postgresql_and_warned_about_on_sqlite(caplog):
    pg = load_settings(
        database_url="postgresql+psycopg://u:p@h/db", secret_key="change-me-in-production"
    )
    with pytest.raises(InsecureKeyError, match="ERP_SECRET_KEY"):
        channel_box(pg, for_writing=True)
    channel_box(pg)  # reading (to re-enter credentials after setting a key) is not refused
    lite = load_settings(database_url="sqlite:///x.sqlite", secret_key="change-me-in-production")
    with caplog.at_level(logging.WARNING):
        channel_box(lite, for_writing=True)
    assert "default secret_key" in caplog.text
    with pytest.raises(InsecureKeyError):
        derive_key("", CHANNEL_SECRETS)
