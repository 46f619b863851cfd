"""The Taobao/Tmall sales channel: TOP's REST gateway over HTTP.

Every call is one signed POST to the gateway (``/router/rest``) carrying the system
parameters (``method, app_key, session, timestamp, format=json, v=2.0, sign_method, sign``)
and the method's own parameters in a form body, so that nothing secret ends up in a URL. The
signature is computed for every attempt by the HTTP client's signing hook (a retried request
gets a fresh timestamp and a fresh sign). TOP answers HTTP 200 for business errors too, with an
``error_response`` object; :func:`classify` maps it to the kernel's errors:

==========================================  ==============================================
TOP answer                                  raised
==========================================  ==============================================
code 7, ``accesscontrol.*``, ``isp.*``      :class:`ChannelThrottled` (after the client's
call/flow limits                            back-off; "ban will last N seconds" honoured)
codes 24-29, ``session-expired``,           :class:`ChannelAuthError` (the kernel refreshes
``invalid-sessionkey``                      the token or asks the merchant)
other ``isp.*``, code 10, HTTP 5xx          retried, then a transient :class:`ChannelError`
``isv.*`` and every other code              :class:`ChannelRejected` (``code`` = TOP code)
==========================================  ==============================================

Ship-backs of several orders go in TOP's batch API (:meth:`TmallChannel.ship_many`): up to
20 ``taobao.logistics.offline.send`` calls in one POST to ``/router/batch``, their parameters
in the body and the system parameters (the session among them, as TOP's own SDK sends them;
the client's logs redact it) in the query string, signed over both. One answer per call comes
back, each read as a lone call's would be.

Paging (:meth:`TmallChannel.fetch_orders`): ``taobao.trades.sold.increment.get`` sorts by
modified time **newest first**. Reading pages 1, 2, 3 … loses rows: when a row of an unread
page is modified during the fetch it leaves the (past) window, every older row moves up one
place, and the first row of the next page slides onto the page already read. Reading from the
last page backwards turns that into a harmless repeat (the row slides onto the page we read
next). So the first call asks page 1 only to learn ``total_results`` (``use_has_next=false``),
then the connector reads the last page and walks back to page 1; the cursor token is the page
number still to read, so a restart resumes where it stopped. (Rows entering the window during
the fetch would push the other way; the kernel's sync never asks a window that ends later than
a couple of minutes ago, so none can.)

Money is read from the response text with ``parse_float=Decimal`` and TOP's amount strings:
no amount ever passes through a ``float``. Discounts: see :func:`line_from_top`.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlencode

import httpx

from erp_connector_tmall.protocol import (
    API,
    API_VERSION,
    BATCH_LIMIT,
    BATCH_PATH,
    BATCH_PUBLIC,
    BATCH_SEPARATOR,
    GATEWAY,
    HEADER_APP_KEY,
    HEADER_SIGN,
    HEADER_SIGN_METHOD,
    HEADER_TIMESTAMP,
    LINE_REFUND_STATUS,
    ORDER_STATUS,
    PUSH_MAX_AGE,
    REFUND_STATUS,
    REFUND_TOPIC_STATUS,
    ROUTER_PATH,
    SIGN_METHODS,
    TRACE_ACTIONS,
    TRADE_TYPES,
    format_time,
    parse_time,
    response_key,
    utc_now,
)
from erp_core.channels.http import (
    AuthError,
    ChannelHTTPClient,
    ChannelRequest,
    Outcome,
    PlatformError,
    RateLimiter,
    RetryPolicy,
    Timeouts,
    Verdict,
    shared_limiter,
)
from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelContext,
    ChannelError,
    ChannelRejected,
    Cursor,
    Field,
    InboundMessage,
    InvalidMessage,
    Page,
    SalesChannel,
    TokenSet,
    message_received_at,
)
from erp_core.channels.signing import TopSignMethod, constant_time_equals, top_sign
from erp_core.channels.types import (
    Address,
    LineRefundStatus,
    Order,
    OrderLine,
    OrderStatus,
    Refund,
    RefundStatus,
    Shipment,
    StockLevel,
    TrackingStep,
    TrackingTrail,
)

__all__ = [
    "REFUND_FIELDS",
    "TRADE_FIELDS",
    "TmallChannel",
    "classify",
    "line_from_top",
    "order_from_trade",
    "refund_from_top",
    "sign_push",
]

T = TypeVar("T")
#: Zero in TOP's two-decimal form, so that derived amounts read like the ones TOP sends.
_ZERO = Decimal("0.00")

#: Trade fields asked from increment.get and fullinfo.get: everything :func:`order_from_trade`
#: reads, so that increment.get alone gives full orders (no call per trade).
TRADE_FIELDS = ",".join(
    (
        "tid",
        "tid_str",
        "type",
        "status",
        "buyer_nick",
        "buyer_open_uid",
        "created",
        "pay_time",
        "modified",
        "consign_time",
        "end_time",
        "payment",
        "total_fee",
        "post_fee",
        "discount_fee",
        "adjust_fee",
        "platform_subsidy_fee",
        "buyer_message",
        "seller_memo",
        "receiver_name",
        "receiver_state",
        "receiver_city",
        "receiver_district",
        "receiver_town",
        "receiver_address",
        "receiver_zip",
        "receiver_mobile",
        "receiver_phone",
        "orders",
    )
)
REFUND_FIELDS = ",".join(
    (
        "refund_id",
        "tid",
        "oid",
        "title",
        "num",
        "num_iid",
        "status",
        "order_status",
        "refund_fee",
        "total_fee",
        "payment",
        "reason",
        "desc",
        "has_good_return",
        "good_status",
        "refund_phase",
        "created",
        "modified",
    )
)
#: Methods TOP serves without a user session.
_NO_SESSION = frozenset({API.TOKEN_REFRESH})
#: Most SKUs ``taobao.skus.quantity.update`` takes in one call.
SKUS_PER_CALL = 20
_BAN = re.compile(r"last\s+for\s+(\d+)\s+more\s+second", re.IGNORECASE)
_AUTH_CODES = frozenset({"24", "25", "26", "27", "28", "29"})
_AUTH_SUB_CODES = frozenset(
    {"session-expired", "invalid-sessionkey", "sessionkey-not-generated-by-server"}
)
#: ``taobao.logistics.offline.send``: "the order was already shipped or is closed".
_ALREADY_SHIPPED = ":B04"


# --- error classification ----------------------------------------------------------------------


def _describe(err: Mapping[str, Any]) -> str:
    """A one-line message from TOP's error fields (they never echo credentials)."""
    text = f"TOP error {err.get('code', '?')} {err.get('msg', '')}".rstrip()
    sub, sub_msg = err.get("sub_code"), err.get("sub_msg")
    if sub:
        text += f" [{sub}]"
    if sub_msg:
        text += f": {str(sub_msg)[:300]}"
    return text


