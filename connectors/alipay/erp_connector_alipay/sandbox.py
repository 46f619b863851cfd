# ruff: noqa: RUF001 -- Alipay's bill text uses full-width colons and parentheses
"""A local Alipay: the OpenAPI gateway with its signatures, trades, refunds, notifications
and bills, for tests, the conformance kit and the demo.

It enforces what the real gateway checks on every call (the RSA2 request signature against
the merchant's public key, the timestamp, the app id, the method, ``biz_content``) and answers
in Alipay's shape, ``{"<method>_response": {...}, "sign": "..."}``, signed with its own Alipay
key. Like the real gateway it leaves gateway-level refusals (missing or invalid common
parameters, a bad signature, throttling) unsigned and signs everything it answers once the
caller is authenticated.

Key pairs are generated per seed once per process (not derived from the seed: RSA key
generation from a seed buys nothing); trade numbers, buyers and notification ids are
reproducible from the seed.
"""

from __future__ import annotations

import html
import io
import json
import logging
import random
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from erp_connector_alipay.protocol import (
    BILL_DETAIL_COLUMNS,
    SHANGHAI,
    charset_codec,
    decode_form,
    encode_form,
    format_amount,
    format_time,
    parse_time,
    response_key,
)
from erp_core.channels.signing import alipay_sign_content, rsa2_sign, rsa2_verify
from erp_core.testing.sandbox import AccountSpec, PaymentSandbox, PushRequest, RecordedCall

__all__ = ["AlipaySandbox", "SandboxError"]

logger = logging.getLogger("erp_connector_alipay.sandbox")

#: Trade statuses Alipay reports (each maps to a normalized PaymentStatus).
TRADE_STATUSES: tuple[str, ...] = (
    "WAIT_BUYER_PAY",
    "TRADE_SUCCESS",
    "TRADE_FINISHED",
    "TRADE_CLOSED",
)

_BROWSER_APIS = {
    "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY",
    "alipay.trade.wap.pay": "QUICK_WAP_WAY",
}
_API_CALLS = frozenset(
    {
        "alipay.trade.precreate",
        "alipay.trade.query",
        "alipay.trade.refund",
        "alipay.trade.fastpay.refund.query",
        "alipay.trade.close",
        "alipay.data.dataservice.bill.downloadurl.query",
    }
)
_MESSAGES = {
    "10000": "Success",
    "20000": "Service Currently Unavailable",
    "20001": "Insufficient Token Permissions",
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40003": "Insufficient Conditions",
    "40004": "Business Failed",
    "40005": "Call Limited",
    "40006": "Insufficient Permissions",
}
_FEE_RATE = Decimal("0.006")
_CENT = Decimal("0.01")
_BILL_URL_TTL = 30.0  # seconds, as Alipay's bill_download_url
_BILL_EARLIEST = date(2016, 1, 1)

_KEYS: dict[tuple[int, str], rsa.RSAPrivateKey] = {}
_KEYS_LOCK = threading.Lock()


def _key(seed: int, role: str) -> rsa.RSAPrivateKey:
    """One RSA-2048 key per (seed, role) per process: generating keys is the slow part of
    starting a sandbox, and tests start many."""
    with _KEYS_LOCK:
        key = _KEYS.get((seed, role))
        if key is None:
            key = _KEYS[(seed, role)] = rsa.generate_private_key(
                public_exponent=65537, key_size=2048
            )
        return key


class SandboxError(Exception):
    """An Alipay error answer: ``code`` (``40004``), ``sub_code`` (``ACQ.TRADE_NOT_EXIST``)."""

    def __init__(self, code: str, sub_code: str = "", sub_msg: str = "", *, signed: bool = True):
        super().__init__(f"{code} {sub_code} {sub_msg}".strip())
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.signed = signed


def _gateway_error(code: str, sub_code: str, sub_msg: str) -> SandboxError:
    return SandboxError(code, sub_code, sub_msg, signed=False)


@dataclass
class _Refund:
    out_request_no: str
    amount: Decimal
    reason: str
    at: datetime


@dataclass
class _Trade:
    out_trade_no: str
    trade_no: str
    amount: Decimal
    subject: str
    body: str
    product_code: str
    api: str
    notify_url: str
    created_at: datetime
    buyer_id: str
    buyer_logon_id: str
    status: str = "WAIT_BUYER_PAY"
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    qr_code: str = ""
    refunds: dict[str, _Refund] = field(default_factory=dict)

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal("0.00"))


