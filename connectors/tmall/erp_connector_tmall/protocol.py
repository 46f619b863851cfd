"""Facts of the Taobao Open Platform (TOP) shared by the connector and its sandbox.

Both sides must agree on these (the API names, the time format, the raw statuses, the
message headers), so they live in one place; everything that *checks* the protocol (signature
verification, window and page rules) is implemented separately on each side, so that a
mistake in one is caught by the other.

Sources: ``PROTOCOLS.md`` (signing, increment.get rules, status lists) and the TOP SDKs'
public domain models (field names and comments). Rows marked "assumed" in the comments are
what we could not confirm and chose deliberately.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

from erp_core.channels.types import LineRefundStatus, OrderStatus, RefundStatus

__all__ = [
    "API",
    "GATEWAY",
    "LINE_REFUND_STATUS",
    "ORDER_STATUS",
    "REFUND_STATUS",
    "SHANGHAI",
    "TIME_FORMAT",
    "format_time",
    "parse_time",
]

#: The production gateway (HTTPS). ``gw.api.taobao.com/router/rest`` is the same service.
GATEWAY: Final = "https://eco.taobao.com/router/rest"
#: The path of the gateway on any host (what a bare ``base_url`` is completed with).
ROUTER_PATH: Final = "/router/rest"
API_VERSION: Final = "2.0"
#: TOP's batch gateway beside the router: several API calls in one request. The system
#: parameters go in the query string, signed with the body appended to their canonical string;
#: the body is the calls' own parameters, form-encoded, one call after the other with
#: :data:`BATCH_SEPARATOR` between them (a call without parameters is ``N``), optionally led by
#: :data:`BATCH_PUBLIC` and the parameters common to every call. The answer is the calls'
#: answers in the same order with the same separator, or a single error when the gateway
#: refused the request as a whole.
BATCH_PATH: Final = "/router/batch"
BATCH_SEPARATOR: Final = "\r\n-S-\r\n"
#: The request header that names a separator of the caller's choice instead.
BATCH_SEPARATOR_HEADER: Final = "top-api-separator"
BATCH_PUBLIC: Final = "#PUBLIC#"
#: The most calls one batch request carries here (⚠ the connector's own limit: TOP's
#: documented maximum is not confirmed; the sandbox refuses more).
BATCH_LIMIT: Final = 20
SIGN_METHODS: Final = ("md5", "hmac", "hmac-sha256")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def _shanghai() -> tzinfo:
    # China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact for
    # every date TOP can return; it also spares us a dependency on the system's tz database.
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Shanghai")
    except Exception:  # pragma: no cover - minimal containers without tzdata
        return timezone(timedelta(hours=8), "Asia/Shanghai")


SHANGHAI: Final = _shanghai()


def format_time(when: datetime) -> str:
    """TOP's wall-clock text of an aware instant ("2013-05-06 13:52:03", Beijing time)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("TOP times must be formatted from timezone-aware datetimes")
    return when.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """An aware datetime from TOP's "yyyy-MM-dd HH:mm:ss" Beijing-time text."""
    return datetime.strptime(text.strip(), TIME_FORMAT).replace(tzinfo=SHANGHAI)


def utc_now() -> datetime:
    return datetime.now(UTC)


class API:
    """TOP method names used by the connector (and answered by the sandbox)."""

    TRADES_INCREMENT = "taobao.trades.sold.increment.get"
    TRADE_FULLINFO = "taobao.trade.fullinfo.get"
    REFUNDS_RECEIVE = "taobao.refunds.receive.get"
    REFUND_GET = "taobao.refund.get"
    OFFLINE_SEND = "taobao.logistics.offline.send"
    LOGISTICS_TRACE = "taobao.logistics.trace.search"
    ITEM_QUANTITY = "taobao.item.quantity.update"
    SKUS_QUANTITY = "taobao.skus.quantity.update"
    SKUS_CUSTOM = "taobao.skus.custom.get"
    ITEMS_CUSTOM = "taobao.items.custom.get"
    TOKEN_REFRESH = "taobao.top.auth.token.refresh"


#: The JSON key TOP wraps a method's answer in: ``taobao.trade.fullinfo.get`` →
#: ``trade_fullinfo_get_response`` (the ``taobao.`` prefix dropped, dots to underscores).
def response_key(method: str) -> str:
    name = method.removeprefix("taobao.")
    return name.replace(".", "_") + "_response"


#: Every trade status TOP documents, mapped to the kernel's. Why the less obvious ones:
#:
#: * ``TRADE_NO_CREATE_PAY``, ``WAIT_BUYER_PAY``, ``PAY_PENDING`` (international card being
#:   confirmed) and ``WAIT_PRE_AUTH_CONFIRM`` (pre-authorised "0-yuan" contract deals) are all
#:   money not yet captured: pending payment.
#: * ``PAID_FORBID_CONSIGN`` is paid, but the platform forbids shipping (a group buy still
#:   gathering members, a trade under risk control). The kernel has no "on hold" status, and
#:   ``paid`` would release it to the warehouse, so it stays *pending payment* until TOP moves
#:   it to ``WAIT_SELLER_SEND_GOODS``.
#: * ``TRADE_BUYER_SIGNED`` (cash on delivery, buyer signed for it) is delivered but not yet
#:   final: shipped.
#: * ``TRADE_CLOSED`` happens after payment (everything refunded): closed;
#:   ``TRADE_CLOSED_BY_TAOBAO`` before payment (buyer, seller or timeout): cancelled.
ORDER_STATUS: Final[dict[str, OrderStatus]] = {
    "TRADE_NO_CREATE_PAY": OrderStatus.PENDING_PAYMENT,
    "WAIT_BUYER_PAY": OrderStatus.PENDING_PAYMENT,
    "PAY_PENDING": OrderStatus.PENDING_PAYMENT,
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.PENDING_PAYMENT,
    "PAID_FORBID_CONSIGN": OrderStatus.PENDING_PAYMENT,
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.PARTIALLY_SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.SHIPPED,
    "TRADE_BUYER_SIGNED": OrderStatus.SHIPPED,
    "TRADE_FINISHED": OrderStatus.COMPLETED,
    "TRADE_CLOSED": OrderStatus.CLOSED,
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CANCELLED,
}