def classify(response: httpx.Response, data: Any) -> Outcome | None:
    """The HTTP client's classifier for TOP answers (see the module docstring). The answer to
    a batch request is the calls' answers one after the other, no JSON object: it is the
    batch's own error only when it is one (:meth:`TmallChannel.ship_many` reads the rest)."""
    status = response.status_code
    err = data.get("error_response") if isinstance(data, dict) else None
    if not isinstance(err, Mapping):
        if status >= 500:
            return Outcome(Verdict.TRANSIENT, code=str(status), message=f"HTTP {status}")
        if (
            200 <= status < 300
            and not isinstance(data, dict)
            and not response.request.url.path.endswith(BATCH_PATH)
        ):
            return Outcome(Verdict.ERROR, code="unreadable", message="TOP answered no JSON object")
        return None
    code = str(err.get("code", ""))
    sub = str(err.get("sub_code") or "")
    message = _describe(err)
    if (
        code == "7"
        or sub.startswith("accesscontrol.")
        or (sub.startswith("isp.") and ("limit" in sub or "busy" in sub))
    ):
        ban = _BAN.search(str(err.get("sub_msg") or ""))
        retry_after = float(ban.group(1)) if ban else None
        return Outcome(
            Verdict.THROTTLED, code=code, sub_code=sub, message=message, retry_after=retry_after
        )
    if code in _AUTH_CODES or sub in _AUTH_SUB_CODES:
        return Outcome(Verdict.AUTH, code=code, sub_code=sub, message=message)
    if sub.startswith("isp.") or code == "10":
        return Outcome(Verdict.TRANSIENT, code=code, sub_code=sub, message=message)
    return Outcome(Verdict.ERROR, code=code, sub_code=sub, message=message)


# --- conversion --------------------------------------------------------------------------------


def _money(value: Any, name: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, bool | float):
        raise ValueError(f"{name} is not an exact amount")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not an amount") from None
    if not amount.is_finite():
        raise ValueError(f"{name} is not a finite amount")
    return amount


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _id(row: Mapping[str, Any], name: str) -> str:
    """A TOP id as text: the ``*_str`` twin when given (ids outgrow JavaScript's integers)."""
    value = _text(row.get(f"{name}_str")) or _text(row.get(name))
    if not value:
        raise ValueError(f"{name} is missing")
    return value


def _when(row: Mapping[str, Any], name: str) -> datetime | None:
    """TOP's Beijing wall-clock text as an aware UTC datetime (the kernel's convention)."""
    value = _text(row.get(name))
    return parse_time(value).astimezone(UTC) if value else None


