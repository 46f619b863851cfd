"""Asynchronous notifications: verification, charsets, the payment they carry, delivery.

Besides the sandbox's notifications, the connector must accept one built by an independent
implementation of Alipay's rules: :class:`OpensslAlipay` below builds the sign string by hand
and signs it with the ``openssl`` command line, sharing no code with the connector or the
kernel.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from erp_connector_alipay.channel import AlipayChannel
from erp_connector_alipay.protocol import SHANGHAI, encode_form
from erp_connector_alipay.sandbox import AlipaySandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from erp_core.channels import (
    ChannelContext,
    InvalidMessage,
    Payment,
    PaymentRequest,
    PaymentStatus,
    RefundRequest,
)
from erp_core.testing.sandbox import PushRequest, serve

APP_ID = "2021004100000001"
SELLER_ID = "2088102100000002"


class OpensslAlipay:
    """Alipay's notification signing, written from the protocol description only.

    Sign content: every field but ``sign`` and ``sign_type``, sorted by name, ``name=value``
    joined with ``&``, values as they are (not URL-encoded), empty values kept; the bytes are
    the content in the notification's charset; SHA256withRSA; Base64.
    """

    def __init__(self, directory: Path) -> None:
        self.key = directory / "alipay_key.pem"
        self.pub = directory / "alipay_pub.pem"
        _openssl(
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            str(self.key),
        )
        _openssl("pkey", "-in", str(self.key), "-pubout", "-out", str(self.pub))
        self.public_pem = self.pub.read_text()

    def sign(self, fields: Mapping[str, str], charset: str) -> str:
        names = sorted(n for n in fields if n not in ("sign", "sign_type"))
        content = "&".join(n + "=" + fields[n] for n in names)
        raw = _openssl("dgst", "-sha256", "-sign", str(self.key), data=content.encode(charset))
        return base64.b64encode(raw).decode("ascii")

    def body(self, fields: Mapping[str, str], charset: str) -> bytes:
        signed = {**fields, "sign_type": "RSA2"}
        signed["sign"] = self.sign(signed, charset)
        pairs = (
            quote_plus(n, encoding=charset) + "=" + quote_plus(v, encoding=charset)
            for n, v in signed.items()
        )
        return "&".join(pairs).encode("ascii")


def _openssl(*args: str, data: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=data, capture_output=True, check=True)
    return done.stdout


def _fields(**changes: str) -> dict[str, str]:
    fields = {
        "notify_time": "2026-11-30 10:00:05",
        "notify_type": "trade_status_sync",
        "notify_id": "ac05099524730693a8b330c5ecf72da9786",
        "app_id": APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "2026113022001400000000000001",
        "out_trade_no": "N-1",
        "buyer_id": "2088102122524333",
        "seller_id": SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "188.80",
        "receipt_amount": "188.80",
        "subject": "中文标题 a&b=c 100%+ 加号",
        "body": "",  # empty values are signed too
        "gmt_create": "2026-11-30 09:59:50",
        "gmt_payment": "2026-11-30 10:00:04",
        "fund_bill_list": '[{"amount":"188.80","fundChannel":"ALIPAYACCOUNT"}]',
    }
    fields.update(changes)
    return fields


@pytest.fixture(scope="module")
def independent(tmp_path_factory: pytest.TempPathFactory) -> OpensslAlipay:
    return OpensslAlipay(tmp_path_factory.mktemp("openssl"))


@pytest.fixture
def verifier(independent: OpensslAlipay) -> AlipayChannel:
    """A channel that trusts the independent implementation's key (and has no private key:
    verifying notifications needs none)."""
    return AlipayChannel(
        ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=SELLER_ID,
            app_key=APP_ID,
            secrets={"alipay_public_key": independent.public_pem},
        )
    )


FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


# --- the independent implementation ------------------------------------------------------------


@pytest.mark.parametrize("charset", ["utf-8", "gbk"])
def test_a_notification_signed_independently_is_accepted(
    verifier: AlipayChannel, independent: OpensslAlipay, charset: str
) -> None:
    fields = _fields(charset=charset)
    body = independent.body(fields, charset)
    if charset == "gbk":
        assert "中".encode("gbk") == b"\xd6\xd0" and b"%D6%D0" in body
    msg = verifier.parse_notification(
        {"content-type": "application/x-www-form-urlencoded"}, body, {}
    )
    assert msg.message_id == fields["notify_id"] and msg.kind == "payment"
    assert msg.reply == "success" and msg.reply_status == 200
    assert msg.reply_content_type == "text/plain"
    assert msg.payload["subject"] == "中文标题 a&b=c 100%+ 加号"
    payment = msg.subject
    assert isinstance(payment, Payment) and payment.out_trade_no == "N-1" == msg.subject_id
    assert payment.amount == Decimal("188.80") and payment.status is PaymentStatus.SUCCEEDED
    assert payment.trade_no == fields["trade_no"]
    assert payment.paid_at == datetime(2026, 11, 30, 10, 0, 4, tzinfo=SHANGHAI)
    assert payment.created_at == datetime(2026, 11, 30, 9, 59, 50, tzinfo=SHANGHAI)
    assert msg.occurred_at == payment.paid_at
    # Deterministic: the inbox parses stored messages again on replay.
    assert verifier.parse_notification({}, body, {}) == msg


def test_independent_signature_over_the_wrong_charset_is_refused(
    verifier: AlipayChannel, independent: OpensslAlipay
) -> None:
    fields = _fields(charset="gbk")
    signed = {**fields, "sign_type": "RSA2"}
    signed["sign"] = independent.sign(signed, "utf-8")  # signed over UTF-8, declared GBK
    body = encode_form(signed, "gbk")
    with pytest.raises(InvalidMessage):
        verifier.parse_notification({}, body, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("total_amount", "1888.00"),
        ("trade_status", "TRADE_FINISHED"),
        ("subject", "中文标题 a&b=c 100%+ 加号 "),
        ("body", "x"),
    ],
)
def test_a_field_changed_after_signing_is_refused(
    verifier: AlipayChannel, independent: OpensslAlipay, name: str, value: str
) -> None:
    fields = _fields()
    signed = {**fields, "sign_type": "RSA2"}
    signed["sign"] = independent.sign(signed, "utf-8")
    signed[name] = value
    with pytest.raises(InvalidMessage):
        verifier.parse_notification(FORM, encode_form(signed), {})


def test_notifications_the_account_must_not_accept(
    verifier: AlipayChannel, independent: OpensslAlipay
) -> None:
    def parse(body: bytes) -> Any:
        return verifier.parse_notification(FORM, body, {})

    with pytest.raises(InvalidMessage, match="app_id"):
        parse(independent.body(_fields(app_id="2021009999999999"), "utf-8"))
    with pytest.raises(InvalidMessage, match="seller_id"):
        parse(independent.body(_fields(seller_id="2088000000000009"), "utf-8"))
    good = independent.body(_fields(), "utf-8")
    with pytest.raises(InvalidMessage):
        parse(good + b"&total_amount=1.00")  # a field twice: which one was signed?
    with pytest.raises(InvalidMessage):
        parse(b"&".join(p for p in good.split(b"&") if not p.startswith(b"sign=")))
    with pytest.raises(InvalidMessage):
        parse(good.replace(b"sign_type=RSA2", b"sign_type=RSA"))
    with pytest.raises(InvalidMessage):
        parse(good.replace(b"charset=utf-8", b"charset=latin-9"))
    with pytest.raises(InvalidMessage):
        parse(b"\xff\xfe not a form")
    with pytest.raises(InvalidMessage):
        parse(independent.body(_fields(notify_id=""), "utf-8"))
    with pytest.raises(InvalidMessage):
        parse(independent.body(_fields(total_amount="12.3.4"), "utf-8"))
    keyless = AlipayChannel(ChannelContext(account_id=1, tenant_id=1, shop_id=SELLER_ID))
    with pytest.raises(InvalidMessage):
        keyless.parse_notification(FORM, good, {})


def test_refund_and_close_notifications(
    verifier: AlipayChannel, independent: OpensslAlipay
) -> None:
    partial = independent.body(
        _fields(refund_fee="50.00", gmt_refund="2026-11-30 11:00:00.123", out_biz_no="RF-1"),
        "utf-8",
    )
    msg = verifier.parse_notification(FORM, partial, {})
    assert msg.subject is not None
    assert msg.subject.status is PaymentStatus.PARTIALLY_REFUNDED
    assert msg.subject.refunded == Decimal("50.00")
    assert msg.occurred_at == datetime(2026, 11, 30, 11, 0, 0, 123000, tzinfo=SHANGHAI)
    full = independent.body(
        _fields(
            trade_status="TRADE_CLOSED",
            refund_fee="188.80",
            gmt_refund="2026-11-30 12:00:00.000",
            gmt_close="2026-11-30 12:00:00",
        ),
        "utf-8",
    )
    refunded = verifier.parse_notification(FORM, full, {}).subject
    assert refunded is not None and refunded.status is PaymentStatus.REFUNDED
    unpaid = {k: v for k, v in _fields(trade_status="TRADE_CLOSED").items() if k != "gmt_payment"}
    closed = verifier.parse_notification(FORM, independent.body(unpaid, "utf-8"), {}).subject
    assert closed is not None and closed.status is PaymentStatus.CLOSED


# --- the sandbox's notifications -------------------------------------------------------------


def _created(channel: AlipayChannel, no: str, amount: str = "20.00") -> None:
    channel.create_payment(
        PaymentRequest(
            out_trade_no=no, amount=Decimal(amount), subject="中文 & 赠品=1", method="precreate"
        )
    )


def test_the_sandbox_notification_of_a_payment(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _created(channel, "S-1")
    push = sandbox.pay("S-1")
    assert push.headers["content-type"].endswith("charset=utf-8")
    msg = channel.parse_notification(push.headers, push.body, push.query)
    assert msg.message_id == push.message_id
    assert msg.payload["subject"] == "中文 & 赠品=1"
    assert "&" in msg.payload["body"] and "=" in msg.payload["body"]
    assert msg.subject is not None and msg.subject.status is PaymentStatus.SUCCEEDED


def test_the_sandbox_notification_in_gbk(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    _created(channel, "S-2")
    sandbox.pay("S-2")
    push = sandbox.notification("S-2", status="TRADE_SUCCESS", charset="gbk")
    assert "中".encode("gbk").hex().upper() in push.body.decode().replace("%", "")
    msg = channel.parse_notification(push.headers, push.body, {})
    assert msg.payload["subject"] == "中文 & 赠品=1" and msg.payload["charset"] == "gbk"


def test_a_tampered_sandbox_notification_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _created(channel, "S-3")
    push = sandbox.pay("S-3")
    bad = sandbox.tamper(push)
    assert bad.body != push.body
    with pytest.raises(InvalidMessage):
        channel.parse_notification(bad.headers, bad.body, {})


def test_out_of_order_notifications_carry_their_event_times(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _created(channel, "S-4", "100.00")
    created = sandbox.notification("S-4", status=sandbox.pending_status)
    later = datetime.now(SHANGHAI).replace(microsecond=0) + timedelta(minutes=5)
    paid = sandbox.pay("S-4", at=later)
    first = channel.parse_notification(created.headers, created.body, {})
    second = channel.parse_notification(paid.headers, paid.body, {})
    assert first.subject is not None and first.subject.status is PaymentStatus.PENDING
    assert first.occurred_at is not None and second.occurred_at == later
    assert first.occurred_at < second.occurred_at
    assert first.message_id != second.message_id
    channel.refund(RefundRequest(out_trade_no="S-4", out_request_no="RF-1", amount=Decimal(40)))
    refund_note = sandbox.notification("S-4", status="TRADE_SUCCESS")
    partly = channel.parse_notification(refund_note.headers, refund_note.body, {}).subject
    assert partly is not None and partly.status is PaymentStatus.PARTIALLY_REFUNDED
    assert partly.refunded == Decimal("40.00")


@pytest.fixture
def hook(sandbox: AlipaySandbox) -> Iterator[tuple[str, list[int]]]:
    """An ERP endpoint that fails the first delivery, then verifies like the inbox."""
    channel = AlipayChannel(
        ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=sandbox.account().shop_id,
            app_key=sandbox.account().app_key,
            secrets=dict(sandbox.account().secrets),
        )
    )
    seen: list[int] = []

    async def receive(request: Request) -> PlainTextResponse:
        seen.append(len(seen))
        if len(seen) == 1:
            return PlainTextResponse("busy", status_code=503)
        try:
            msg = channel.parse_notification(dict(request.headers), await request.body(), {})
        except InvalidMessage:
            return PlainTextResponse("fail", status_code=400)
        return PlainTextResponse(msg.reply, status_code=msg.reply_status)

    app = Starlette(routes=[Route("/hooks/alipay/1", receive, methods=["POST"])])
    with serve(app) as url:
        yield f"{url}/hooks/alipay/1", seen


def test_deliver_retries_until_success(
    sandbox: AlipaySandbox, channel: AlipayChannel, hook: tuple[str, list[int]]
) -> None:
    url, seen = hook
    _created(channel, "S-5")
    assert sandbox.deliver(url, sandbox.pay("S-5"), delay=0.01)
    assert len(seen) == 2
    assert not sandbox.deliver(
        url,
        sandbox.tamper(sandbox.notification("S-5", status="TRADE_SUCCESS")),
        attempts=2,
        delay=0.01,
    )


# --- properties ----------------------------------------------------------------------------------

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_GBK_TEXT = st.text(
    st.sampled_from("中文支付宝测试商品赠品规格＆＝&=+%# ?/\\\"'<>，。abcXYZ019 \t\n"), max_size=30
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=_TEXT, body=_TEXT, extra=_TEXT)
def test_any_unicode_values_round_trip_through_sign_and_verify(
    sandbox: AlipaySandbox, channel: AlipayChannel, subject: str, body: str, extra: str
) -> None:
    fields = _sandbox_fields(sandbox, subject=subject, body=body, passback_params=extra)
    fields["sign"] = sandbox.sign_notification(fields)
    msg = channel.parse_notification(FORM, encode_form(fields), {})
    assert (msg.payload["subject"], msg.payload["body"], msg.payload["passback_params"]) == (
        subject,
        body,
        extra,
    )
    changed = dict(fields, subject=subject + "x")
    with pytest.raises(InvalidMessage):
        channel.parse_notification(FORM, encode_form(changed), {})


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(subject=_GBK_TEXT, body=_GBK_TEXT)
def test_gbk_values_round_trip(
    sandbox: AlipaySandbox, channel: AlipayChannel, subject: str, body: str
) -> None:
    fields = _sandbox_fields(sandbox, subject=subject, body=body, charset="gbk")
    fields["sign"] = sandbox.sign_notification(fields, "gbk")
    msg = channel.parse_notification({}, encode_form(fields, "gbk"), {})
    assert (msg.payload["subject"], msg.payload["body"]) == (subject, body)


def _sandbox_fields(sandbox: AlipaySandbox, **changes: str) -> dict[str, str]:
    spec = sandbox.account()
    return {
        **_fields(app_id=spec.app_key, seller_id=spec.shop_id),
        "sign_type": "RSA2",
        **changes,
    }


def test_push_request_shape(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    _created(channel, "S-6")
    push = sandbox.pay("S-6")
    assert isinstance(push, PushRequest) and push.query == {}
    text = push.body.decode("ascii")  # percent-encoded: no raw non-ASCII on the wire
    for name in (
        "notify_id",
        "notify_time",
        "sign_type",
        "sign",
        "buyer_logon_id",
        "receipt_amount",
    ):
        assert f"{name}=" in text
    assert "notify_type=trade_status_sync" in text and "trade_status=TRADE_SUCCESS" in text