class AlipaySandbox(PaymentSandbox):
    """See the module docstring. ``clock`` gives the sandbox's business time (payments,
    refunds, bills); the request timestamp check always uses the real time, as Alipay does.
    ``timestamp_tolerance`` is how far a request's timestamp may be from it."""

    connector: ClassVar[str] = "alipay"
    #: Only what a test can pay without a browser: a page or wap payment exists at Alipay once
    #: the payer's browser submitted the signed form (:meth:`submit` plays the browser).
    payment_methods: ClassVar[tuple[str, ...]] = ("precreate", "page", "wap")
    pending_status: ClassVar[str] = "WAIT_BUYER_PAY"
    trade_statuses: ClassVar[tuple[str, ...]] = TRADE_STATUSES
    timestamp_tolerance: ClassVar[timedelta] = timedelta(minutes=15)

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__(seed=seed)
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self.app_id = f"2021{self._rng.randrange(10**11, 10**12)}"
        self.seller_id = f"2088{self._rng.randrange(10**11, 10**12)}"
        self.seller_email = f"shop{seed}@sandbox.example.com"
        self._merchant_key = _key(seed, "merchant")
        self._alipay_key = _key(seed, "alipay")
        self._merchant_public = self._merchant_key.public_key()
        self._fresh = self._rng.getstate()
        self.clock: Callable[[], datetime] = _beijing_now
        self._trades: dict[str, _Trade] = {}
        self._bills: dict[str, tuple[float, bytes]] = {}
        self._throttle = 0
        self._failures: list[tuple[str, str]] = []
        self._counter = 0
        self._app = Starlette(
            routes=[
                Route("/gateway.do", self._gateway_endpoint, methods=["GET", "POST"]),
                Route("/bill/{token}.zip", self._bill_endpoint, methods=["GET"]),
            ]
        )

    # --- the contract -----------------------------------------------------------------------

    @property
    def app(self) -> Starlette:
        return self._app

    def account(self) -> AccountSpec:
        private_pem = self._merchant_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as Alipay's key tool
            serialization.NoEncryption(),
        ).decode("ascii")
        return AccountSpec(
            shop_id=self.seller_id,
            app_key=self.app_id,
            secrets={"app_private_key": private_pem, "alipay_public_key": self.alipay_public_pem},
            config={"base_url": self.base_url},
        )

    @property
    def alipay_public_pem(self) -> str:
        """The sandbox's Alipay public key (what a merchant copies from the console)."""
        return (
            self._alipay_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def throttle(self, calls: int) -> None:
        with self._lock:
            self._throttle = max(0, calls)

    def fail(self, calls: int, *, code: str = "20000", sub_code: str = "isp.unknow-error") -> None:
        """The next ``calls`` authenticated API calls answer this (signed) error, e.g.
        ``code="40004", sub_code="ACQ.SYSTEM_ERROR"`` or ``"20001", "aop.invalid-auth-token"``."""
        with self._lock:
            self._failures.extend([(code, sub_code)] * max(0, calls))

    def tamper(self, push: PushRequest) -> PushRequest:
        """The same notification with ``total_amount`` raised by one yuan after signing."""
        charset = push.headers.get("content-type", "").rpartition("charset=")[2] or "utf-8"
        params = decode_form(push.body, charset)
        amount = Decimal(params.get("total_amount", "0.00")) + 1
        params["total_amount"] = format_amount(amount.quantize(_CENT))
        return PushRequest(
            body=encode_form(params, charset),
            headers=dict(push.headers),
            query=dict(push.query),
            message_id=push.message_id,
        )

    def pay(self, out_trade_no: str, *, at: datetime | None = None) -> PushRequest:
        with self._lock:
            trade = self._trade(out_trade_no)
            if trade.status != "WAIT_BUYER_PAY":
                raise ValueError(f"trade {out_trade_no} is {trade.status}, not WAIT_BUYER_PAY")
            when = (at or self.clock()).astimezone(SHANGHAI)
            if when < trade.created_at:
                # A payment "in the past" (bills of earlier days): it was created just before.
                trade.created_at = when - timedelta(seconds=30)
            trade.status = "TRADE_SUCCESS"
            trade.paid_at = when
            return self._notify(trade, "TRADE_SUCCESS")

    def notification(
        self, out_trade_no: str, *, status: str, charset: str = "utf-8"
    ) -> PushRequest:
        """A signed notification describing the trade as in ``status`` (whatever its state
        now), in ``charset`` (``utf-8`` or ``gbk``)."""
        if status not in TRADE_STATUSES:
            raise ValueError(f"Alipay has no trade status {status!r}")
        with self._lock:
            return self._notify(self._trade(out_trade_no), status, charset)

    def refunded(self, out_trade_no: str) -> Decimal:
        with self._lock:
            return self._trade(out_trade_no).refunded

    # --- more controls ------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the state of a new sandbox of the same seed (same keys and account), for
        tests and demos that keep one server running."""
        with self._lock:
            self._rng.setstate(self._fresh)
            self.clock = _beijing_now
            self._trades.clear()
            self._bills.clear()
            self._throttle = 0
            self._failures.clear()
            self._counter = 0
            self.calls.clear()

    def payer_acts(self, created: Mapping[str, str]) -> None:
        """A web payment exists at Alipay only once the payer's browser posted its form."""
        if "action" in created and "fields" in created:
            status = self.submit(created)
            if status != 200:
                raise RuntimeError(f"the gateway answered the payer's form with HTTP {status}")

    def submit(self, created: Mapping[str, str]) -> int:
        """Play the payer's browser: submit what ``create_payment`` returned for a ``page``
        or ``wap`` payment to the gateway (the form's fields, as a POST). Returns the HTTP
        status the gateway answered (200: Alipay's cashier page, the trade exists)."""
        fields = json.loads(created["fields"])
        answer = httpx.post(created["action"], data=fields, timeout=10)
        return answer.status_code

    def trade_status(self, out_trade_no: str) -> str:
        with self._lock:
            return self._trade(out_trade_no).status

    def finish(self, out_trade_no: str) -> PushRequest:
        """The trade leaves its refund period (TRADE_FINISHED); returns the notification."""
        with self._lock:
            trade = self._trade(out_trade_no)
            if trade.status != "TRADE_SUCCESS":
                raise ValueError(f"trade {out_trade_no} is {trade.status}, not TRADE_SUCCESS")
            trade.status = "TRADE_FINISHED"
            trade.closed_at = self.clock()
            return self._notify(trade, "TRADE_FINISHED")

    def sign_notification(self, params: Mapping[str, str], charset: str = "utf-8") -> str:
        """The ``sign`` Alipay puts on a notification with these fields."""
        content = alipay_sign_content(params, notification=True)
        return rsa2_sign(content.encode(charset_codec(charset)), self._alipay_key)

    def deliver(
        self, url: str, push: PushRequest, *, attempts: int = 8, delay: float = 0.5
    ) -> bool:
        """POST ``push`` to ``url`` as Alipay does, again until the answer is exactly
        ``success`` (Alipay retries for 25 hours; the demo for a few seconds)."""
        for attempt in range(attempts):
            try:
                answer = httpx.post(url, content=push.body, headers=dict(push.headers), timeout=10)
                if answer.text == "success":
                    return True
                logger.info("notification to %s answered %s", url, answer.status_code)
            except httpx.HTTPError as exc:
                logger.info("notification to %s failed: %s", url, type(exc).__name__)
            if attempt + 1 < attempts:
                time.sleep(delay * (2**attempt))
        return False

    # --- HTTP --------------------------------------------------------------------------------

    async def _gateway_endpoint(self, request: Request) -> Response:
        body = await request.body()
        status, content, media_type = self.handle(
            request.method, request.url.query, body, request.headers.get("content-type", "")
        )
        return Response(content, status_code=status, media_type=media_type)

    async def _bill_endpoint(self, request: Request) -> Response:
        token = request.path_params["token"]
        with self._lock:
            entry = self._bills.get(token)
            if entry is None or time.monotonic() > entry[0]:
                self.record(
                    RecordedCall(api="bill.download", params={"token": token}, error="expired")
                )
                return Response("bill_download_url expired or unknown", status_code=404)
            self.record(RecordedCall(api="bill.download", params={"token": token}))
            return Response(entry[1], media_type="application/oct-stream")

    def handle(
        self, http_method: str, query: str, body: bytes, content_type: str
    ) -> tuple[int, bytes, str]:
        """Answer one gateway request: ``(status, body, media type)``."""
        with self._lock:
            params: dict[str, str] = {}
            api = ""
            try:
                params = self._parse(query, body, content_type)
                api = params.get("method", "")
                self._authenticate(params)
                if self._throttle > 0:
                    self._throttle -= 1
                    raise _gateway_error(
                        "40005", "isv.app-call-limited", "应用调用次数超限，包含调用频率超限"
                    )
                if self._failures:
                    code, sub_code = self._failures.pop(0)
                    raise SandboxError(code, sub_code, "沙箱模拟的错误")
                biz = self._biz(params)
                if api in _BROWSER_APIS:
                    trade = self._create(api, biz, params)
                    self.record(RecordedCall(api=api, params=params))
                    return 200, self._cashier(trade).encode("utf-8"), "text/html;charset=utf-8"
                answer = self._dispatch(api, biz)
                self.record(RecordedCall(api=api, params=params))
                return 200, self._respond(api, {"code": "10000", "msg": "Success", **answer}), _JSON
            except SandboxError as err:
                self.record(RecordedCall(api=api, params=params, error=err.sub_code or err.code))
                if api in _BROWSER_APIS:
                    page = (
                        "<html><body><h1>支付宝</h1>"
                        f"<p>错误代码 {html.escape(err.sub_code or err.code)}</p>"
                        f"<p>{html.escape(err.sub_msg)}</p></body></html>"
                    )
                    return 400, page.encode("utf-8"), "text/html;charset=utf-8"
                node = {"code": err.code, "msg": _MESSAGES.get(err.code, "Error")}
                if err.sub_code:
                    node.update(sub_code=err.sub_code, sub_msg=err.sub_msg)
                known = api in _API_CALLS
                return 200, self._respond(api if known else "", node, signed=err.signed), _JSON

    # --- the gateway's checks --------------------------------------------------------------

    def _parse(self, query: str, body: bytes, content_type: str) -> dict[str, str]:
        raw_query = dict(parse_qsl(query, keep_blank_values=True, encoding="latin-1"))
        raw_body = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True)) if body else {}
        charset = raw_query.get("charset") or raw_body.get("charset") or "utf-8"
        try:
            charset_codec(charset)
        except ValueError:
            raise _gateway_error("40002", "isv.invalid-charset", "字符集错误") from None
        try:
            params = decode_form(query, charset) if query else {}
            if body:
                if "x-www-form-urlencoded" not in content_type.lower():
                    raise ValueError("body is not a form")
                for name, value in decode_form(body, charset).items():
                    if name in params and params[name] != value:
                        raise ValueError(f"{name} given twice")
                    params[name] = value
        except (ValueError, UnicodeDecodeError):
            raise _gateway_error("40002", "isv.invalid-parameter", "参数无效") from None
        return params

    def _authenticate(self, params: Mapping[str, str]) -> None:
        api = params.get("method", "")
        if not api:
            raise _gateway_error("40001", "isv.missing-method", "缺少方法名参数")
        if api not in _API_CALLS and api not in _BROWSER_APIS:
            raise _gateway_error("40002", "isv.invalid-method", "不存在的方法名")
        if not params.get("app_id"):
            raise _gateway_error("40001", "isv.missing-app-id", "缺少AppID参数")
        if params["app_id"] != self.app_id:
            raise _gateway_error("40002", "isv.invalid-app-id", "无效的AppID参数")
        if not params.get("sign"):
            raise _gateway_error("40001", "isv.missing-signature", "缺少签名参数")
        if not params.get("sign_type"):
            raise _gateway_error("40001", "isv.missing-signature-type", "缺少签名类型参数")
        if params["sign_type"] != "RSA2":
            raise _gateway_error("40002", "isv.invalid-signature-type", "无效的签名类型参数")
        if params.get("version", "1.0") != "1.0":
            raise _gateway_error("40002", "isv.invalid-parameter", "version 只支持 1.0")
        if params.get("format", "JSON").upper() != "JSON":
            raise _gateway_error("40002", "isv.invalid-format", "无效的数据格式参数")
        stamp = params.get("timestamp", "")
        if not stamp:
            raise _gateway_error("40001", "isv.missing-timestamp", "缺少时间戳参数")
        try:
            skew = abs(datetime.now(SHANGHAI) - parse_time(stamp))
        except ValueError:
            raise _gateway_error("40002", "isv.invalid-timestamp", "非法的时间戳参数") from None
        if skew > self.timestamp_tolerance:
            raise _gateway_error("40002", "isv.invalid-timestamp", "非法的时间戳参数")
        codec = charset_codec(params.get("charset") or "utf-8")
        content = alipay_sign_content(params).encode(codec)
        if not rsa2_verify(content, params["sign"], self._merchant_public):
            raise _gateway_error(
                "40002",
                "isv.invalid-signature",
                "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配",
            )

    @staticmethod
    def _biz(params: Mapping[str, str]) -> dict[str, Any]:
        text = params.get("biz_content")
        if not text:
            raise SandboxError("40001", "isv.missing-parameter", "缺少 biz_content")
        try:
            biz = json.loads(text, parse_float=Decimal)
        except ValueError:
            raise SandboxError(
                "40002", "isv.invalid-parameter", "biz_content 不是合法的 JSON"
            ) from None
        if not isinstance(biz, dict):
            raise SandboxError("40002", "isv.invalid-parameter", "biz_content 必须是 JSON 对象")
        return biz

    # --- the APIs ----------------------------------------------------------------------------

    def _dispatch(self, api: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        if api == "alipay.trade.precreate":
            trade = self._create(api, biz, {})
            return {"out_trade_no": trade.out_trade_no, "qr_code": trade.qr_code}
        if api == "alipay.trade.query":
            return self._query(self._lookup(biz))
        if api == "alipay.trade.refund":
            return self._refund(self._lookup(biz), biz)
        if api == "alipay.trade.fastpay.refund.query":
            return self._refund_query(self._lookup(biz), biz)
        if api == "alipay.trade.close":
            return self._close(self._lookup(biz))
        return self._bill_url(biz)

    def _create(self, api: str, biz: Mapping[str, Any], params: Mapping[str, str]) -> _Trade:
        out_trade_no = _text(biz, "out_trade_no", max_len=64)
        amount = _amount(biz, "total_amount")
        subject = _text(biz, "subject", max_len=256)
        product_code = str(biz.get("product_code") or "")
        if api in _BROWSER_APIS and product_code != _BROWSER_APIS[api]:
            raise SandboxError(
                "40002", "isv.invalid-parameter", f"product_code 必须是 {_BROWSER_APIS[api]}"
            )
        existing = self._trades.get(out_trade_no)
        if existing is not None:
            if existing.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                raise SandboxError("40004", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if existing.status == "TRADE_CLOSED":
                raise SandboxError("40004", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if existing.amount != amount or existing.subject != subject:
                raise SandboxError("40004", "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing  # the same request again: the same trade
        self._counter += 1
        now = self.clock()
        trade = _Trade(
            out_trade_no=out_trade_no,
            trade_no=f"{now:%Y%m%d}22001{self._rng.randrange(10**4, 10**5)}{self._counter:09d}",
            amount=amount,
            subject=subject,
            body=str(biz.get("body") or "沙箱商品 规格=大&颜色=红"),
            product_code=product_code,
            api=api,
            notify_url=params.get("notify_url", ""),
            created_at=now,
            buyer_id=f"2088{self._rng.randrange(10**11, 10**12)}",
            buyer_logon_id=f"{self._rng.choice('abcdefghjk')}***@sandbox.example.com",
        )
        if api == "alipay.trade.precreate":
            trade.qr_code = f"https://qr.alipay.com/bax{self._rng.randrange(10**19, 10**20)}"
        self._trades[out_trade_no] = trade
        return trade

    def _lookup(self, biz: Mapping[str, Any]) -> _Trade:
        out_trade_no = str(biz.get("out_trade_no") or "")
        trade_no = str(biz.get("trade_no") or "")
        if not out_trade_no and not trade_no:
            raise SandboxError(
                "40002", "isv.invalid-parameter", "out_trade_no 和 trade_no 不能同时为空"
            )
        trade = self._trades.get(out_trade_no) if out_trade_no else None
        if trade is None and trade_no:
            trade = next((t for t in self._trades.values() if t.trade_no == trade_no), None)
        if trade is None:
            raise SandboxError("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def _query(self, trade: _Trade) -> dict[str, Any]:
        out: dict[str, Any] = {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "trade_status": trade.status,
            "total_amount": format_amount(trade.amount),
        }
        if trade.paid_at is not None:
            out.update(
                buyer_logon_id=trade.buyer_logon_id,
                buyer_user_id=trade.buyer_id,
                buyer_pay_amount=format_amount(trade.amount),
                receipt_amount=format_amount(trade.amount),
                invoice_amount=format_amount(trade.amount),
                point_amount="0.00",
                send_pay_date=format_time(trade.paid_at),
            )
        return out

    def _refund(self, trade: _Trade, biz: Mapping[str, Any]) -> dict[str, Any]:
        amount = _amount(biz, "refund_amount")
        request_no = str(biz.get("out_request_no") or "")
        if not request_no:
            # Without out_request_no Alipay only refunds the whole trade at once.
            if amount != trade.amount:
                raise SandboxError(
                    "40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致"
                )
            request_no = trade.out_trade_no
        done = trade.refunds.get(request_no)
        if done is not None:
            if done.amount != amount:
                raise SandboxError("40004", "ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self._refund_answer(trade, done, changed=False)
        if trade.status == "WAIT_BUYER_PAY":
            raise SandboxError("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态非法")
        if trade.status == "TRADE_FINISHED":
            raise SandboxError("40004", "ACQ.TRADE_HAS_FINISHED", "交易已完结")
        if trade.status == "TRADE_CLOSED":
            raise SandboxError("40004", "ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
        if trade.refunded + amount > trade.amount:
            raise SandboxError("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        now = self.clock()
        done = trade.refunds[request_no] = _Refund(
            request_no, amount, str(biz.get("refund_reason") or ""), now
        )
        if trade.refunded == trade.amount:
            trade.status = "TRADE_CLOSED"
            trade.closed_at = now
        return self._refund_answer(trade, done, changed=True)

    def _refund_answer(self, trade: _Trade, refund: _Refund, *, changed: bool) -> dict[str, Any]:
        return {
            "trade_no": trade.trade_no,
            "out_trade_no": trade.out_trade_no,
            "buyer_logon_id": trade.buyer_logon_id,
            "buyer_user_id": trade.buyer_id,
            "fund_change": "Y" if changed else "N",
            "refund_fee": format_amount(trade.refunded),
            "send_back_fee": format_amount(refund.amount),
            "gmt_refund_pay": format_time(refund.at),
        }

    def _refund_query(self, trade: _Trade, biz: Mapping[str, Any]) -> dict[str, Any]:
        request_no = _text(biz, "out_request_no", max_len=64)
        out: dict[str, Any] = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}
        refund = trade.refunds.get(request_no)
        if refund is None:
            return out  # Alipay's answer for a refund it does not know: no refund fields
        out.update(
            out_request_no=refund.out_request_no,
            total_amount=format_amount(trade.amount),
            refund_amount=format_amount(refund.amount),
            refund_status="REFUND_SUCCESS",
        )
        if refund.reason:
            out["refund_reason"] = refund.reason
        options = biz.get("query_options") or []
        if isinstance(options, list) and "gmt_refund_pay" in options:
            out["gmt_refund_pay"] = format_time(refund.at)
        return out

    def _close(self, trade: _Trade) -> dict[str, Any]:
        if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED") or trade.refunds:
            raise SandboxError("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if trade.status == "WAIT_BUYER_PAY":
            trade.status = "TRADE_CLOSED"
            trade.closed_at = self.clock()
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    # --- bills -------------------------------------------------------------------------------

    def _bill_url(self, biz: Mapping[str, Any]) -> dict[str, Any]:
        bill_type = str(biz.get("bill_type") or "")
        if bill_type not in ("trade", "signcustomer"):
            raise SandboxError(
                "40002", "isv.invalid-parameter", "bill_type 只支持 trade、signcustomer"
            )
        text = str(biz.get("bill_date") or "")
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise SandboxError("40002", "isv.invalid-parameter", "bill_date 格式为 yyyy-MM-dd")
        if day < _BILL_EARLIEST or day > self.clock().date():
            raise SandboxError("40004", "isp.bill_not_exist", "账单不存在")
        self._counter += 1
        token = f"{self._counter:06d}{self._rng.randrange(16**12):012x}"
        self._bills[token] = (time.monotonic() + _BILL_URL_TTL, self.bill(day))
        return {"bill_download_url": f"{self.base_url}/bill/{token}.zip"}

    def bill(self, day: date) -> bytes:
        """The trade bill ZIP of ``day`` (Beijing time), as Alipay serves it: GBK CSV files
        with GBK file names."""
        with self._lock:
            rows: list[list[str]] = []
            for trade in sorted(self._trades.values(), key=lambda t: t.created_at):
                if trade.paid_at is not None and trade.paid_at.astimezone(SHANGHAI).date() == day:
                    rows.append(self._bill_line(trade, "交易", trade.amount, trade.paid_at, ""))
                for refund in trade.refunds.values():
                    if refund.at.astimezone(SHANGHAI).date() == day:
                        rows.append(
                            self._bill_line(
                                trade, "退款", -refund.amount, refund.at, refund.out_request_no
                            )
                        )
            rows.sort(key=lambda r: r[5])
            stamp = f"{day:%Y%m%d}"
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for name, text in (
                    (f"{self.seller_id}0156_{stamp}_业务明细.csv", self._detail_csv(day, rows)),
                    (
                        f"{self.seller_id}0156_{stamp}_业务明细(汇总).csv",
                        self._summary_csv(day, rows),
                    ),
                ):
                    archive.writestr(_GbkName(name), text.encode("gbk"))
            return buffer.getvalue()

    def _bill_line(
        self, trade: _Trade, kind: str, amount: Decimal, at: datetime, request_no: str
    ) -> list[str]:
        # The merchant's view: the fee is charged (negative) on a payment and given back
        # (positive) on a refund, in proportion.
        fee = (abs(amount) * _FEE_RATE).quantize(_CENT, rounding=ROUND_HALF_UP)
        fee = -fee if kind == "交易" else fee
        values = {
            "支付宝交易号": trade.trade_no + "\t",
            "商户订单号": trade.out_trade_no + "\t",
            "业务类型": kind,
            "商品名称": trade.subject,
            "创建时间": format_time(trade.created_at),
            "完成时间": format_time(at),
            "门店编号": "",
            "门店名称": "",
            "操作员": "",
            "终端号": "",
            "对方账户": f"{trade.buyer_logon_id}\t",
            "订单金额（元）": format_amount(amount),
            "商家实收（元）": format_amount(amount),
            "支付宝红包（元）": "0.00",
            "集分宝（元）": "0.00",
            "支付宝优惠（元）": "0.00",
            "商家优惠（元）": "0.00",
            "券核销金额（元）": "0.00",
            "券名称": "",
            "商家红包消费金额（元）": "0.00",
            "卡消费金额（元）": "0.00",
            "退款批次号/请求号": request_no + ("\t" if request_no else ""),
            "服务费（元）": format_amount(fee),
            "分润（元）": "0.00",
            "备注": "",
        }
        return [values[c] for c in BILL_DETAIL_COLUMNS]

    def _preface(self, title: str, day: date) -> list[str]:
        nxt = day + timedelta(days=1)
        return [
            f"#支付宝{title}查询",
            f"#账号：[{self.seller_id}0156]",
            f"#起始日期：[{day:%Y年%m月%d日} 00:00:00]   终止日期：[{nxt:%Y年%m月%d日} 00:00:00]",
            f"#-----------------------------------------{title}列表----------------------------------------",
        ]

    def _detail_csv(self, day: date, rows: list[list[str]]) -> str:
        pay = [r for r in rows if r[2] == "交易"]
        back = [r for r in rows if r[2] == "退款"]

        def total(rs: list[list[str]]) -> str:
            return format_amount(sum((Decimal(r[12]) for r in rs), Decimal("0.00")))

        lines = [*self._preface("业务明细", day), ",".join(BILL_DETAIL_COLUMNS)]
        lines += [",".join(_csv_cell(v) for v in r) for r in rows]
        lines += [
            "#-----------------------------------------业务明细列表结束------------------------------------",
            f"#交易合计：{len(pay)}笔，商家实收共{total(pay)}元，商家优惠共0.00元",
            f"#退款合计：{len(back)}笔，商家实收退款共{total(back)}元，商家优惠退款共0.00元",
            f"#导出时间：[{self.clock():%Y年%m月%d日 %H:%M:%S}]",
        ]
        return "\r\n".join(lines) + "\r\n"

    def _summary_csv(self, day: date, rows: list[list[str]]) -> str:
        columns = ",".join(
            [
                "门店编号",
                "门店名称",
                "交易订单总笔数",
                "退款订单总笔数",
                "订单金额（元）",
                "商家实收（元）",
                "支付宝优惠（元）",
                "商家优惠（元）",
                "卡消费金额（元）",
                "服务费（元）",
                "分润（元）",
                "实收净额（元）",
            ]
        )
        amount = sum((Decimal(r[11]) for r in rows), Decimal("0.00"))
        fee = sum((Decimal(r[22]) for r in rows), Decimal("0.00"))
        pays = sum(1 for r in rows if r[2] == "交易")
        line = ",".join(
            [
                "合计",
                "",
                str(pays),
                str(len(rows) - pays),
                format_amount(amount),
                format_amount(amount),
                "0.00",
                "0.00",
                "0.00",
                format_amount(fee),
                "0.00",
                format_amount(amount + fee),
            ]
        )
        lines = [
            *self._preface("业务汇总", day),
            columns,
            line,
            "#-----------------------------------------业务汇总列表结束------------------------------------",
            f"#导出时间：[{self.clock():%Y年%m月%d日 %H:%M:%S}]",
        ]
        return "\r\n".join(lines) + "\r\n"

    # --- answers and notifications -------------------------------------------------------

    def _respond(self, api: str, node: Mapping[str, Any], *, signed: bool = True) -> bytes:
        """Alipay's JSON: the response object as compact UTF-8 text, and the signature of
        exactly that text. Non-ASCII stays unescaped, so a client that re-serializes the
        parsed object instead of verifying the bytes it received fails."""
        key = response_key(api) if api else "error_response"
        text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
        if not signed:
            return f'{{"{key}":{text}}}'.encode()
        sign = rsa2_sign(text.encode("utf-8"), self._alipay_key)
        return f'{{"{key}":{text},"sign":"{sign}"}}'.encode()

    def _cashier(self, trade: _Trade) -> str:
        return (
            "<html><head><meta charset='utf-8'><title>支付宝 - 网上支付 安全快速！</title></head>"
            f"<body><h1>支付宝收银台（沙箱）</h1><p>{html.escape(trade.subject)}</p>"
            f"<p>订单号 {html.escape(trade.out_trade_no)}</p>"
            f"<p>应付金额 ¥{format_amount(trade.amount)}</p></body></html>"
        )

    def _notify(self, trade: _Trade, status: str, charset: str = "utf-8") -> PushRequest:
        self._counter += 1
        now = self.clock()
        params: dict[str, str] = {
            "gmt_create": format_time(trade.created_at),
            "charset": charset,
            "seller_email": self.seller_email,
            "subject": trade.subject,
            "body": trade.body,
            "buyer_id": trade.buyer_id,
            "buyer_logon_id": trade.buyer_logon_id,
            "notify_id": f"{now:%Y%m%d}00222{self._rng.randrange(10**12)}{self._counter:06d}",
            "notify_type": "trade_status_sync",
            "notify_time": format_time(now),
            "trade_status": status,
            "total_amount": format_amount(trade.amount),
            "trade_no": trade.trade_no,
            "auth_app_id": self.app_id,
            "app_id": self.app_id,
            "version": "1.0",
            "out_trade_no": trade.out_trade_no,
            "seller_id": self.seller_id,
        }
        if status != "WAIT_BUYER_PAY":
            paid_at = trade.paid_at or now
            if status != "TRADE_CLOSED" or trade.paid_at is not None:
                amount = format_amount(trade.amount)
                params.update(
                    gmt_payment=format_time(paid_at),
                    receipt_amount=amount,
                    invoice_amount=amount,
                    buyer_pay_amount=amount,
                    point_amount="0.00",
                    fund_bill_list=json.dumps(
                        [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
                    ),
                )
            if trade.refunds:
                last = max(trade.refunds.values(), key=lambda r: r.at)
                params.update(
                    refund_fee=format_amount(trade.refunded),
                    out_biz_no=last.out_request_no,
                    gmt_refund=last.at.strftime("%Y-%m-%d %H:%M:%S.")
                    + f"{last.at.microsecond // 1000:03d}",
                )
            if status in ("TRADE_CLOSED", "TRADE_FINISHED"):
                params["gmt_close"] = format_time(trade.closed_at or now)
        params["sign_type"] = "RSA2"
        params["sign"] = self.sign_notification(params, charset)
        return PushRequest(
            body=encode_form(params, charset),
            headers={"content-type": f"application/x-www-form-urlencoded; charset={charset}"},
            message_id=params["notify_id"],
        )

    def _trade(self, out_trade_no: str) -> _Trade:
        trade = self._trades.get(out_trade_no)
        if trade is None:
            raise KeyError(
                f"the sandbox has no trade {out_trade_no!r} (page/wap payments exist once the "
                "buyer's browser submitted the form)"
            )
        return trade


_JSON = "application/json;charset=utf-8"


def _beijing_now() -> datetime:
    return datetime.now(SHANGHAI)


class _GbkName(zipfile.ZipInfo):
    """A ZIP entry whose name is stored in GBK without the UTF-8 flag, as Alipay's are."""

    def __init__(self, name: str) -> None:
        super().__init__(name, date_time=(2016, 1, 1, 0, 0, 0))
        self.compress_type = zipfile.ZIP_DEFLATED

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def _csv_cell(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _text(biz: Mapping[str, Any], name: str, *, max_len: int) -> str:
    value = biz.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SandboxError("40002", "isv.invalid-parameter", f"缺少参数 {name}")
    if len(value) > max_len:
        raise SandboxError("40002", "isv.invalid-parameter", f"参数 {name} 过长")
    return value


def _amount(biz: Mapping[str, Any], name: str) -> Decimal:
    value = biz.get(name)
    text = (
        str(value) if isinstance(value, str | int | Decimal) and not isinstance(value, bool) else ""
    )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise SandboxError("40002", "isv.invalid-parameter", f"参数 {name} 不是金额") from None
    if (
        not amount.is_finite()
        or amount <= 0
        or amount != amount.quantize(_CENT)
        or amount > 100_000_000
    ):
        raise SandboxError("40002", "isv.invalid-parameter", f"参数 {name} 不是金额")
    return amount.quantize(_CENT)