def _rows(container: Any, key: str) -> list[Mapping[str, Any]]:
    """TOP's list wrapper: ``{"trades": {"trade": [...]}}`` (absent when empty)."""
    if not isinstance(container, Mapping):
        return []
    rows = container.get(key)
    if isinstance(rows, Mapping):  # one element can come unwrapped
        return [rows]
    return [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []


def line_from_top(order: Mapping[str, Any]) -> OrderLine:
    """One ``orders.order[]`` row as an :class:`OrderLine`.

    TOP's line amounts: ``price * num`` is the gross; ``discount_fee`` is the line's own
    discount (the seller's item promotion), ``adjust_fee`` the seller's manual change of the
    price (negative: cheaper), ``part_mjz_discount`` the line's share of order-level promotions
    (shop coupons, 满就减, cross-store vouchers), and ``divide_order_fee`` what the buyer paid for
    the line after all of them (``payment`` is before the order-level share and, on one-line
    trades, even includes the postage, so it is not used).

    The split: everything is **merchant-funded** except ``platform_subsidy_fee``, the part of
    the order-level promotions the platform pays for (TOP's subsidy field; 0 when absent). That
    is the conservative reading for the books: a platform subsidy is income the platform settles
    later, and counting a seller's coupon as the platform's would overstate it. A positive
    ``adjust_fee`` (the seller raised the price) lowers the merchant discount, never below 0.
    When ``divide_order_fee`` is missing it is recomputed as gross - discount_fee + adjust_fee -
    part_mjz_discount.
    """
    price = _money(order.get("price"), "price")
    quantity = int(_text(order.get("num")) or "0")
    gross = price * quantity
    discount = _money(order.get("discount_fee"), "discount_fee")
    adjust = _money(order.get("adjust_fee"), "adjust_fee")
    share = _money(order.get("part_mjz_discount"), "part_mjz_discount")
    subsidy = max(_ZERO, _money(order.get("platform_subsidy_fee"), "platform_subsidy_fee"))
    if _text(order.get("divide_order_fee")):
        paid = _money(order.get("divide_order_fee"), "divide_order_fee")
    else:
        paid = max(_ZERO, gross - discount + adjust - share)
    merchant = max(_ZERO, discount - adjust + share - subsidy)
    raw_refund = _text(order.get("refund_status")) or "NO_REFUND"
    return OrderLine(
        line_id=_id(order, "oid"),
        platform_sku_id=_text(order.get("sku_id")),
        # The merchant's code of the SKU; items without SKUs carry it on the item.
        merchant_sku=_text(order.get("outer_sku_id")) or _text(order.get("outer_iid")),
        title=_text(order.get("title")),
        quantity=quantity,
        unit_price=price,
        platform_discount=subsidy,
        merchant_discount=merchant,
        paid=paid,
        refund_status=LINE_REFUND_STATUS.get(raw_refund, LineRefundStatus.UNKNOWN),
        raw_refund_status=raw_refund,
    )


def _receiver(trade: Mapping[str, Any]) -> Address | None:
    parts = {
        "name": _text(trade.get("receiver_name")),
        "phone": _text(trade.get("receiver_mobile")) or _text(trade.get("receiver_phone")),
        "province": _text(trade.get("receiver_state")),
        "city": _text(trade.get("receiver_city")),
        "district": _text(trade.get("receiver_district")),
        "postcode": _text(trade.get("receiver_zip")),
    }
    town, street = _text(trade.get("receiver_town")), _text(trade.get("receiver_address"))
    # The street address sometimes repeats the town (街道) and sometimes not.
    parts["detail"] = street if not town or street.startswith(town) else town + street
    if not any(parts.values()):
        return None
    return Address(**parts)


def order_from_trade(trade: Mapping[str, Any], account: str) -> Order:
    """A TOP trade (increment.get or fullinfo.get, with :data:`TRADE_FIELDS`) as an Order.

    Raises :class:`ChannelRejected` naming the trade when it cannot be read: a bad row stops
    the sync visibly instead of being skipped in silence.
    """
    tid = _text(trade.get("tid_str")) or _text(trade.get("tid")) or "?"
    try:
        raw = _text(trade.get("status"))
        lines = tuple(line_from_top(o) for o in _rows(trade.get("orders"), "order"))
        created = _when(trade, "created")
        modified = _when(trade, "modified")
        if created is None or modified is None:
            raise ValueError("created or modified is missing")
        return Order(
            order_id=_id(trade, "tid"),
            account=account,
            status=ORDER_STATUS.get(raw, OrderStatus.UNKNOWN),
            raw_status=raw,
            buyer_id=_text(trade.get("buyer_open_uid")),
            buyer_nick=_text(trade.get("buyer_nick")),
            receiver=_receiver(trade),
            buyer_note=_text(trade.get("buyer_message")),
            seller_memo=_text(trade.get("seller_memo")),
            lines=lines,
            shipping_fee=_money(trade.get("post_fee"), "post_fee"),
            platform_discount=sum((ln.platform_discount for ln in lines), _ZERO),
            merchant_discount=sum((ln.merchant_discount for ln in lines), _ZERO),
            total_paid=_money(trade.get("payment"), "payment"),
            currency="CNY",
            created_at=created,
            paid_at=_when(trade, "pay_time"),
            modified_at=modified,
            shipped_at=_when(trade, "consign_time"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelRejected(f"trade {tid[:40]} is unreadable: {exc}", code="unreadable") from None


def refund_from_top(refund: Mapping[str, Any]) -> Refund:
    """A ``taobao.refunds.receive.get`` / ``taobao.refund.get`` row (one line each)."""
    rid = _text(refund.get("refund_id_str")) or _text(refund.get("refund_id")) or "?"
    try:
        raw = _text(refund.get("status"))
        oid = _text(refund.get("oid_str")) or _text(refund.get("oid"))
        created, modified = _when(refund, "created"), _when(refund, "modified")
        if modified is None:
            raise ValueError("modified is missing")
        return Refund(
            refund_id=_id(refund, "refund_id"),
            order_id=_id(refund, "tid"),
            line_ids=(oid,) if oid else (),
            amount=_money(refund.get("refund_fee"), "refund_fee"),
            reason=_text(refund.get("reason")),
            status=REFUND_STATUS.get(raw, RefundStatus.UNKNOWN),
            raw_status=raw,
            created_at=created or modified,
            modified_at=modified,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ChannelRejected(
            f"refund {rid[:40]} is unreadable: {exc}", code="unreadable"
        ) from None


# --- pushed messages ---------------------------------------------------------------------------


def sign_push(
    body: bytes, *, app_key: str, secret: str, timestamp: str, method: TopSignMethod = "hmac-sha256"
) -> str:
    """The ``x-top-sign`` of a pushed message (see :mod:`erp_connector_tmall.protocol`).

    Raises :class:`UnicodeDecodeError` for a body that is not UTF-8 (TMC messages are JSON).
    """
    text = body.decode("utf-8")
    return top_sign({"app_key": app_key, "timestamp": timestamp, "message": text}, secret, method)


def _ceil_second(when: datetime) -> datetime:
    """TOP knows whole seconds: the first whole second at or after ``when``."""
    floor = when.replace(microsecond=0)
    return floor if floor == when else floor + timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where one stock level goes on Taobao."""

    num_iid: str
    sku_id: str
    quantity: int


# --- the connector -------------------------------------------------------------------------------


class TmallChannel(SalesChannel):
    """Taobao and Tmall shops through TOP (see the module docstring).

    The keyword arguments after ``context`` exist for tests and tools (the kernel passes only
    the context): ``limiter`` (default: the process-wide ``tmall`` limiter; ``False``: none),
    ``retry``, ``timeouts``, ``sleep``/``clock`` (the HTTP client's), ``now`` (the wall clock
    used for TOP timestamps and message freshness) and ``transport`` (httpx).
    """

    secret_fields: ClassVar[tuple[Field, ...]] = (
        Field(
            name="app_secret",
            title="App secret",
            description="The AppSecret of your TOP application (开放平台 → 应用管理).",
        ),
    )
    config_fields: ClassVar[tuple[Field, ...]] = (
        Field(
            name="base_url",
            title="API endpoint",
            required=False,
            description=f"TOP gateway URL; empty: {GATEWAY}.",
        ),
        Field(
            name="sign_method",
            title="Sign method",
            required=False,
            description="md5 (default), hmac or hmac-sha256.",
        ),
        Field(
            name="push_max_age",
            title="Pushed message max age (seconds)",
            required=False,
            description=(
                "Refuse pushed messages signed longer ago than this (default 300). "
                "0 turns the check off, e.g. to replay stored messages later."
            ),
        ),
    )
    max_window: ClassVar[timedelta] = timedelta(days=1)
    #: TOP's maximum for increment.get and refunds.receive.get.
    page_size: ClassVar[int] = 100
    #: Ship-backs sent in one batch request (:meth:`ship_many`).
    ship_batch: ClassVar[int] = BATCH_LIMIT
    #: TMC messages not confirmed are delivered again; a refused one gets this.
    failure_status: ClassVar[int] = 400
    failure_body: ClassVar[str] = '{"confirm":null,"error":"invalid message"}'
    failure_content_type: ClassVar[str] = "application/json"
    #: The default request rate of one shop (TOP's quotas are per app and API; throttling
    #: answers pause the shop's bucket for the ban's duration).
    qps: ClassVar[float] = 10.0

    def __init__(
        self,
        context: ChannelContext,
        *,
        limiter: RateLimiter | Literal[False] | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(context)
        self._secret = context.secrets.get("app_secret", "")
        self._session = context.access_token or ""
        self._now = now
        self._locations: dict[str, list[tuple[str, str]]] = {}
        if limiter is None:
            limiter = shared_limiter("tmall", qps=self.qps, burst=5)
        self._http = ChannelHTTPClient(
            "",
            account=context.shop_id or None,
            signer=self._sign,
            classifier=classify,
            limiter=limiter or None,
            timeouts=timeouts or Timeouts(connect=5.0, read=30.0),
            retry=retry or RetryPolicy(max_attempts=4, deadline=60.0),
            secrets=(self._secret, self._session),
            sleep=sleep,
            clock=clock,
            rng=rng,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    # --- settings ------------------------------------------------------------------------------

    @functools.cached_property
    def endpoint(self) -> str:
        """The gateway URL: the account's ``base_url`` (a bare host gets ``/router/rest``)."""
        url = self.context.base_url or self.context.config.get("base_url") or GATEWAY
        return _gateway(str(url))

    @functools.cached_property
    def batch_endpoint(self) -> str | None:
        """The batch gateway beside :attr:`endpoint` (``…/router/batch``); None when the
        endpoint is not at TOP's router path (a proxy of the merchant's: no batch calls)."""
        url = httpx.URL(self.endpoint)
        if not url.path.endswith(ROUTER_PATH):
            return None
        return str(url.copy_with(path=url.path[: -len(ROUTER_PATH)] + BATCH_PATH))

    @property
    def sign_method(self) -> TopSignMethod:
        method = _sign_method(str(self.context.config.get("sign_method") or "md5"))
        if method is None:
            raise ChannelRejected(
                f"sign_method must be one of {', '.join(SIGN_METHODS)}", code="config"
            )
        return method

    @property
    def push_max_age(self) -> timedelta | None:
        value = self.context.config.get("push_max_age")
        if value in (None, ""):
            return PUSH_MAX_AGE
        try:
            seconds = int(str(value))
        except ValueError:
            raise ChannelRejected("push_max_age must be a whole number", code="config") from None
        return timedelta(seconds=seconds) if seconds > 0 else None

    # --- requests ------------------------------------------------------------------------------

    def request_params(
        self, method: str, params: Mapping[str, str], *, fmt: str = "json"
    ) -> dict[str, str]:
        """The complete, signed parameters of one call at the current time.

        ``fmt`` exists so that TOP's documented example (``format=xml``) can be reproduced;
        the connector itself always asks JSON.
        """
        if not self._secret:
            raise ChannelAuthError("the account has no app_secret")
        out = {k: v for k, v in params.items() if v is not None and v != ""}
        out.update(
            method=method,
            app_key=self.context.app_key,
            timestamp=format_time(self._now()),
            format=fmt,
            v=API_VERSION,
            sign_method=self.sign_method,
        )
        if method not in _NO_SESSION:
            if not self._session:
                raise ChannelAuthError("the account has no access token (session)")
            out["session"] = self._session
        out.pop("sign", None)
        out["sign"] = top_sign(out, self._secret, self.sign_method)
        return out

    def _sign(self, req: ChannelRequest) -> ChannelRequest:
        if req.data is None and req.content is not None:  # a batch: the calls are in the body
            req.params = self._batch_params(req.content.decode("utf-8"))
            return req
        form = dict(req.data or {})
        method = form.pop("method")
        req.data = self.request_params(method, form)
        return req

    def _batch_params(self, body: str) -> dict[str, str]:
        """The signed system parameters of a batch request (its query string) at the current
        time: the calls' parameters are in ``body``, which the sign covers."""
        if not self._secret:
            raise ChannelAuthError("the account has no app_secret")
        if not self._session:
            raise ChannelAuthError("the account has no access token (session)")
        out = {
            "app_key": self.context.app_key,
            "timestamp": format_time(self._now()),
            "format": "json",
            "v": API_VERSION,
            "sign_method": self.sign_method,
            "session": self._session,
        }
        out["sign"] = top_sign(out, self._secret, self.sign_method, body=body)
        return out

    def _call(
        self, method: str, params: Mapping[str, str], *, retry: RetryPolicy | None = None
    ) -> dict[str, Any]:
        """One TOP call; the method's answer object (``…_response``)."""
        _ = self.sign_method  # a misconfigured account fails before any request is made
        result = self._http.post(self.endpoint, data={**params, "method": method}, retry=retry)
        try:
            # the client parsed a JSON answer with amounts as Decimals (never floats); an
            # answer it did not take for JSON is tried here, so that it is named
            data = result.data
            if data is None:
                data = json.loads(result.response.content, parse_float=Decimal)
        except ValueError:
            raise ChannelRejected(
                f"TOP answered {method} with no JSON", code="unreadable"
            ) from None
        answer = data.get(response_key(method)) if isinstance(data, dict) else None
        if not isinstance(answer, dict):
            raise ChannelRejected(f"TOP answered {method} without a result", code="unreadable")
        return answer

    # --- orders --------------------------------------------------------------------------------

    def fetch_orders(self, cursor: Cursor) -> Page[Order]:
        params = {"fields": TRADE_FIELDS, "type": ",".join(TRADE_TYPES)}
        return self._fetch_window(
            cursor,
            API.TRADES_INCREMENT,
            params,
            ("trades", "trade"),
            lambda row: order_from_trade(row, self.context.shop_id),
            lambda order: order.modified_at,
        )

    def get_order(self, order_id: str) -> Order:
        answer = self._call(API.TRADE_FULLINFO, {"tid": order_id, "fields": TRADE_FIELDS})
        trade = answer.get("trade")
        if not isinstance(trade, Mapping):
            raise ChannelRejected(f"TOP returned no trade {order_id}", code="not-found")
        return order_from_trade(trade, self.context.shop_id)

    def fetch_refunds(self, cursor: Cursor) -> Page[Refund]:
        return self._fetch_window(
            cursor,
            API.REFUNDS_RECEIVE,
            {"fields": REFUND_FIELDS},
            ("refunds", "refund"),
            refund_from_top,
            lambda refund: refund.modified_at,
        )

    def _fetch_window(
        self,
        cursor: Cursor,
        method: str,
        params: Mapping[str, str],
        path: tuple[str, str],
        convert: Callable[[Mapping[str, Any]], T],
        modified: Callable[[T], datetime],
    ) -> Page[T]:
        """One page of ``cursor.window``, from the last page backwards (module docstring).

        TOP's bounds are whole seconds and (assumed) inclusive at both ends; the window is
        half-open. So the query starts at the first whole second in the window and ends at
        the first whole second at or after its end, and rows at or after ``window.end`` are
        dropped here: they belong to the next window.
        """
        window = cursor.window
        start = _ceil_second(window.start)
        if start >= window.end:  # no whole second inside the window
            return Page(items=())
        size = self.page_size
        query = {
            **params,
            "start_modified": format_time(start),
            "end_modified": format_time(_ceil_second(window.end)),
            "page_size": str(size),
            "use_has_next": "false",
        }
        page_no = _page_of(cursor.token)
        if page_no is None:
            answer = self._call(method, {**query, "page_no": "1"})
            total = int(_text(answer.get("total_results")) or "0")
            page_no = max(1, math.ceil(total / size))
            if page_no > 1:
                answer = self._call(method, {**query, "page_no": str(page_no)})
        else:
            answer = self._call(method, {**query, "page_no": str(page_no)})
        items = [convert(row) for row in _rows(answer.get(path[0]), path[1])]
        kept = tuple(i for i in items if window.start <= modified(i) < window.end)
        following = Cursor(window=window, token=str(page_no - 1)) if page_no > 1 else None
        return Page(items=kept, next=following)

    # --- ship-back -----------------------------------------------------------------------------

    def ship(self, shipment: Shipment) -> None:
        try:
            self._call(API.OFFLINE_SEND, _ship_params(shipment))
        except PlatformError as exc:
            if not self._repeated(shipment, exc):
                raise

    def _repeated(self, shipment: Shipment, exc: PlatformError) -> bool:
        """B04 means "already shipped or closed": a repeat of a shipment that went through
        (our answer was lost, or the kernel retried) is a success, anything else is not."""
        return (exc.sub_code or "").endswith(_ALREADY_SHIPPED) and self._shipped_as(shipment)

    def ship_many(self, shipments: Sequence[Shipment]) -> list[Exception | None]:
        """The shipments in batch requests of :attr:`ship_batch` calls of
        ``taobao.logistics.offline.send`` (see :data:`~erp_connector_tmall.protocol.BATCH_PATH`),
        each call's answer read on its own, as :meth:`ship` reads it. A call the gateway could
        not make now (throttled, a remote timeout) or whose answer is unreadable is made again
        on its own, with :meth:`ship`'s retries; so is every call of a batch the gateway
        refused as a whole for a business reason (an app without the batch API). A batch
        refused for its signature or session, or not answered through all its retries, is
        that error for each of its shipments."""
        url = self.batch_endpoint if len(shipments) > 1 else None
        if url is None:
            return super().ship_many(shipments)
        out: list[Exception | None] = []
        for i in range(0, len(shipments), self.ship_batch):
            chunk = shipments[i : i + self.ship_batch]
            out.extend(self._ship_batch(url, chunk) if len(chunk) > 1 else self._one(chunk[0]))
        return out

    def _one(self, shipment: Shipment) -> list[Exception | None]:
        return super().ship_many([shipment])

    def _ship_batch(self, url: str, shipments: Sequence[Shipment]) -> list[Exception | None]:
        body = BATCH_SEPARATOR.join(
            [BATCH_PUBLIC + urlencode({"method": API.OFFLINE_SEND})]
            + [urlencode(_ship_params(s)) for s in shipments]
        )
        try:
            _ = self.sign_method  # a misconfigured account fails before any request is made
            result = self._http.post(
                url,
                content=body.encode("utf-8"),
                headers={"Content-Type": "text/plain;charset=UTF-8"},
                cost=len(shipments),
            )
        except PlatformError:
            return super().ship_many(shipments)
        except ChannelError as exc:
            return [exc] * len(shipments)
        answers = result.response.text.split(BATCH_SEPARATOR)
        if len(answers) != len(shipments):  # not the calls' answers: each on its own
            return super().ship_many(shipments)
        return [
            self._answered(s, text, result.response)
            for s, text in zip(shipments, answers, strict=True)
        ]

    def _answered(
        self, shipment: Shipment, text: str, response: httpx.Response
    ) -> Exception | None:
        """The outcome of one call of a batch from its answer ``text``."""
        try:
            data = json.loads(text, parse_float=Decimal)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return self._one(shipment)[0]
        if isinstance(data.get(response_key(API.OFFLINE_SEND)), dict):
            return None
        outcome = classify(response, data)
        if outcome is None or outcome.verdict in (Verdict.THROTTLED, Verdict.TRANSIENT):
            return self._one(shipment)[0]
        fields: dict[str, Any] = {
            "account": self.context.shop_id or None,
            "attempts": 1,
            "status": response.status_code,
            "code": outcome.code,
            "sub_code": outcome.sub_code,
        }
        if outcome.verdict is Verdict.AUTH:
            return AuthError(outcome.message or "authentication failed", **fields)
        exc = PlatformError(outcome.message or "platform error", **fields)
        try:
            return None if self._repeated(shipment, exc) else exc
        except ChannelError:  # the check itself failed: the refusal stands
            return exc

    def logistics_trail(
        self, order_id: str, *, line_ids: Sequence[str] = (), tracking_no: str = ""
    ) -> TrackingTrail | None:
        """``taobao.logistics.trace.search`` by trade (``is_split`` / ``sub_tid`` for the lines
        of a split shipment). TOP gives the courier's steps oldest first, in Beijing time."""
        params = {"tid": order_id}
        if line_ids:
            params.update(is_split="1", sub_tid=",".join(line_ids))
        answer = self._call(API.LOGISTICS_TRACE, params)
        steps = []
        for row in _rows(answer.get("trace_list"), "transit_step_info"):
            text = _text(row.get("status_desc"))
            when = _text(row.get("status_time"))
            if not text or not when:
                continue
            steps.append(
                TrackingStep(
                    at=parse_time(when),
                    description=text[:500],
                    action=TRACE_ACTIONS.get(_text(row.get("action")).upper(), ""),
                )
            )
        steps.sort(key=lambda x: x.at)
        return TrackingTrail(
            order_id=order_id,
            tracking_no=(_text(answer.get("out_sid")) or tracking_no)[:64],
            courier=_text(answer.get("company_name"))[:100],
            steps=tuple(steps),
            raw_status=_text(answer.get("status"))[:100],
        )

    def _shipped_as(self, shipment: Shipment) -> bool:
        answer = self._call(API.TRADE_FULLINFO, {"tid": shipment.order_id, "fields": "tid,orders"})
        lines = _rows(answer.get("trade", {}).get("orders"), "order")
        wanted = set(shipment.line_ids)
        targets = [o for o in lines if not wanted or _id(o, "oid") in wanted]
        if wanted and len(targets) != len(wanted):
            return False
        if not wanted:  # the whole order: lines refunded before shipping never get a waybill
            targets = [o for o in targets if _text(o.get("refund_status")) != "SUCCESS"]
        return bool(targets) and all(
            _text(o.get("invoice_no")) == shipment.tracking_no for o in targets
        )

    # --- stock ---------------------------------------------------------------------------------

    def push_stock(self, levels: Sequence[StockLevel], *, full: bool) -> None:
        """``type=1`` (full) sets the level, ``type=2`` (incremental) adds to it.

        Several SKUs of one item go in one ``taobao.skus.quantity.update`` (at most 20 per
        call), a lone SKU or an item without SKUs in ``taobao.item.quantity.update``. A level
        without platform ids is located by its merchant code (``taobao.skus.custom.get``, then
        ``taobao.items.custom.get``) and pushed to every listing that carries the code. An
        incremental push is never retried: a lost answer could otherwise apply it twice. A
        full level below zero is sent as 0.
        """
        kind = "1" if full else "2"
        retry = None if full else RetryPolicy(max_attempts=1)
        targets: dict[tuple[str, str], int] = {}
        for level in levels:
            for num_iid, sku_id in self._locate(level):
                key = (num_iid, sku_id)
                if full:
                    targets[key] = max(0, level.quantity)
                else:
                    targets[key] = targets.get(key, 0) + level.quantity
        by_item: dict[str, list[_Target]] = {}
        for (num_iid, sku_id), quantity in targets.items():
            if not full and quantity == 0:
                continue
            by_item.setdefault(num_iid, []).append(_Target(num_iid, sku_id, quantity))
        for num_iid, entries in by_item.items():
            skus = [e for e in entries if e.sku_id]
            if len(skus) > 1:
                for chunk in _chunks(skus, SKUS_PER_CALL):
                    pairs = ";".join(f"{e.sku_id}:{e.quantity}" for e in chunk)
                    self._call(
                        API.SKUS_QUANTITY,
                        {"num_iid": num_iid, "skuid_quantities": pairs, "type": kind},
                        retry=retry,
                    )
                entries = [e for e in entries if not e.sku_id]
            for e in entries:
                params = {"num_iid": num_iid, "quantity": str(e.quantity), "type": kind}
                if e.sku_id:
                    params["sku_id"] = e.sku_id
                self._call(API.ITEM_QUANTITY, params, retry=retry)

    def _locate(self, level: StockLevel) -> list[tuple[str, str]]:
        if level.platform_item_id:
            return [(level.platform_item_id, level.platform_sku_id)]
        code = level.merchant_sku
        if code not in self._locations:
            answer = self._call(
                API.SKUS_CUSTOM, {"outer_id": code, "fields": "sku_id,num_iid,outer_id"}
            )
            found = [
                (_id(s, "num_iid"), _id(s, "sku_id")) for s in _rows(answer.get("skus"), "sku")
            ]
            if not found:
                answer = self._call(API.ITEMS_CUSTOM, {"outer_id": code, "fields": "num_iid"})
                found = [(_id(i, "num_iid"), "") for i in _rows(answer.get("items"), "item")]
            if not found:
                raise ChannelRejected(
                    f"no Taobao listing carries the merchant code {code[:60]}", code="no-listing"
                )
            self._locations[code] = found
        return self._locations[code]

    # --- tokens --------------------------------------------------------------------------------

    def refresh_token(self, refresh_token: str) -> TokenSet:
        """``taobao.top.auth.token.refresh``; the new session is also used from now on."""
        self._http.redactor.register_secret(refresh_token)
        try:
            answer = self._call(API.TOKEN_REFRESH, {"refresh_token": refresh_token})
        except PlatformError as exc:
            # A refused refresh token cannot be retried into working: the merchant must
            # authorise the app again.
            raise ChannelAuthError(f"TOP refused the refresh token ({exc.code})") from None
        raw = answer.get("token_result")
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(data, dict):
                raise TypeError("token_result is not an object")
            access = str(data["access_token"])
        except (TypeError, ValueError, KeyError):
            raise ChannelRejected(
                "TOP answered the refresh without a token", code="unreadable"
            ) from None
        self._http.redactor.register_secret(access, data.get("refresh_token"))
        now = self._now()
        self._session = access
        return TokenSet(
            access_token=access,
            expires_at=_expiry(data, "expire_time", "expires_in", now),
            refresh_token=_text(data.get("refresh_token")) or None,
            refresh_expires_at=_expiry(data, "refresh_token_valid_time", "re_expires_in", now),
        )

    # --- pushed messages -----------------------------------------------------------------------

    def parse_message(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        """A TMC message relayed over HTTP (signature: :mod:`erp_connector_tmall.protocol`).

        Checks, in order: the app key, the signature (constant time), the signed timestamp's
        age (``push_max_age``), then the body. Trade topics become ``kind="order"`` with no
        subject (the inbox asks :meth:`get_order` for the current full trade); refund topics
        carry the refund, read with ``taobao.refund.get`` (TMC refund messages hold no status
        or creation time), or built from the message and its topic when TOP cannot be reached.
        A message for another seller (``user_id`` other than the account's shop id) is refused.
        """
        h = {str(k).lower(): str(v) for k, v in headers.items()}
        app_key, timestamp = h.get(HEADER_APP_KEY, ""), h.get(HEADER_TIMESTAMP, "")
        method, sent = h.get(HEADER_SIGN_METHOD, "hmac-sha256").lower(), h.get(HEADER_SIGN, "")
        if not self._secret:
            raise InvalidMessage("the account has no app_secret")
        if not app_key or app_key != self.context.app_key:
            raise InvalidMessage("the message is for another app key")
        if not timestamp or not sent:
            raise InvalidMessage("the message is not signed")
        sign_method = _sign_method(method)
        if sign_method is None:
            raise InvalidMessage("unknown sign method")
        try:
            expected = sign_push(
                body, app_key=app_key, secret=self._secret, timestamp=timestamp, method=sign_method
            )
        except UnicodeDecodeError:
            raise InvalidMessage("the message body is not UTF-8") from None
        if not constant_time_equals(expected, sent, ignore_case=True):
            raise InvalidMessage("bad signature")
        self._check_age(timestamp, message_received_at(headers))
        try:
            # Numbers other than ids are kept as their text: exact, and storable as JSON.
            data = json.loads(body, parse_float=str)
            topic, message_id = str(data["topic"]), _text(data["id"])
            content = data.get("content") or {}
            if isinstance(content, str):
                content = json.loads(content, parse_float=str)
            if not isinstance(content, dict) or not topic or not message_id:
                raise ValueError("no topic, id or content")
            seller = _text(data.get("user_id"))
            pub_time = _when(data, "pub_time")
        except (ValueError, KeyError, TypeError, AttributeError):
            raise InvalidMessage("unparseable message") from None
        if seller and self.context.shop_id and seller != self.context.shop_id:
            raise InvalidMessage("the message is for another seller")
        kind: Literal["order", "refund", ""] = ""
        subject_id, subject = "", None
        if topic.startswith("taobao_trade_"):
            kind, subject_id = "order", _text(content.get("tid"))
        elif topic.startswith("taobao_refund_"):
            kind, subject_id = "refund", _text(content.get("refund_id"))
            subject = self._refund_of(topic, content)
        if kind and not subject_id:
            raise InvalidMessage("the message names no trade or refund")
        reply = json.dumps({"confirm": message_id}, separators=(",", ":"))
        return InboundMessage(
            message_id=message_id,
            topic=topic,
            kind=kind,
            subject_id=subject_id,
            subject=subject,
            occurred_at=pub_time,
            payload={
                "topic": topic,
                "content": content,
                "user_id": seller,
                "user_nick": _text(data.get("user_nick")),
            },
            reply=reply,
            reply_status=200,
            reply_content_type="application/json",
        )

    def _check_age(self, timestamp: str, arrived: datetime) -> None:
        """Against the arrival time, not the clock: a replay days later must still verify."""
        try:
            limit = self.push_max_age
        except ChannelRejected:
            raise InvalidMessage("the account's push_max_age is not a whole number") from None
        try:
            signed = datetime.fromtimestamp(int(timestamp) / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            raise InvalidMessage("the message timestamp is unreadable") from None
        if limit is not None and abs(arrived - signed) > limit:
            raise InvalidMessage("the message timestamp is too old or in the future")

    def _refund_of(self, topic: str, content: Mapping[str, Any]) -> Refund:
        refund_id = _text(content.get("refund_id"))
        try:
            answer = self._call(API.REFUND_GET, {"refund_id": refund_id, "fields": REFUND_FIELDS})
            row = answer.get("refund")
            if isinstance(row, Mapping):
                return refund_from_top(row)
        except ChannelError:
            pass  # the message alone still says enough (below)
        status = REFUND_TOPIC_STATUS.get(topic)
        if status is None:
            raise InvalidMessage("the refund message cannot be read without TOP")
        try:
            return refund_from_top({**content, "status": status})
        except ChannelRejected:
            raise InvalidMessage("the refund message is incomplete") from None


@functools.lru_cache(maxsize=256)
def _ship_params(shipment: Shipment) -> dict[str, str]:
    """``taobao.logistics.offline.send``'s parameters for a shipment."""
    params = {
        "tid": shipment.order_id,
        "out_sid": shipment.tracking_no,
        "company_code": shipment.courier_code,
    }
    if shipment.partial:
        params.update(is_split="1", sub_tid=",".join(shipment.line_ids))
    return params


def _gateway(url: str) -> str:
    """The gateway URL for an account's ``base_url``: a bare host gets ``/router/rest``."""
    if httpx.URL(url).path in ("", "/"):
        return url.rstrip("/") + ROUTER_PATH
    return url


def _sign_method(text: str) -> TopSignMethod | None:
    method = text.strip().lower()
    if method == "md5":
        return "md5"
    if method == "hmac":
        return "hmac"
    if method == "hmac-sha256":
        return "hmac-sha256"
    return None


def _page_of(token: str) -> int | None:
    """The page a cursor token names; None (start over) for an empty or unreadable one."""
    try:
        page = int(token)
    except ValueError:
        return None
    return page if page >= 1 else None


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _expiry(data: Mapping[str, Any], at_ms: str, in_seconds: str, now: datetime) -> datetime | None:
    """An expiry from TOP's token result: an absolute time in ms, else seconds from now."""
    try:
        if _text(data.get(at_ms)):
            return datetime.fromtimestamp(int(_text(data.get(at_ms))) / 1000, UTC)
        if _text(data.get(in_seconds)):
            return now + timedelta(seconds=int(_text(data.get(in_seconds))))
    except (ValueError, OverflowError, OSError):
        return None
    return None