#: Refund (after-sale) statuses of ``taobao.refunds.receive.get`` / ``taobao.refund.get``.
REFUND_STATUS: Final[dict[str, RefundStatus]] = {
    "WAIT_SELLER_AGREE": RefundStatus.REQUESTED,
    "WAIT_BUYER_RETURN_GOODS": RefundStatus.WAITING_RETURN,
    "WAIT_SELLER_CONFIRM_GOODS": RefundStatus.RETURNED,
    "SELLER_REFUSE_BUYER": RefundStatus.REFUSED,
    "CLOSED": RefundStatus.CLOSED,
    "SUCCESS": RefundStatus.REFUNDED,
}

#: ``orders.order[].refund_status``: the refund statuses plus ``NO_REFUND``.
LINE_REFUND_STATUS: Final[dict[str, LineRefundStatus]] = {
    "NO_REFUND": LineRefundStatus.NONE,
    "WAIT_SELLER_AGREE": LineRefundStatus.REQUESTED,
    "WAIT_BUYER_RETURN_GOODS": LineRefundStatus.WAITING_RETURN,
    "WAIT_SELLER_CONFIRM_GOODS": LineRefundStatus.RETURNED,
    "SELLER_REFUSE_BUYER": LineRefundStatus.REFUSED,
    "CLOSED": LineRefundStatus.CLOSED,
    "SUCCESS": LineRefundStatus.REFUNDED,
}

#: What a refund TMC topic says about the refund's status, for when ``taobao.refund.get``
#: cannot be reached (TMC refund messages carry no status of their own).
REFUND_TOPIC_STATUS: Final[dict[str, str]] = {
    "taobao_refund_RefundCreated": "WAIT_SELLER_AGREE",
    "taobao_refund_RefundBuyerModifyAgreement": "WAIT_SELLER_AGREE",
    "taobao_refund_RefundSellerAgreeAgreement": "WAIT_BUYER_RETURN_GOODS",
    "taobao_refund_RefundBuyerReturnGoods": "WAIT_SELLER_CONFIRM_GOODS",
    "taobao_refund_RefundSellerRefuseAgreement": "SELLER_REFUSE_BUYER",
    "taobao_refund_RefundClosed": "CLOSED",
    "taobao_refund_RefundSuccess": "SUCCESS",
}

#: The trade types ``taobao.trades.sold.increment.get`` returns only when asked: without
#: ``type`` it leaves some out (assumed from TOP's parameter note: "默认同时查询 guarantee_trade,
#: auto_delivery, ec, cod, step"), and an ERP must see every trade.
TRADE_TYPES: Final = (
    "fixed",
    "auction",
    "guarantee_trade",
    "step",
    "independent_simple_trade",
    "independent_shop_trade",
    "auto_delivery",
    "ec",
    "cod",
    "game_equipment",
    "shopex_trade",
    "netcn_trade",
    "external_trade",
    "instant_trade",
    "b2c_cod",
    "hotel_trade",
    "super_market_trade",
    "super_market_cod_trade",
    "taohua",
    "waimai",
    "nopaid",
    "eticket",
    "tmall_i18n",
    "o2o_offlinetrade",
    "pre_auth_type",
)
DEFAULT_TRADE_TYPES: Final = frozenset({"guarantee_trade", "auto_delivery", "ec", "cod", "step"})

# --- pushed messages over HTTP ---------------------------------------------------------------
#
# TMC itself delivers over a WebSocket the client opens (PROTOCOLS.md §2). The ERP receives
# pushes on an HTTP route, so a relay (or the sandbox) POSTs each TMC message as its JSON body
# with these headers. The signature follows TOP's own rule so that no new primitive is needed:
# ``sign = top_sign({"app_key": K, "timestamp": T, "message": <body text>}, app_secret,
# sign_method)``, i.e. HEX(HMAC-SHA256(secret, "app_keyK" + "message<body>" + "timestampT")).
# ``T`` is Unix milliseconds, as in the TMC handshake.

HEADER_APP_KEY: Final = "x-top-appkey"
HEADER_TIMESTAMP: Final = "x-top-timestamp"
HEADER_SIGN_METHOD: Final = "x-top-sign-method"
HEADER_SIGN: Final = "x-top-sign"
PUSH_SIGN_METHOD: Final = "hmac-sha256"
#: Default tolerance between a push's signed timestamp and our clock.
PUSH_MAX_AGE: Final = timedelta(minutes=5)


#: ``transit_step_info.action`` of ``taobao.logistics.trace.search`` (the node kind; codes as
#: Cainiao's trail uses them, ⚠ not confirmed against TOP) mapped to the kernel's step kinds;
#: an unknown or missing code is kept as a plain step ("").
TRACE_ACTIONS: dict[str, str] = {
    "GOT": "collected",
    "ACCEPT": "collected",
    "DEPARTURE": "in_transit",
    "ARRIVAL": "in_transit",
    "TRANSPORT": "in_transit",
    "TMS_STATION_OUT": "in_transit",
    "SENT_SCAN": "out_for_delivery",
    "DELIVERING": "out_for_delivery",
    "SIGNED": "delivered",
    "STA_SIGN": "delivered",
    "FAILED": "problem",
    "REJECT": "problem",
    "TMS_RETURN": "problem",
}
