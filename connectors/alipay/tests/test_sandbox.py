"""The sandbox enforces Alipay's protocol; checked with raw HTTP and with openssl, not with the
connector's own code."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from erp_connector_alipay.channel import AlipayChannel
from erp_connector_alipay.manifest import MANIFEST
from erp_connector_alipay.sandbox import AlipaySandbox

from erp_core.channels import ChannelAuthError, InvalidMessage, PaymentRequest, RefundRequest
from erp_core.testing.sandbox import PaymentSandbox


def _openssl_verify(tmp: Path, public_pem: str, content: bytes, sign: str) -> bool:
    (tmp / "pub.pem").write_text(public_pem)
    (tmp / "sig.bin").write_bytes(base64.b64decode(sign))
    done = subprocess.run(
        [
            "openssl",
            "dgst",
            "-sha256",
            "-verify",
            str(tmp / "pub.pem"),
            "-signature",
            str(tmp / "sig.bin"),
        ],
        input=content,
        capture_output=True,
    )
    return done.returncode == 0


def _merchant_public_pem(tmp: Path, private_pem: str) -> str:
    (tmp / "merchant.pem").write_text(private_pem)
    done = subprocess.run(
        ["openssl", "pkey", "-in", str(tmp / "merchant.pem"), "-pubout"],
        capture_output=True,
        check=True,
    )
    return done.stdout.decode()


def test_the_manifest_names_this_sandbox_and_channel() -> None:
    assert MANIFEST.sandbox == "erp_connector_alipay.sandbox:AlipaySandbox"
    assert MANIFEST.channel == "erp_connector_alipay.channel:AlipayChannel"
    assert issubclass(AlipaySandbox, PaymentSandbox) and AlipaySandbox.connector == MANIFEST.name


def test_the_account_is_reproducible_from_the_seed() -> None:
    a, b, c = AlipaySandbox(seed=5), AlipaySandbox(seed=5), AlipaySandbox(seed=6)
    assert a.account().shop_id == b.account().shop_id != c.account().shop_id
    assert a.account().app_key == b.account().app_key
    spec = a.account()
    assert spec.shop_id.startswith("2088") and len(spec.shop_id) == 16
    assert spec.secrets["app_private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert spec.secrets["alipay_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "BEGIN" not in repr(spec)  # secrets stay out of repr


def test_requests_are_signed_as_alipay_specifies(
    sandbox: AlipaySandbox, channel: AlipayChannel, tmp_path: Path
) -> None:
    """The connector's request signature, checked by hand: every parameter but ``sign``
    (``sign_type`` included), non-empty, sorted, ``k=v&…`` in UTF-8, SHA256withRSA."""
    channel.create_payment(
        PaymentRequest(
            out_trade_no="Q-1", amount=Decimal("9.90"), subject="签名 a&b=c", method="precreate"
        )
    )
    params = dict(sandbox.calls[-1].params)
    sign = params.pop("sign")
    assert "sign_type" in params and "biz_content" in params
    content = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k] != "")
    public = _merchant_public_pem(tmp_path, sandbox.account().secrets["app_private_key"])
    assert _openssl_verify(tmp_path, public, content.encode("utf-8"), sign)
    assert not _openssl_verify(tmp_path, public, content.replace("9.90", "9.91").encode(), sign)


def test_responses_are_signed_over_the_response_object_text(
    sandbox: AlipaySandbox, tmp_path: Path
) -> None:
    """Raw gateway answer, cut the way Alipay's SDKs cut it, verified with openssl."""
    fields = _signed_raw(sandbox, "alipay.trade.query", {"out_trade_no": "NONE"})
    answer = httpx.post(f"{sandbox.base_url}/gateway.do", data=fields)
    text = answer.content.decode("utf-8")
    assert text.startswith('{"alipay_trade_query_response":{')
    start = text.index(":") + 1
    end = text.rindex(',"sign":"')
    node = json.loads(text[start:end])
    assert node["code"] == "40004" and node["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert "交易不存在" in text[start:end]  # UTF-8 as is, not \u escapes
    sign = json.loads(text)["sign"]
    assert _openssl_verify(
        tmp_path, sandbox.alipay_public_pem, text[start:end].encode("utf-8"), sign
    )


def _signed_raw(
    sandbox: AlipaySandbox, api: str, biz: dict[str, Any], **changes: str
) -> dict[str, str]:
    """A request signed the way the connector does, via the connector (tests of the
    gateway's checks then change one thing at a time)."""
    from erp_core.channels import ChannelContext

    spec = sandbox.account()
    channel = AlipayChannel(
        ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=spec.shop_id,
            app_key=spec.app_key,
            secrets=spec.secrets,
        )
    )
    fields = channel._signed({"method": api, "biz_content": json.dumps(biz, ensure_ascii=False)})
    fields.update(changes)
    return fields


