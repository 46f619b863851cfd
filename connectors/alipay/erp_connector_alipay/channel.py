# ruff: noqa: RUF001 -- Alipay's bill columns use full-width parentheses
"""Alipay as a payment channel: the OpenAPI gateway with RSA2 signatures.

Requests carry the common parameters in the query string and ``biz_content`` in the form body
(as Alipay's own SDKs do), signed over all of them with the merchant's app private key. Every
response object is checked against the Alipay public key on the exact text Alipay sent, and
asynchronous notifications are verified in the charset they declare. Facts behind the choices
are in ``PROTOCOLS.md`` (§1, §2, §4).
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import re
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from erp_connector_alipay.protocol import (
    DEFAULT_GATEWAY,
    SHANGHAI,
    charset_codec,
    decode_form,
    form_charset,
    format_amount,
    format_time,
    parse_amount,
    parse_time,
    response_key,
    top_level_member,
)
from erp_core.channels import (
    BillKind,
    BillRow,
    ChannelAuthError,
    ChannelContext,
    ChannelError,
    ChannelRejected,
    Field,
    InboundMessage,
    InvalidMessage,
    Payment,
    PaymentChannel,
    PaymentRequest,
    PaymentStatus,
    Refund,
    RefundRequest,
    RefundStatus,
)
from erp_core.channels.http import (
    ChannelHTTPClient,
    ChannelRequest,
    Outcome,
    RateLimiter,
    RetryPolicy,
    Verdict,
    shared_limiter,
)
from erp_core.channels.signing import (
    alipay_sign_content,
    load_rsa_private_key,
    load_rsa_public_key,
    rsa2_sign,
    rsa2_verify,
)

__all__ = ["AlipayChannel", "classify_code", "payment_status", "verify_response"]

logger = logging.getLogger("erp_connector_alipay")

#: Payment method (``PaymentRequest.method``) -> (API, product_code).
METHODS: dict[str, tuple[str, str]] = {
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    "wap": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    "precreate": ("alipay.trade.precreate", "FACE_TO_FACE_PAYMENT"),
}

# Sub-codes that mean "slow down". Alipay's documented one is 40005 isv.app-call-limited /
# isv.method-call-limited; the patterns also catch the ACQ-style spellings some APIs use.
_THROTTLE_SUB = re.compile(r"call-limited|rate-limit|RATE_LIMIT|REQUEST_TOO_FAST", re.IGNORECASE)
# Sub-codes that mean "Alipay had a hiccup; the same request may well succeed".
_TRANSIENT_SUB = frozenset(
    {"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error", "isp.unknown-error"}
)
# Sub-codes that mean our credentials or signature are wrong (the merchant must act).
_AUTH_SUB = frozenset(
    {
        "isv.invalid-signature",
        "isv.invalid-signature-type",
        "isv.invalid-app-id",
        "isv.missing-signature-config",
        "isv.invalid-app-auth-token",
        "aop.invalid-auth-token",
        "aop.auth-token-time-out",
        "aop.invalid-app-auth-token",
    }
)

_CODE_TITLES = {
    "20000": "service unavailable",
    "20001": "insufficient authorization",
    "40001": "missing required arguments",
    "40002": "invalid arguments",
    "40003": "insufficient conditions",
    "40004": "business failed",
    "40005": "call limited",
    "40006": "insufficient permissions",
}


def classify_code(code: str, sub_code: str = "") -> Verdict:
    """What Alipay's ``code``/``sub_code`` mean for the caller.

    Only failures a retry can fix are transient; a business refusal (40004 ACQ.*) is final
    for that request, and a bad signature or app id is the merchant's to fix.
    """
    if code == "10000":
        return Verdict.OK
    if code == "40005" or _THROTTLE_SUB.search(sub_code):
        return Verdict.THROTTLED
    if code == "20000" or sub_code in _TRANSIENT_SUB:
        return Verdict.TRANSIENT
    if code in ("20001", "40003") or sub_code in _AUTH_SUB:
        return Verdict.AUTH
    return Verdict.ERROR


def verify_response(
    body: bytes, key: str, signature: str, public_key: rsa.RSAPublicKey, charset: str = "utf-8"
) -> bool:
    """Whether ``signature`` signs the object ``key`` of the raw response ``body``.

    The signed content is the object's text exactly as sent, so it is cut out of the body,
    never re-serialized from the parsed JSON.
    """
    codec = charset_codec(charset)
    try:
        text = body.decode(codec)
        member = top_level_member(text, key)
    except (UnicodeDecodeError, ValueError):
        return False
    if member is None:
        return False
    return rsa2_verify(member.encode(codec), signature, public_key)


def payment_status(
    trade_status: str, amount: Decimal, refunded: Decimal | None, paid: bool
) -> tuple[PaymentStatus, Decimal]:
    """The normalized status and the refunded total of an Alipay trade.

    Alipay has no "refunded" status: a partly refunded trade stays TRADE_SUCCESS (or
    TRADE_FINISHED) and a fully refunded one becomes TRADE_CLOSED. ``refunded`` is Alipay's
    ``refund_fee`` when the message carries it; without it, a closed trade that had been paid
    can only have been closed by refunding all of it.
    """
    if trade_status == "WAIT_BUYER_PAY":
        return PaymentStatus.PENDING, Decimal("0.00")
    if trade_status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        total = refunded or Decimal("0.00")
        if total <= 0:
            return PaymentStatus.SUCCEEDED, total
        if total >= amount:
            return PaymentStatus.REFUNDED, total
        return PaymentStatus.PARTIALLY_REFUNDED, total
    if trade_status == "TRADE_CLOSED":
        if refunded is not None and refunded > 0:
            return PaymentStatus.REFUNDED, refunded
        if refunded is None and paid:
            return PaymentStatus.REFUNDED, amount
        return PaymentStatus.CLOSED, Decimal("0.00")
    return PaymentStatus.UNKNOWN, refunded or Decimal("0.00")


class AlipayChannel(PaymentChannel):
    """One Alipay app (``context.app_key`` = app_id) of one merchant.

    ``shop_id`` is the merchant's Alipay user id (``2088…``, the notifications' ``seller_id``).
    The keyword arguments exist for tests and the demo: an httpx ``transport``, the rate
    ``limiter``, the ``retry`` policy, and the ``clock``/``sleep``/``now`` the HTTP client and
    the request timestamps use.
    """

    secret_fields: ClassVar[tuple[Field, ...]] = (
        Field(
            name="app_private_key",
            title="App private key (RSA2)",
            description="The app's RSA private key, PEM or the bare Base64 the key tool shows.",
        ),
        Field(
            name="alipay_public_key",
            title="Alipay public key",
            description="Alipay's public key for this app, from the open platform console.",
        ),
    )
    config_fields: ClassVar[tuple[Field, ...]] = (
        Field(
            name="base_url",
            title="Gateway URL",
            required=False,
            description=f"Default {DEFAULT_GATEWAY}; the sandbox's address for tests.",
        ),
        Field(
            name="notify_url",
            title="Notification URL",
            required=False,
            description="Where Alipay posts payment notifications (the ERP's /hooks/alipay/<id>).",
        ),
    )
    # Anything but "success" makes Alipay deliver again later; "fail" is the SDKs' convention.
    failure_status: ClassVar[int] = 400
    failure_body: ClassVar[str] = "fail"
    failure_content_type: ClassVar[str] = "text/plain"

    #: Requests per second per app when the process shares one limiter.
    qps: ClassVar[float] = 50.0

    def __init__(
        self,
        context: ChannelContext,
        *,
        transport: httpx.BaseTransport | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(context)
        self._transport = transport
        self._limiter = limiter
        self._retry = retry or RetryPolicy(max_attempts=4, deadline=30.0)
        self._clock = clock
        self._sleep = sleep
        self._now = now or (lambda: datetime.now(SHANGHAI))
        self._gateway = _gateway_url(context)
        self._http: ChannelHTTPClient | None = None
        self._download: ChannelHTTPClient | None = None
        self._private: rsa.RSAPrivateKey | None = None
        self._public: rsa.RSAPublicKey | None = None

    def close(self) -> None:
        """Release the HTTP connections (the kernel may simply drop the instance)."""
        for client in (self._http, self._download):
            if client is not None:
                client.close()
        self._http = self._download = None

    # --- payments ----------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> Mapping[str, str]:
        """``precreate``: ``{"qr_code": ...}`` from the gateway. ``page``/``wap``: nothing is
        sent; the payer's browser must submit the signed request itself, so this returns the
        auto-submitting ``form`` (HTML), the same request as a GET ``url``, its ``action``
        and its ``fields`` (JSON)."""
        try:
            api, product_code = METHODS[request.method]
        except KeyError:
            raise ChannelRejected(
                f"Alipay has no payment method {request.method!r} (page, wap or precreate)",
                code="unsupported-method",
            ) from None
        biz: dict[str, Any] = dict(request.extra)
        biz.update(
            out_trade_no=request.out_trade_no,
            total_amount=self._amount(request.amount),
            subject=request.subject,
            product_code=product_code,
        )
        common: dict[str, str] = {}
        notify_url = request.notify_url or str(self.context.config.get("notify_url") or "")
        if notify_url:
            common["notify_url"] = notify_url
        if request.method == "precreate":
            node = self._call(api, biz, common)
            qr_code = node.get("qr_code")
            if not isinstance(qr_code, str) or not qr_code:
                raise ChannelError("Alipay answered alipay.trade.precreate without a qr_code")
            return {
                "method": request.method,
                "out_trade_no": str(node.get("out_trade_no") or request.out_trade_no),
                "qr_code": qr_code,
            }
        if request.return_url:
            common["return_url"] = request.return_url
        params = self._signed({"method": api, **common, "biz_content": _biz(biz)})
        action = f"{self._gateway}?charset=utf-8"
        inputs = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>'
            for k, v in params.items()
        )
        form = (
            f'<form id="alipaysubmit" name="alipaysubmit" action="{html.escape(action)}"'
            f' method="POST">{inputs}<input type="submit" value="ok" style="display:none"/>'
            '</form><script>document.forms["alipaysubmit"].submit();</script>'
        )
        return {
            "method": request.method,
            "out_trade_no": request.out_trade_no,
            "action": action,
            "form": form,
            "url": f"{self._gateway}?{urlencode(params)}",
            "fields": json.dumps(params, ensure_ascii=False),
        }

    def query_payment(self, out_trade_no: str) -> Payment:
        node = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        return self._payment(node, paid_at_field="send_pay_date", fallback_no=out_trade_no)

    def close_payment(self, out_trade_no: str) -> None:
        """Close an unpaid payment (``alipay.trade.close``) so that it can no longer be paid."""
        self._call("alipay.trade.close", {"out_trade_no": out_trade_no})

    # --- refunds -----------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> Refund:
        """Alipay refunds once per ``out_request_no``: a repeat answers ``fund_change=N``
        without moving money, and then the refund already made is read back, so a repeat
        returns the same :class:`Refund` as the first call."""
        amount = self._amount(request.amount)
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": amount,
            "out_request_no": request.out_request_no,
        }
        if request.reason:
            biz["refund_reason"] = request.reason
        node = self._call("alipay.trade.refund", biz)
        if node.get("fund_change") != "Y":
            return self.query_refund(request.out_trade_no, request.out_request_no)
        when = self._time(node.get("gmt_refund_pay")) or self._now()
        return Refund(
            refund_id=request.out_request_no,
            order_id=request.out_trade_no,
            amount=parse_amount(amount),
            reason=request.reason,
            status=RefundStatus.REFUNDED,
            raw_status="REFUND_SUCCESS",
            created_at=when,
            modified_at=when,
        )

    def query_refund(self, out_trade_no: str, out_request_no: str) -> Refund:
        node = self._call(
            "alipay.trade.fastpay.refund.query",
            {
                "out_trade_no": out_trade_no,
                "out_request_no": out_request_no,
                "query_options": ["gmt_refund_pay"],
            },
        )
        amount_text = node.get("refund_amount")
        if not isinstance(amount_text, str) or not amount_text:
            # Alipay answers 10000 with no refund fields when it knows no such refund.
            raise ChannelRejected(
                f"Alipay has no refund {out_request_no} of payment {out_trade_no}",
                code="REFUND_NOT_EXIST",
            )
        raw_status = str(node.get("refund_status") or "")
        # An empty refund_status on a refund Alipay returns means it succeeded (the API's
        # older contract); anything else is still in progress.
        done = raw_status in ("", "REFUND_SUCCESS")
        when = self._time(node.get("gmt_refund_pay")) or self._now()
        return Refund(
            refund_id=str(node.get("out_request_no") or out_request_no),
            order_id=str(node.get("out_trade_no") or out_trade_no),
            amount=self._parse_money(amount_text, "refund_amount"),
            reason=str(node.get("refund_reason") or ""),
            status=RefundStatus.REFUNDED if done else RefundStatus.REQUESTED,
            raw_status=raw_status or "REFUND_SUCCESS",
            created_at=when,
            modified_at=when,
        )

    # --- notifications -----------------------------------------------------------------------

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        """Verify an asynchronous notification (RSA2 over every field but ``sign`` and
        ``sign_type``, in the body's ``charset``) and read the payment it describes."""
        try:
            charset = form_charset(body, _header(headers, "content-type"))
            codec = charset_codec(charset)
            params = decode_form(body, charset)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._reject(f"unreadable notification body ({type(exc).__name__})") from None
        signature = params.get("sign", "")
        if not signature:
            raise self._reject("notification without sign")
        if params.get("sign_type", "RSA2").upper() != "RSA2":
            raise self._reject("notification not signed with RSA2")
        try:
            public_key = self._alipay_public_key()
        except ChannelAuthError as exc:
            raise self._reject(str(exc)) from None
        content = alipay_sign_content(params, notification=True)
        if not rsa2_verify(content.encode(codec), signature, public_key):
            raise self._reject("notification signature does not verify")
        app_ids = {params.get("app_id", ""), params.get("auth_app_id", "")} - {""}
        if self.context.app_key and self.context.app_key not in app_ids:
            raise self._reject("notification for another app_id")
        seller_id = params.get("seller_id", "")
        shop = self.context.shop_id
        if seller_id and shop.startswith("2088") and seller_id != shop:
            raise self._reject("notification for another seller_id")
        notify_id = params.get("notify_id", "")
        if not notify_id or not params.get("out_trade_no"):
            raise self._reject("notification without notify_id or out_trade_no")
        try:
            payment = self._payment(params, paid_at_field="gmt_payment", fallback_no="")
            events = [
                parse_time(params[k])
                for k in ("gmt_create", "gmt_payment", "gmt_refund", "gmt_close")
                if params.get(k)
            ]
        except (ChannelError, ValueError) as exc:
            raise self._reject(f"notification with invalid fields ({exc})") from None
        payload = {k: v for k, v in params.items() if k != "sign"}
        return InboundMessage(
            message_id=notify_id,
            topic=params.get("notify_type", "trade_status_sync"),
            subject_id=payment.out_trade_no,
            kind="payment",
            subject=payment,
            # The latest event the message reports, so a late "created" message does not
            # overwrite a "paid" one (the notify_time of a redelivery would).
            occurred_at=max(events) if events else None,
            payload=payload,
            reply="success",
            reply_status=200,
            reply_content_type="text/plain",
        )

    # --- bills -------------------------------------------------------------------------------

    def download_bill(self, day: datetime) -> bytes:
        """The trade bill of ``day``'s date in Beijing time (a ZIP of GBK CSV files)."""
        local = day.astimezone(SHANGHAI) if day.tzinfo is not None else day
        node = self._call(
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "trade", "bill_date": local.date().isoformat()},
        )
        url = node.get("bill_download_url")
        if not isinstance(url, str) or not url:
            raise ChannelError("Alipay answered the bill query without bill_download_url")
        # The URL is valid for 30 seconds only: fetch it at once.
        return self._downloader().get(url).response.content

    def parse_bill(self, data: bytes) -> Sequence[BillRow]:
        """The rows of the detail file (``…_业务明细.csv``) of a downloaded trade bill."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = [m for m in archive.infolist() if m.filename.lower().endswith(".csv")]
            texts = [(_member_name(m), archive.read(m)) for m in members]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ChannelError(f"the bill is not a readable ZIP ({type(exc).__name__})") from None
        # The detail file by name, else by its header: the names are GBK without the ZIP's
        # UTF-8 flag, which some tools mangle.
        texts.sort(key=lambda item: ("业务明细" not in item[0] or "汇总" in item[0], item[0]))
        for _name, raw in texts:
            rows = _bill_rows(raw.decode("gb18030", errors="strict"))
            if rows is not None:
                return [self._bill_row(row) for row in rows]
        raise ChannelError("the bill has no detail file (业务明细)")

    # --- internals ---------------------------------------------------------------------------

    def _bill_row(self, row: dict[str, str]) -> BillRow:
        def cell(name: str) -> str:
            return row.get(name, "").strip()

        kind_text = cell("业务类型")
        kind = BillKind.REFUND if kind_text == "退款" else BillKind.PAYMENT
        try:
            fee_text = cell("服务费（元）")
            return BillRow(
                trade_no=cell("支付宝交易号"),
                out_trade_no=cell("商户订单号"),
                kind=kind,
                amount=abs(parse_amount(cell("订单金额（元）"))),
                # The bill shows the fee from the merchant's side (charged: negative, given
                # back on a refund: positive); BillRow counts what the provider kept.
                fee=-parse_amount(fee_text) if fee_text else Decimal("0.00"),
                out_request_no=cell("退款批次号/请求号"),
                happened_at=parse_time(cell("完成时间") or cell("创建时间")),
                raw=row,
            )
        except ValueError as exc:
            raise ChannelError(f"unreadable bill row ({exc})") from None

    def _payment(
        self, fields: Mapping[str, Any], *, paid_at_field: str, fallback_no: str
    ) -> Payment:
        trade_status = str(fields.get("trade_status") or "")
        amount = self._parse_money(fields.get("total_amount"), "total_amount")
        refund_text = fields.get("refund_fee")
        refunded = self._parse_money(refund_text, "refund_fee") if refund_text else None
        paid_at = self._time(fields.get(paid_at_field))
        status, total_refunded = payment_status(trade_status, amount, refunded, paid_at is not None)
        return Payment(
            out_trade_no=str(fields.get("out_trade_no") or fallback_no),
            trade_no=str(fields.get("trade_no") or ""),
            amount=amount,
            refunded=total_refunded,
            status=status,
            raw_status=trade_status,
            currency="CNY",
            created_at=self._time(fields.get("gmt_create")),
            paid_at=paid_at,
        )

    @staticmethod
    def _parse_money(value: Any, name: str) -> Decimal:
        if not isinstance(value, str):
            raise ChannelError(f"Alipay sent {name} that is not an amount")
        try:
            return parse_amount(value)
        except ValueError:
            raise ChannelError(f"Alipay sent {name} that is not an amount") from None

    @staticmethod
    def _time(value: Any) -> datetime | None:
        if not isinstance(value, str) or not value:
            return None
        try:
            return parse_time(value)
        except ValueError:
            raise ChannelError("Alipay sent a time it does not normally send") from None

    @staticmethod
    def _amount(amount: Decimal) -> str:
        try:
            return format_amount(amount)
        except ValueError as exc:
            raise ChannelRejected(str(exc), code="invalid-amount") from None

    def _reject(self, reason: str) -> InvalidMessage:
        logger.warning("Alipay notification rejected (shop %s): %s", self.context.shop_id, reason)
        return InvalidMessage(reason)

    def _call(
        self, api: str, biz: Mapping[str, Any], common: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        result = self._client().post(
            self._gateway, params={"method": api, **(common or {})}, data={"biz_content": _biz(biz)}
        )
        data = result.data
        node = data.get(response_key(api)) if isinstance(data, dict) else None
        if not isinstance(node, dict):
            raise ChannelError(f"Alipay answered {api} without {response_key(api)}")
        return node

    def _signed(self, params: Mapping[str, str]) -> dict[str, str]:
        """``params`` with the common parameters, a fresh timestamp and the RSA2 ``sign``."""
        out = {
            "app_id": self.context.app_key,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "version": "1.0",
            **params,
            "timestamp": format_time(self._now()),
        }
        out.pop("sign", None)
        out["sign"] = rsa2_sign(alipay_sign_content(out).encode("utf-8"), self._app_private_key())
        return out

    def _sign_request(self, req: ChannelRequest) -> ChannelRequest:
        """The HTTP client's signing hook: called for every attempt, so each carries a
        fresh timestamp. Only the query string goes into ``params``; ``biz_content`` stays in
        the body but is signed with them."""
        body = req.data or {}
        signed = self._signed({**req.params, **body})
        req.params = {k: v for k, v in signed.items() if k not in body}
        return req

    def _classify(self, response: httpx.Response, data: Any) -> Outcome | None:
        if response.status_code != 200:
            return None  # the kernel's rules for HTTP statuses (429, 5xx ...)
        if not isinstance(data, dict):
            return Outcome(Verdict.ERROR, code="unreadable-response", message="not Alipay JSON")
        key = next((k for k in data if isinstance(k, str) and k.endswith("_response")), None)
        node = data.get(key) if key else None
        if key is None or not isinstance(node, dict):
            return Outcome(Verdict.ERROR, code="unreadable-response", message="no *_response")
        code = str(node.get("code") or "")
        sub_code = str(node.get("sub_code") or "")
        signature = data.get("sign")
        if isinstance(signature, str) and signature:
            if not verify_response(response.content, key, signature, self._alipay_public_key()):
                return Outcome(
                    Verdict.AUTH,
                    code="invalid-response-signature",
                    message="the response signature does not verify with alipay_public_key",
                )
        elif code == "10000":
            # Alipay leaves only some gateway errors unsigned; a success must be signed.
            return Outcome(
                Verdict.AUTH,
                code="missing-response-signature",
                message="Alipay's answer carries no signature",
            )
        verdict = classify_code(code, sub_code)
        if verdict is Verdict.OK:
            return Outcome(Verdict.OK)
        message = f"Alipay {code} {node.get('msg') or _CODE_TITLES.get(code, '')}".rstrip()
        if sub_code:
            message += f": {sub_code} {node.get('sub_msg') or ''}".rstrip()
        return Outcome(verdict, code=sub_code or code, message=message, sub_code=sub_code or None)

    def _client(self) -> ChannelHTTPClient:
        if self._http is None:
            account = self.context.app_key or str(self.context.account_id or "-")
            self._http = ChannelHTTPClient(
                account=account,
                signer=self._sign_request,
                classifier=self._classify,
                limiter=self._limiter or shared_limiter("alipay", self.qps, burst=10),
                retry=self._retry,
                secrets=[self.context.secrets.get("app_private_key")],
                clock=self._clock,
                sleep=self._sleep,
                transport=self._transport,
            )
        return self._http

    def _downloader(self) -> ChannelHTTPClient:
        if self._download is None:
            self._download = ChannelHTTPClient(
                account=self.context.app_key or None,
                retry=self._retry,
                clock=self._clock,
                sleep=self._sleep,
                transport=self._transport,
            )
        return self._download

    def _app_private_key(self) -> rsa.RSAPrivateKey:
        if self._private is None:
            text = self.context.secrets.get("app_private_key")
            if not text:
                raise ChannelAuthError("the Alipay account has no app_private_key")
            try:
                self._private = load_rsa_private_key(text)
            except Exception:  # never let the parser's message near a log: it is the secret
                raise ChannelAuthError(
                    "app_private_key is not a readable RSA private key"
                ) from None
        return self._private

    def _alipay_public_key(self) -> rsa.RSAPublicKey:
        if self._public is None:
            text = self.context.secrets.get("alipay_public_key")
            if not text:
                raise ChannelAuthError("the Alipay account has no alipay_public_key")
            try:
                self._public = load_rsa_public_key(text)
            except Exception:
                raise ChannelAuthError(
                    "alipay_public_key is not a readable RSA public key"
                ) from None
        return self._public


# --- helpers --------------------------------------------------------------------------------------


def _gateway_url(context: ChannelContext) -> str:
    """The gateway from the account's ``base_url``: a full ``…/gateway.do`` URL, or a host
    (the sandbox's address) whose gateway is at ``/gateway.do``."""
    base = context.base_url or str(context.config.get("base_url") or "") or DEFAULT_GATEWAY
    url = httpx.URL(base.strip())
    path = url.path
    if not path.endswith(".do"):
        path = path.rstrip("/") + "/gateway.do"
    return str(url.copy_with(path=path, query=None, fragment=None))


def _biz(biz: Mapping[str, Any]) -> str:
    # Compact and UTF-8 (not \u escapes): the signature covers this exact text.
    return json.dumps(biz, ensure_ascii=False, separators=(",", ":"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _member_name(info: zipfile.ZipInfo) -> str:
    """A ZIP member's name: Alipay writes GBK names without the UTF-8 flag, which Python
    reads as cp437."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gb18030")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _bill_rows(text: str) -> list[dict[str, str]] | None:
    """The data rows of a bill CSV, or None when it is not a detail file. Lines starting
    with ``#`` are Alipay's preface and trailer."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        return None
    reader = csv.reader(lines)
    header = [h.strip() for h in next(reader)]
    if "支付宝交易号" not in header or "业务类型" not in header:
        return None
    rows: list[dict[str, str]] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        row = {
            name: (values[i] if i < len(values) else "") for i, name in enumerate(header) if name
        }
        if row.get("业务类型", "").strip() in ("交易", "退款"):
            rows.append(row)
    return rows
