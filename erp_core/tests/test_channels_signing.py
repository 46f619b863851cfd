"""Signing primitives: TOP vectors from PROTOCOLS.md, Alipay RSA2 against openssl, comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from erp_core.channels.signing import (
    alipay_sign,
    alipay_sign_content,
    alipay_verify,
    constant_time_equals,
    load_rsa_private_key,
    load_rsa_public_key,
    rsa2_sign,
    rsa2_verify,
    top_sign,
    top_sign_content,
)

# --- TOP -----------------------------------------------------------------------------------------

TOP_DOC_PARAMS = {
    "method": "taobao.user.seller.get",
    "app_key": "test",
    "session": "test",
    "timestamp": "2013-05-06 13:52:03",
    "format": "xml",
    "v": "2.0",
    "sign_method": "md5",
    "fields": "nick",
}


def test_top_canonical_string_of_the_doc_example():
    assert top_sign_content(TOP_DOC_PARAMS) == (
        "app_keytestfieldsnickformatxmlmethodtaobao.user.seller.getsessiontest"
        "sign_methodmd5timestamp2013-05-06 13:52:03v2.0"
    )


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("md5", "72CB4D809B375A54502C09360D879C64"),
        ("hmac", "F5289B497551C70E9ADD3ABCBE421FCD"),
        ("hmac-sha256", "C0D897391A71B22C8587CF013B19DF59FFA77A3BDC88EC5C3C0D9A4F1E1A8312"),
    ],
)
def test_top_worked_vectors(method, expected):
    # The vectors are over the same params whatever sign_method says (it is only a param).
    assert top_sign(TOP_DOC_PARAMS, "test", method) == expected


@pytest.mark.parametrize("method", ["md5", "hmac", "hmac-sha256"])
def test_top_sign_of_a_request_with_a_body_signs_the_body_after_the_parameters(method):
    # TOP's batch API: the body (the calls) follows the parameters' canonical string, inside
    # md5's secret wrapping; an empty body signs as the parameters alone
    body = "#PUBLIC#method=taobao.logistics.offline.send\r\n-S-\r\ntid=1&out_sid=SF1"
    content = (top_sign_content(TOP_DOC_PARAMS) + body).encode()
    key = b"test"
    expected = {
        "md5": hashlib.md5(key + content + key).hexdigest(),
        "hmac": hmac.new(key, content, hashlib.md5).hexdigest(),
        "hmac-sha256": hmac.new(key, content, hashlib.sha256).hexdigest(),
    }[method].upper()
    assert top_sign(TOP_DOC_PARAMS, "test", method, body=body) == expected
    assert top_sign(TOP_DOC_PARAMS, "test", method, body="") == top_sign(
        TOP_DOC_PARAMS, "test", method
    )
    assert top_sign(TOP_DOC_PARAMS, "test", method, body=body + " ") != expected


def test_top_excludes_sign_empty_values_and_files():
    with_noise = {
        **TOP_DOC_PARAMS,
        "sign": "WHATEVER",
        "empty": "",
        "none": None,
        "image": b"\x89PNG",
    }
    assert top_sign(with_noise, "test") == "72CB4D809B375A54502C09360D879C64"


def test_top_sorts_by_ascii_not_insertion_order():
    assert top_sign_content({"b": "2", "a": "1", "B": "3", "a_b": "4"}) == "B3a1a_b4b2"


def test_top_chinese_values_are_signed_as_utf8():
    params = {"q": "连衣裙 女 夏", "app_key": "12345678", "nick": "测试&卖家=1"}
    content = "app_key12345678nick测试&卖家=1q连衣裙 女 夏"
    assert top_sign_content(params) == content
    secret = "密钥secret"
    raw = content.encode("utf-8")
    key = secret.encode("utf-8")
    assert top_sign(params, secret, "md5") == hashlib.md5(key + raw + key).hexdigest().upper()
    assert top_sign(params, secret, "hmac") == hmac.new(key, raw, "md5").hexdigest().upper()
    assert (
        top_sign(params, secret, "hmac-sha256") == hmac.new(key, raw, "sha256").hexdigest().upper()
    )


def test_top_value_types():
    assert top_sign_content({"n": 3, "d": Decimal("1.50"), "t": True, "f": False}) == (
        "d1.50ffalsen3ttrue"
    )
    with pytest.raises(TypeError):
        top_sign_content({"x": 1.5})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        top_sign({"a": "1"}, "s", "sha1")  # type: ignore[arg-type]


# --- Alipay RSA2 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keypair() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_private(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _pem_public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _bare(pem: bytes) -> str:
    return "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))


REQUEST = {
    "app_id": "2021000000000000",
    "method": "alipay.trade.precreate",
    "format": "JSON",
    "charset": "utf-8",
    "sign_type": "RSA2",
    "timestamp": "2026-11-30 10:00:00",
    "version": "1.0",
    "notify_url": "https://erp.example.com/hooks/alipay/1?x=1&y=2",
    "biz_content": '{"out_trade_no":"T1","total_amount":"88.88","subject":"连衣裙&裤=套装"}',
    "app_auth_token": "",
}

NOTIFY = {
    "notify_time": "2026-11-30 10:01:02",
    "notify_type": "trade_status_sync",
    "notify_id": "ac05099524730693a8b330c5ecf72da9786",
    "app_id": "2021000000000000",
    "charset": "utf-8",
    "version": "1.0",
    "sign_type": "RSA2",
    "trade_no": "2026113022001400000000000001",
    "out_trade_no": "T1",
    "trade_status": "TRADE_SUCCESS",
    "total_amount": "88.88",
    "subject": "连衣裙 a=b&c=d",
    "body": "",
    "buyer_logon_id": "159****5620",
}


def test_alipay_request_content_sorted_raw_without_sign_and_empty():
    content = alipay_sign_content({**REQUEST, "sign": "xx"})
    assert content.startswith("app_id=2021000000000000&biz_content={")
    assert "app_auth_token" not in content
    assert "sign=" not in content.replace("sign_type=", "")
    assert "sign_type=RSA2" in content
    assert '"subject":"连衣裙&裤=套装"' in content  # raw, not URL-encoded
    assert "notify_url=https://erp.example.com/hooks/alipay/1?x=1&y=2" in content


def test_alipay_notification_content_keeps_empty_and_drops_sign_type():
    content = alipay_sign_content({**NOTIFY, "sign": "xx"}, notification=True)
    assert "sign_type" not in content
    assert "sign=" not in content
    assert "&body=&" in content
    names = [kv.split("=", 1)[0] for kv in content.split("&") if "=" in kv]
    assert names[0] == "app_id"


@pytest.mark.parametrize("fmt", ["pkcs1", "pkcs8", "pkcs1-bare", "pkcs8-bare", "object"])
def test_rsa2_round_trip_with_every_key_form(keypair, fmt):
    pkcs1 = _pem_private(keypair, serialization.PrivateFormat.TraditionalOpenSSL)
    pkcs8 = _pem_private(keypair, serialization.PrivateFormat.PKCS8)
    assert b"BEGIN RSA PRIVATE KEY" in pkcs1 and b"BEGIN PRIVATE KEY" in pkcs8
    key = {
        "pkcs1": pkcs1,
        "pkcs8": pkcs8.decode(),
        "pkcs1-bare": _bare(pkcs1),
        "pkcs8-bare": _bare(pkcs8),
        "object": keypair,
    }[fmt]
    sign = alipay_sign(REQUEST, key)
    # PKCS#1 v1.5 is deterministic: every key form gives the same signature.
    assert sign == alipay_sign(REQUEST, keypair)
    content = alipay_sign_content(REQUEST)
    assert rsa2_verify(content, sign, _pem_public(keypair))
    assert rsa2_verify(content, sign, _bare(_pem_public(keypair)))


def test_public_key_forms(keypair):
    pkcs1_pub = keypair.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    n = keypair.public_key().public_numbers().n
    for form in (_pem_public(keypair), _bare(_pem_public(keypair)), pkcs1_pub):
        assert load_rsa_public_key(form).public_numbers().n == n
    with pytest.raises(ValueError):
        load_rsa_public_key("not base64 at all!")
    with pytest.raises(ValueError):
        load_rsa_private_key(_pem_public(keypair))


def _signed_notification(keypair, **changes):
    params = {**NOTIFY, **changes}
    params["sign"] = rsa2_sign(alipay_sign_content(params, notification=True), keypair)
    return params


def test_alipay_notification_verifies_with_chinese_and_separators(keypair):
    pub = _bare(_pem_public(keypair))
    params = _signed_notification(keypair, subject="测试 & 商品 = 好", body="a&b=c")
    assert alipay_verify(params, pub)
    # sign_type is not signed: changing it does not matter for the check itself
    assert alipay_verify({**params, "sign_type": "RSA"}, pub)


@pytest.mark.parametrize(
    "tamper",
    [
        {"total_amount": "0.01"},
        {"subject": "连衣裙 a=b&c=e"},
        {"body": "x"},  # empty value is signed too
        {"extra": "1"},
        {"sign": ""},
    ],
)
def test_alipay_notification_tampered_is_rejected(keypair, tamper):
    params = _signed_notification(keypair)
    assert alipay_verify(params, _pem_public(keypair))
    assert not alipay_verify({**params, **tamper}, _pem_public(keypair))


def test_alipay_verify_rejects_garbage_signatures(keypair):
    params = _signed_notification(keypair)
    pub = _pem_public(keypair)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not alipay_verify({**params, "sign": "!!!not-base64"}, pub)
    assert not alipay_verify({k: v for k, v in params.items() if k != "sign"}, pub)
    assert not alipay_verify(params, _pem_public(other))
    # the separator trap: moving an '&' between values must not verify
    moved = {**params, "subject": NOTIFY["subject"] + "&total_amount=1"}
    assert not alipay_verify(moved, pub)


# --- independent check with the openssl binary ---------------------------------------------------

OPENSSL = shutil.which("openssl") or (
    "/usr/bin/openssl" if os.path.exists("/usr/bin/openssl") else None
)
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not available")


def _openssl(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, timeout=30, check=False)


@needs_openssl
def test_openssl_verifies_our_signature(keypair, tmp_path: Path):
    content = alipay_sign_content({**REQUEST, "subject": "中文 & = 值"})
    (tmp_path / "data").write_bytes(content.encode("utf-8"))
    (tmp_path / "pub.pem").write_bytes(_pem_public(keypair))
    sign = alipay_sign({**REQUEST, "subject": "中文 & = 值"}, keypair)
    (tmp_path / "sig").write_bytes(base64.b64decode(sign))
    ok = _openssl(
        "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"),
        "-signature", str(tmp_path / "sig"), str(tmp_path / "data"),
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert b"Verified OK" in ok.stdout
    (tmp_path / "data").write_bytes(content.replace("中文", "中午").encode("utf-8"))
    bad = _openssl(
        "dgst", "-sha256", "-verify", str(tmp_path / "pub.pem"),
        "-signature", str(tmp_path / "sig"), str(tmp_path / "data"),
    )  # fmt: skip
    assert bad.returncode != 0


@needs_openssl
def test_we_verify_a_notification_signed_by_openssl(keypair, tmp_path: Path):
    # The platform side is played by openssl: our canonical string, its signature.
    params = {**NOTIFY, "subject": "退款 a=1&b=2", "body": ""}
    content = alipay_sign_content(params, notification=True)
    (tmp_path / "data").write_bytes(content.encode("utf-8"))
    (tmp_path / "key.pem").write_bytes(
        _pem_private(keypair, serialization.PrivateFormat.TraditionalOpenSSL)
    )
    signed = _openssl(
        "dgst", "-sha256", "-sign", str(tmp_path / "key.pem"), str(tmp_path / "data")
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    params["sign"] = base64.b64encode(signed.stdout).decode()
    assert alipay_verify(params, _bare(_pem_public(keypair)))
    assert not alipay_verify({**params, "body": " "}, _pem_public(keypair))


# --- constant-time comparison --------------------------------------------------------------------


def test_constant_time_equals():
    assert constant_time_equals("72CB4D80", "72CB4D80")
    assert not constant_time_equals("72CB4D80", "72cb4d80")
    assert constant_time_equals("72CB4D80", "72cb4d80", ignore_case=True)
    assert constant_time_equals(b"YWJj", "YWJj")
    assert not constant_time_equals("YWJj", "YWJk")
    assert not constant_time_equals("YWJj", "YWJjYWJj")
    assert not constant_time_equals("abc", "abç")