@pytest.mark.parametrize(
    ("changes", "code", "sub_code", "key"),
    [
        ({"sign": ""}, "40001", "isv.missing-signature", "alipay_trade_query_response"),
        (
            {"app_id": "2021000000000009"},
            "40002",
            "isv.invalid-app-id",
            "alipay_trade_query_response",
        ),
        ({"method": "alipay.trade.nothing"}, "40002", "isv.invalid-method", "error_response"),
        (
            {"sign_type": "RSA"},
            "40002",
            "isv.invalid-signature-type",
            "alipay_trade_query_response",
        ),
        (
            {"timestamp": "2020-01-01 00:00:00"},
            "40002",
            "isv.invalid-timestamp",
            "alipay_trade_query_response",
        ),
        (
            {"timestamp": "yesterday"},
            "40002",
            "isv.invalid-timestamp",
            "alipay_trade_query_response",
        ),
        (
            {"biz_content": '{"out_trade_no":"OTHER"}'},
            "40002",
            "isv.invalid-signature",
            "alipay_trade_query_response",
        ),
        ({"charset": "ebcdic"}, "40002", "isv.invalid-charset", "error_response"),
    ],
)
def test_the_gateway_refuses_bad_requests(
    sandbox: AlipaySandbox, changes: dict[str, str], code: str, sub_code: str, key: str
) -> None:
    fields = _signed_raw(sandbox, "alipay.trade.query", {"out_trade_no": "NONE"}, **changes)
    answer = httpx.post(f"{sandbox.base_url}/gateway.do", data=fields)
    assert answer.status_code == 200
    data = answer.json()
    assert data[key]["code"] == code and data[key]["sub_code"] == sub_code
    assert "sign" not in data  # gateway-level refusals are not signed
    assert sandbox.errors() == [sub_code]


def test_the_gateway_checks_biz_content(sandbox: AlipaySandbox) -> None:
    def ask(biz: str) -> Any:
        fields = _signed_raw(sandbox, "alipay.trade.precreate", {})
        fields["biz_content"] = biz
        from erp_core.channels import ChannelContext

        spec = sandbox.account()
        ch = AlipayChannel(
            ChannelContext(
                account_id=1,
                tenant_id=1,
                shop_id=spec.shop_id,
                app_key=spec.app_key,
                secrets=spec.secrets,
            )
        )
        fields = ch._signed({k: v for k, v in fields.items() if k not in ("sign", "timestamp")})
        return httpx.post(f"{sandbox.base_url}/gateway.do", data=fields).json()[
            "alipay_trade_precreate_response"
        ]

    assert ask("not json")["sub_code"] == "isv.invalid-parameter"
    assert ask('{"out_trade_no":"Z","subject":"s"}')["sub_code"] == "isv.invalid-parameter"
    assert (
        ask('{"out_trade_no":"Z","subject":"s","total_amount":"1.001"}')["sub_code"]
        == "isv.invalid-parameter"
    )
    assert (
        ask('{"out_trade_no":"Z","subject":"s","total_amount":"-1"}')["sub_code"]
        == "isv.invalid-parameter"
    )
    ok = ask('{"out_trade_no":"Z","subject":"s","total_amount":12.5}')  # a JSON number is fine
    assert ok["code"] == "10000" and ok["qr_code"]


def test_the_sandbox_is_safe_to_call_from_threads(sandbox: AlipaySandbox, new_channel: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ch = new_channel()
    ch.create_payment(
        PaymentRequest(out_trade_no="TH-1", amount=Decimal(100), subject="并发", method="precreate")
    )
    sandbox.pay("TH-1")

    def refund(i: int) -> Decimal:
        r = ch.refund(
            RefundRequest(out_trade_no="TH-1", out_request_no=f"RF-{i % 5}", amount=Decimal(10))
        )
        return r.amount

    with ThreadPoolExecutor(max_workers=8) as pool:
        amounts = list(pool.map(refund, range(20)))
    assert amounts == [Decimal("10.00")] * 20
    assert sandbox.refunded("TH-1") == Decimal("50.00")  # five request numbers, five refunds


def test_secrets_never_reach_logs_or_errors(
    sandbox: AlipaySandbox, new_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = sandbox.account()
    secret_lines = [
        line
        for line in spec.secrets["app_private_key"].splitlines()
        if len(line) >= 16 and "-----" not in line
    ]
    errors: list[str] = []
    ch = new_channel()
    ch.create_payment(
        PaymentRequest(out_trade_no="L-1", amount=Decimal(10), subject="日志", method="precreate")
    )
    push = sandbox.pay("L-1")
    ch.parse_notification(push.headers, push.body, {})
    with pytest.raises(InvalidMessage) as bad_push:
        ch.parse_notification(push.headers, sandbox.tamper(push).body, {})
    errors.append(str(bad_push.value))
    ch.refund(RefundRequest(out_trade_no="L-1", out_request_no="RF-1", amount=Decimal(1)))
    sandbox.throttle(1)
    ch.query_payment("L-1")
    lines = spec.secrets["app_private_key"].splitlines()
    mangled = "\n".join(lines[:6] + lines[-1:])  # truncated: unreadable
    with pytest.raises(ChannelAuthError) as unreadable:
        new_channel(ctx={"secrets": {**spec.secrets, "app_private_key": mangled}}).query_payment(
            "L-1"
        )
    errors.append(str(unreadable.value))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ChannelAuthError) as refused:
        new_channel(
            ctx={"secrets": {**spec.secrets, "app_private_key": other.decode()}}
        ).query_payment("L-1")
    errors.append(str(refused.value))
    assert caplog.records
    logged = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    for line in secret_lines:
        assert line not in logged
        assert all(line not in e for e in errors)
    assert "sign=***" in logged  # the request signature is masked too
