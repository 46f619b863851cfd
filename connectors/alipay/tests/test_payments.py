"""The connector against the sandbox over real HTTP: payments, refunds, closing, errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from erp_connector_alipay.channel import AlipayChannel, classify_code, payment_status
from erp_connector_alipay.protocol import SHANGHAI
from erp_connector_alipay.sandbox import TRADE_STATUSES, AlipaySandbox

from erp_core.channels import (
    ChannelAuthError,
    ChannelError,
    ChannelRejected,
    ChannelThrottled,
    PaymentRequest,
    PaymentStatus,
    RefundRequest,
    RefundStatus,
)
from erp_core.channels.http import RetryPolicy, Verdict

SUBJECT = "测试商品 & 赠品=1件"


def _create(
    channel: AlipayChannel, no: str, amount: str = "100.00", method: str = "precreate"
) -> Any:
    return channel.create_payment(
        PaymentRequest(
            out_trade_no=no,
            amount=Decimal(amount),
            subject=SUBJECT,
            method=method,
            notify_url="https://erp.example.com/hooks/alipay/7",
        )
    )


def _paid(sandbox: AlipaySandbox, channel: AlipayChannel, no: str, amount: str = "100.00") -> None:
    _create(channel, no, amount)
    sandbox.pay(no)


# --- creating and paying ----------------------------------------------------------------------


def test_precreate_returns_the_qr_code_and_the_payment_is_pending(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    out = _create(channel, "P-1", "88.80")
    assert out["method"] == "precreate" and out["qr_code"].startswith("https://qr.alipay.com/")
    sent = sandbox.calls[-1]
    assert sent.api == "alipay.trade.precreate" and sent.error == ""
    biz = json.loads(sent.params["biz_content"])
    assert biz == {
        "out_trade_no": "P-1",
        "total_amount": "88.80",
        "subject": SUBJECT,
        "product_code": "FACE_TO_FACE_PAYMENT",
    }
    assert sent.params["notify_url"] == "https://erp.example.com/hooks/alipay/7"
    assert {k: sent.params[k] for k in ("format", "charset", "sign_type", "version")} == {
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "version": "1.0",
    }
    pending = channel.query_payment("P-1")
    assert pending.status is PaymentStatus.PENDING and pending.raw_status == "WAIT_BUYER_PAY"
    assert pending.amount == Decimal("88.80") and isinstance(pending.amount, Decimal)


def test_pay_then_query_gives_the_paid_payment(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _create(channel, "P-2", "12.34")
    at = datetime.now(SHANGHAI).replace(microsecond=0) - timedelta(minutes=3)
    sandbox.pay("P-2", at=at)
    paid = channel.query_payment("P-2")
    assert paid.status is PaymentStatus.SUCCEEDED and paid.raw_status == "TRADE_SUCCESS"
    assert paid.amount == Decimal("12.34") and paid.refunded == 0
    assert paid.trade_no and paid.paid_at == at


def test_creating_the_same_payment_again_is_the_same_trade(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    first = _create(channel, "P-3")
    assert _create(channel, "P-3") == first
    with pytest.raises(ChannelRejected) as info:
        _create(channel, "P-3", "99.00")  # same number, different amount
    assert info.value.code == "ACQ.CONTEXT_INCONSISTENT"
    sandbox.pay("P-3")
    with pytest.raises(ChannelRejected) as info:
        _create(channel, "P-3")
    assert info.value.code == "ACQ.TRADE_HAS_SUCCESS"


@pytest.mark.parametrize(
    ("method", "api", "product_code"),
    [
        ("page", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        ("wap", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
def test_page_and_wap_return_a_signed_form_the_browser_submits(
    sandbox: AlipaySandbox, channel: AlipayChannel, method: str, api: str, product_code: str
) -> None:
    before = len(sandbox.calls)
    out = _create(channel, f"W-{method}", "66.00", method)
    assert len(sandbox.calls) == before, "page/wap must not call the gateway"
    fields = json.loads(out["fields"])
    assert fields["method"] == api and fields["sign"]
    assert json.loads(fields["biz_content"])["product_code"] == product_code
    assert out["action"].endswith("/gateway.do?charset=utf-8")
    assert 'method="POST"' in out["form"] and 'name="biz_content"' in out["form"]
    assert "&amp;" in out["form"]  # the subject's "&" is escaped in the HTML
    # Until the browser submits the form, Alipay knows no such trade.
    with pytest.raises(ChannelRejected) as info:
        channel.query_payment(f"W-{method}")
    assert info.value.code == "ACQ.TRADE_NOT_EXIST"

    assert sandbox.submit(out) == 200
    assert sandbox.calls[-1].api == api and sandbox.calls[-1].error == ""
    assert channel.query_payment(f"W-{method}").status is PaymentStatus.PENDING
    # The GET form of the same request opens the same trade's cashier.
    assert httpx.get(out["url"]).status_code == 200
    sandbox.pay(f"W-{method}")
    assert channel.query_payment(f"W-{method}").status is PaymentStatus.SUCCEEDED


def test_a_form_changed_in_the_browser_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    out = _create(channel, "W-X", "66.00", "page")
    fields = json.loads(out["fields"])
    biz = json.loads(fields["biz_content"])
    biz["total_amount"] = "0.01"
    fields["biz_content"] = json.dumps(biz, ensure_ascii=False, separators=(",", ":"))
    answer = httpx.post(out["action"], data=fields)
    assert answer.status_code == 400 and "isv.invalid-signature" in answer.text
    assert sandbox.errors()[-1] == "isv.invalid-signature"


def test_unknown_method_and_sub_cent_amounts_are_refused_before_calling(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    before = len(sandbox.calls)
    with pytest.raises(ChannelRejected):
        _create(channel, "P-4", method="app")
    with pytest.raises(ChannelRejected):
        _create(channel, "P-4", amount="10.005")
    assert len(sandbox.calls) == before


# --- refunds ------------------------------------------------------------------------------------


def test_partial_and_full_refunds(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    _paid(sandbox, channel, "R-1")
    one = channel.refund(
        RefundRequest(out_trade_no="R-1", out_request_no="RF-1", amount=Decimal(30), reason="退货")
    )
    assert one.refund_id == "RF-1" and one.order_id == "R-1"
    assert one.amount == Decimal("30.00") and one.status is RefundStatus.REFUNDED
    assert one.reason == "退货" and one.created_at.tzinfo is not None
    assert sandbox.refunded("R-1") == Decimal("30.00")
    assert channel.query_payment("R-1").status is PaymentStatus.SUCCEEDED  # still TRADE_SUCCESS

    channel.refund(
        RefundRequest(out_trade_no="R-1", out_request_no="RF-2", amount=Decimal("70.00"))
    )
    assert sandbox.refunded("R-1") == Decimal("100.00")
    after = channel.query_payment("R-1")
    assert after.raw_status == "TRADE_CLOSED"
    assert after.status is PaymentStatus.REFUNDED and after.refunded == Decimal("100.00")


def test_a_refund_repeated_with_the_same_request_number_is_the_same_refund(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _paid(sandbox, channel, "R-2")
    req = RefundRequest(out_trade_no="R-2", out_request_no="RF-A", amount=Decimal("25.50"))
    first = channel.refund(req)
    start = len(sandbox.calls)
    again = channel.refund(req)
    assert again == first
    assert sandbox.refunded("R-2") == Decimal("25.50")
    # Alipay answered fund_change=N; the connector read the refund back instead of guessing.
    assert [c.api for c in sandbox.calls[start:]] == [
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
    ]
    with pytest.raises(ChannelRejected) as info:
        channel.refund(RefundRequest(out_trade_no="R-2", out_request_no="RF-A", amount=Decimal(1)))
    assert info.value.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert sandbox.refunded("R-2") == Decimal("25.50")


def test_refunding_more_than_paid_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _paid(sandbox, channel, "R-3", "50.00")
    channel.refund(RefundRequest(out_trade_no="R-3", out_request_no="RF-1", amount=Decimal(40)))
    with pytest.raises(ChannelRejected) as info:
        channel.refund(RefundRequest(out_trade_no="R-3", out_request_no="RF-2", amount=Decimal(11)))
    assert info.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert sandbox.refunded("R-3") == Decimal("40.00")
    assert channel.query_payment("R-3").raw_status == "TRADE_SUCCESS"


def test_refund_query(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    _paid(sandbox, channel, "R-4")
    made = channel.refund(
        RefundRequest(out_trade_no="R-4", out_request_no="RF-Q", amount=Decimal(5))
    )
    assert channel.query_refund("R-4", "RF-Q") == made
    assert json.loads(sandbox.calls[-1].params["biz_content"])["query_options"] == [
        "gmt_refund_pay"
    ]
    with pytest.raises(ChannelRejected) as info:
        channel.query_refund("R-4", "RF-NONE")
    assert info.value.code == "REFUND_NOT_EXIST"
    with pytest.raises(ChannelRejected) as info:
        channel.query_refund("R-NONE", "RF-Q")
    assert info.value.code == "ACQ.TRADE_NOT_EXIST"


def test_refunding_an_unpaid_payment_is_refused(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _create(channel, "R-5")
    with pytest.raises(ChannelRejected) as info:
        channel.refund(RefundRequest(out_trade_no="R-5", out_request_no="RF-1", amount=Decimal(1)))
    assert info.value.code == "ACQ.TRADE_STATUS_ERROR"
    assert sandbox.refunded("R-5") == 0


# --- closing ------------------------------------------------------------------------------------


def test_close_an_unpaid_payment(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    _create(channel, "C-1")
    channel.close_payment("C-1")
    closed = channel.query_payment("C-1")
    assert closed.status is PaymentStatus.CLOSED and closed.refunded == 0
    channel.close_payment("C-1")  # again: harmless
    with pytest.raises(ValueError):
        sandbox.pay("C-1")
    with pytest.raises(ChannelRejected) as info:
        channel.close_payment("C-NONE")
    assert info.value.code == "ACQ.TRADE_NOT_EXIST"
    _paid(sandbox, channel, "C-2")
    with pytest.raises(ChannelRejected) as info:
        channel.close_payment("C-2")
    assert info.value.code == "ACQ.TRADE_STATUS_ERROR"


# --- signatures -----------------------------------------------------------------------------------


def test_a_request_signed_with_another_key_is_refused_as_auth(
    sandbox: AlipaySandbox, new_channel: Any
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    secrets = dict(sandbox.account().secrets, app_private_key=pem)
    bad = new_channel(ctx={"secrets": secrets})
    with pytest.raises(ChannelAuthError):
        bad.query_payment("NOPE")
    assert sandbox.errors() == ["isv.invalid-signature"]


class _Rewrite(httpx.BaseTransport):
    """A real HTTP transport that rewrites request form bodies or response bodies."""

    def __init__(self, request: Any = None, response: Any = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.on_request = request
        self.on_response = response

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.on_request is not None:
            body = self.on_request(request.read())
            headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
            request = httpx.Request(request.method, request.url, headers=headers, content=body)
        answer = self.inner.handle_request(request)
        content = answer.read()
        if self.on_response is not None:
            content = self.on_response(content)
        return httpx.Response(
            answer.status_code,
            headers={"content-type": answer.headers.get("content-type", "")},
            content=content,
        )


def test_a_request_changed_after_signing_is_refused_as_auth(
    sandbox: AlipaySandbox, new_channel: Any
) -> None:
    def swap(body: bytes) -> bytes:
        return body.replace(b"T-1", b"T-2")

    bad = new_channel(transport=_Rewrite(request=swap))
    with pytest.raises(ChannelAuthError) as info:
        bad.query_payment("T-1")
    assert "isv.invalid-signature" in str(info.value)
    assert sandbox.errors() == ["isv.invalid-signature"]


def test_a_tampered_response_is_refused(sandbox: AlipaySandbox, new_channel: Any) -> None:
    honest = new_channel()
    _paid(sandbox, honest, "T-3", "10.00")

    def raise_amount(body: bytes) -> bytes:
        return body.replace(b'"total_amount":"10.00"', b'"total_amount":"99.00"')

    with pytest.raises(ChannelAuthError) as info:
        new_channel(transport=_Rewrite(response=raise_amount)).query_payment("T-3")
    assert getattr(info.value, "code", "") == "invalid-response-signature"

    def drop_sign(body: bytes) -> bytes:
        head, _, _ = body.rpartition(b',"sign"')
        return head + b"}"

    with pytest.raises(ChannelAuthError):
        new_channel(transport=_Rewrite(response=drop_sign)).query_payment("T-3")


def test_the_response_signature_covers_the_exact_text_sent(
    sandbox: AlipaySandbox, new_channel: Any
) -> None:
    """Whitespace between the top-level members is not signed and may change; whitespace
    inside the signed object is, so a client that re-serialized would get both wrong."""
    honest = new_channel()
    _paid(sandbox, honest, "T-4", "10.00")

    def outer_spaces(body: bytes) -> bytes:
        return b'{ \n"' + body[2:].replace(b'_response":', b'_response" :  ', 1).replace(
            b',"sign"', b' ,\n "sign"'
        )

    assert new_channel(transport=_Rewrite(response=outer_spaces)).query_payment("T-4").amount == 10

    def inner_space(body: bytes) -> bytes:
        return body.replace(b',"trade_status"', b', "trade_status"', 1)

    with pytest.raises(ChannelAuthError):
        new_channel(transport=_Rewrite(response=inner_space)).query_payment("T-4")


def test_wrong_app_id_and_stale_timestamp(sandbox: AlipaySandbox, new_channel: Any) -> None:
    with pytest.raises(ChannelAuthError):
        new_channel(ctx={"app_key": "2021000000000000"}).query_payment("X")
    stale = new_channel(now=lambda: datetime.now(SHANGHAI) - timedelta(hours=1))
    with pytest.raises(ChannelRejected):
        stale.query_payment("X")
    assert sandbox.errors() == ["isv.invalid-app-id", "isv.invalid-timestamp"]


def test_missing_or_unreadable_secrets_are_auth_errors(
    sandbox: AlipaySandbox, new_channel: Any
) -> None:
    with pytest.raises(ChannelAuthError):
        new_channel(ctx={"secrets": {}}).query_payment("X")
    garbage = {
        "app_private_key": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
    }
    with pytest.raises(ChannelAuthError) as info:
        new_channel(ctx={"secrets": {**sandbox.account().secrets, **garbage}}).query_payment("X")
    assert "AAAA" not in str(info.value)
    assert sandbox.calls == []


# --- throttling and transient errors -------------------------------------------------------------


def test_throttling_backs_off_then_succeeds(
    sandbox: AlipaySandbox, channel: AlipayChannel, clock: Any
) -> None:
    _paid(sandbox, channel, "B-1")
    sandbox.throttle(2)
    assert channel.query_payment("B-1").status is PaymentStatus.SUCCEEDED
    assert sandbox.errors() == ["isv.app-call-limited"] * 2
    # Each throttle paused the account for at least the policy's throttle pause.
    assert sum(clock.sleeps) >= 2 * RetryPolicy().throttle_pause


def test_throttling_that_persists_raises_channel_throttled(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    sandbox.throttle(10)
    with pytest.raises(ChannelThrottled):
        channel.query_payment("B-2")
    assert sandbox.errors() == ["isv.app-call-limited"] * 4  # the policy's max attempts


def test_system_errors_are_retried_and_business_errors_are_not(
    sandbox: AlipaySandbox, channel: AlipayChannel
) -> None:
    _paid(sandbox, channel, "B-3")
    sandbox.fail(1, code="40004", sub_code="ACQ.SYSTEM_ERROR")
    sandbox.fail(1, code="20000", sub_code="isp.unknow-error")
    assert channel.query_payment("B-3").status is PaymentStatus.SUCCEEDED
    assert sandbox.errors() == ["ACQ.SYSTEM_ERROR", "isp.unknow-error"]
    sandbox.fail(1, code="40004", sub_code="ACQ.SELLER_BALANCE_NOT_ENOUGH")
    with pytest.raises(ChannelRejected) as info:
        channel.refund(RefundRequest(out_trade_no="B-3", out_request_no="RF", amount=Decimal(1)))
    assert info.value.code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    assert sandbox.refunded("B-3") == 0
    sandbox.fail(1, code="20001", sub_code="aop.invalid-auth-token")
    with pytest.raises(ChannelAuthError):
        channel.query_payment("B-3")


@pytest.mark.parametrize(
    ("code", "sub_code", "verdict"),
    [
        ("10000", "", Verdict.OK),
        ("20000", "isp.unknow-error", Verdict.TRANSIENT),
        ("20001", "aop.invalid-auth-token", Verdict.AUTH),
        ("40001", "isv.missing-signature", Verdict.ERROR),
        ("40002", "isv.invalid-signature", Verdict.AUTH),
        ("40002", "isv.invalid-app-id", Verdict.AUTH),
        ("40002", "isv.invalid-parameter", Verdict.ERROR),
        ("40003", "isv.missing-signature-config", Verdict.AUTH),
        ("40004", "ACQ.TRADE_NOT_EXIST", Verdict.ERROR),
        ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH", Verdict.ERROR),
        ("40004", "ACQ.SYSTEM_ERROR", Verdict.TRANSIENT),
        ("40004", "aop.ACQ.SYSTEM_ERROR", Verdict.TRANSIENT),
        ("40004", "ACQ.REQUEST_RATE_LIMIT", Verdict.THROTTLED),
        ("40005", "isv.app-call-limited", Verdict.THROTTLED),
        ("40005", "isv.method-call-limited", Verdict.THROTTLED),
        ("40006", "isv.insufficient-isv-permissions", Verdict.ERROR),
    ],
)
def test_alipay_codes_are_classified(code: str, sub_code: str, verdict: Verdict) -> None:
    assert classify_code(code, sub_code) is verdict


def test_every_trade_status_maps_to_a_known_payment_status() -> None:
    amount = Decimal("10.00")
    for status in TRADE_STATUSES:
        mapped, _ = payment_status(status, amount, None, paid=True)
        assert mapped is not PaymentStatus.UNKNOWN
    assert payment_status("TRADE_SUCCESS", amount, Decimal("4.00"), True) == (
        PaymentStatus.PARTIALLY_REFUNDED,
        Decimal("4.00"),
    )
    assert payment_status("TRADE_CLOSED", amount, None, False)[0] is PaymentStatus.CLOSED
    assert payment_status("TRADE_CLOSED", amount, None, True) == (PaymentStatus.REFUNDED, amount)
    assert payment_status("SOMETHING_NEW", amount, None, True)[0] is PaymentStatus.UNKNOWN


def test_channel_errors_are_channel_errors(sandbox: AlipaySandbox, channel: AlipayChannel) -> None:
    with pytest.raises(ChannelError):
        channel.query_payment("NO-SUCH")
