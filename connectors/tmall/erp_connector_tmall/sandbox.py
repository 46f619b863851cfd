"""A local Taobao Open Platform: the TOP gateway (``/router/rest``) over seeded shop data.

The sandbox enforces what the real gateway enforces, with TOP's error codes and JSON shapes,
so that a connector that passes here is wrong only where TOP differs from our understanding of
it (``PROTOCOLS.md``):

=====================================================  =========================================
rule                                                    answer when broken
=====================================================  =========================================
``method`` present and known                            21 Missing method / 22 Invalid method
``app_key`` present and ours                            28 Missing app key / 29 Invalid app key
``timestamp`` "yyyy-MM-dd HH:mm:ss" GMT+8, ±10 minutes  30 Missing timestamp / 31 Invalid timestamp
``v=2.0``, ``format=json`` (the sandbox speaks JSON)    32/34 version, 23 Invalid format
``sign`` (md5, hmac, hmac-sha256) recomputed            24 Missing signature / 25 Invalid signature
call quota (:meth:`TmallSandbox.throttle`)              7 App Call Limited
                                                        (``accesscontrol.limited-by-app-access-count``,
                                                        "This ban will last for 1 more seconds")
``session`` issued, not expired                         26 Missing session / 27 Invalid session
                                                        (sub codes ``invalid-sessionkey``,
                                                        ``session-expired``)
required business parameters                            40 Missing required arguments
window ≤ 1 day, start < end, page_size 1-100, page ≥ 1  41 Invalid arguments
                                                        (``isv.invalid-parameter:<name>``)
business rules (unknown trade, already shipped …)       15 Remote service error + ``isv.*`` sub code
injected outage (:meth:`TmallSandbox.fail`)             15 ``isp.top-remote-connection-timeout``
=====================================================  =========================================

The batch gateway (``/router/batch``, :meth:`TmallSandbox.handle_batch`) checks the system
parameters of its query string as above, with the sign computed over them and the body; then
each call of the body (at most ``BATCH_LIMIT``, else 41 for the whole request) is checked for
its method, the call quota and its session and answered on its own, the answers joined with
the request's separator. An injected outage takes the whole request.

Data is generated from the seed (Chinese buyers and addresses, 1-4 lines from a fixed
catalogue, item and order-level discounts with a platform-subsidised share, postage, buyer
messages, every trade status, refunds in every status with their lines' ``refund_status``);
modified times fall on whole hours and on instants shared by many trades, so that windows and
pages split ties. Assumed where TOP's documentation is silent: ``start_modified`` and
``end_modified`` are both inclusive, and increment.get without ``type`` returns only TOP's
default trade types.

Pushed messages are TMC messages relayed over HTTP, signed as described in
:mod:`erp_connector_tmall.protocol`; :meth:`TmallSandbox.deliver` posts one to a URL and
delivers it again (freshly signed, as TMC redelivers) until the receiver confirms it with a
200 whose JSON ``confirm`` is the message id.

All state sits behind one lock: the app is served by uvicorn in another thread while tests
drive the controls from theirs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from erp_connector_tmall.protocol import (
    API,
    API_VERSION,
    BATCH_LIMIT,
    BATCH_PATH,
    BATCH_PUBLIC,
    BATCH_SEPARATOR,
    BATCH_SEPARATOR_HEADER,
    DEFAULT_TRADE_TYPES,
    HEADER_APP_KEY,
    HEADER_SIGN,
    HEADER_SIGN_METHOD,
    HEADER_TIMESTAMP,
    ORDER_STATUS,
    PUSH_SIGN_METHOD,
    REFUND_STATUS,
    ROUTER_PATH,
    SHANGHAI,
    format_time,
    parse_time,
    response_key,
)
from erp_core.channels.signing import TopSignMethod, constant_time_equals, top_sign
from erp_core.testing.sandbox import AccountSpec, PushRequest, RecordedCall, SalesSandbox

__all__ = ["Delivery", "TmallSandbox"]

CENT = Decimal("0.01")
SKEW = timedelta(minutes=10)
MAX_WINDOW = timedelta(days=1)
MAX_PAGE_SIZE = 100
MAX_SKUS_PER_CALL = 20
ACCESS_TTL = timedelta(days=1)
REFRESH_TTL = timedelta(days=30)
TMC_APP_KEY = "12497914"
OPEN_UID_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789-_"

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉宇浩然子涵欣怡梓轩诗雨"
NICK_WORDS = ("爱吃橘子的猫", "小鱼儿", "晴天", "木子", "阿杰", "糖果屋", "夏天的风", "一只小熊")
#: (receiver_state, receiver_city, receiver_district, receiver_town, street, zip)
PLACES = (
    ("浙江省", "杭州市", "西湖区", "文新街道", "文三路", "310012"),
    ("浙江省", "杭州市", "余杭区", "五常街道", "文一西路", "311121"),
    ("广东省", "深圳市", "南山区", "粤海街道", "科技园南路", "518057"),
    ("广东省", "广州市", "天河区", "石牌街道", "天河路", "510630"),
    ("上海", "上海市", "浦东新区", "陆家嘴街道", "世纪大道", "200120"),
    ("北京", "北京市", "朝阳区", "望京街道", "阜通东大街", "100102"),
    ("四川省", "成都市", "武侯区", "玉林街道", "玉林北路", "610041"),
    ("江苏省", "南京市", "鼓楼区", "湖南路街道", "湖南路", "210009"),
    ("湖北省", "武汉市", "洪山区", "珞南街道", "珞喻路", "430070"),
    ("陕西省", "西安市", "雁塔区", "小寨路街道", "长安中路", "710061"),
    ("辽宁省", "沈阳市", "苏家屯区", "民主街道", "枫杨路", "110101"),
    ("重庆", "重庆市", "渝北区", "龙溪街道", "花卉园东路", "401147"),
)
ESTATES = ("", "", "阳光花园", "金色家园", "翠苑一区", "万科城", "世纪新城")
BUYER_MESSAGES = (
    "",
    "",
    "",
    "请尽快发货，谢谢",  # noqa: RUF001
    "发顺丰可以吗？",  # noqa: RUF001
    "送人的，不要放价格单",  # noqa: RUF001
    "周末不在家，请放快递柜",  # noqa: RUF001
    "颜色要和图片一样的",
)
REFUND_REASONS = (
    "七天无理由退换货",
    "尺码不合适",
    "质量问题",
    "少件/漏发",
    "不想要了",
    "商品与描述不符",
)
COURIERS = ("YTO", "ZTO", "STO", "YUNDA", "SF", "EMS", "JD")
#: The shop's listings: (num_iid, outer_iid, title, price, ((sku_id, outer_sku_id, props), ...)).
#: Items without SKUs carry the merchant code on the item (``outer_iid``).
#: The simulated courier's way (time after the ship-back, TOP action code, text).
_COURIER_STEPS: tuple[tuple[timedelta, str, str], ...] = (
    (timedelta(hours=1), "GOT", "快件已被快递员揽收"),
    (timedelta(hours=4), "DEPARTURE", "快件已从【杭州转运中心】发出，准备发往下一站"),  # noqa: RUF001
    (timedelta(hours=20), "ARRIVAL", "快件已到达【{city}转运中心】"),
    (timedelta(hours=28), "SENT_SCAN", "快件正在派送中，请保持电话畅通"),  # noqa: RUF001
    (timedelta(hours=32), "SIGNED", "快件已签收，签收人：本人"),  # noqa: RUF001
)
#: Courier codes the sandbox knows by name (others are answered as their code).
COURIER_NAMES = {"SF": "顺丰速运", "YTO": "圆通速递", "ZTO": "中通快递", "STO": "申通快递"}

CATALOGUE: tuple[tuple[int, str, str, str, tuple[tuple[int, str, str], ...]], ...] = (
    (
        652001000101,
        "TS-COT",
        "纯棉圆领短袖T恤 男女同款",
        "59.00",
        (
            (4800100001, "TS-COT-WHT-M", "颜色分类:白色;尺码:M"),
            (4800100002, "TS-COT-WHT-L", "颜色分类:白色;尺码:L"),
            (4800100003, "TS-COT-BLK-M", "颜色分类:黑色;尺码:M"),
            (4800100004, "TS-COT-BLK-L", "颜色分类:黑色;尺码:L"),
        ),
    ),
    (
        652001000102,
        "CUP-316",
        "316不锈钢保温杯 500ml",
        "89.00",
        (
            (4800100011, "CUP-316-GRN", "颜色分类:松石绿"),
            (4800100012, "CUP-316-GRY", "颜色分类:月岩灰"),
        ),
    ),
    (652001000103, "EAR-BT-01", "真无线蓝牙耳机 降噪版", "199.00", ()),
    (
        652001000104,
        "BAG-CVS",
        "帆布托特包 大容量",
        "49.90",
        (
            (4800100031, "BAG-CVS-NAT", "颜色分类:米白"),
            (4800100032, "BAG-CVS-BLK", "颜色分类:黑色"),
        ),
    ),
    (652001000105, "TEA-LJ-250", "明前西湖龙井 礼盒装 250g", "268.00", ()),
    (
        652001000106,
        "SCF-WOOL",
        "羊毛围巾 秋冬加厚",
        "129.00",
        (
            (4800100051, "SCF-WOOL-RED", "颜色分类:酒红"),
            (4800100052, "SCF-WOOL-CML", "颜色分类:驼色"),
            (4800100053, "SCF-WOOL-GRY", "颜色分类:烟灰"),
        ),
    ),
    (
        652001000107,
        "SOCK-5P",
        "精梳棉运动袜 5双装",
        "39.90",
        (
            (4800100061, "SOCK-5P-M", "尺码:M(36-40)"),
            (4800100062, "SOCK-5P-L", "尺码:L(40-44)"),
        ),
    ),
)
UNPAID = frozenset(
    {"TRADE_NO_CREATE_PAY", "WAIT_BUYER_PAY", "PAY_PENDING", "WAIT_PRE_AUTH_CONFIRM"}
)
SHIPPED = frozenset(
    {"WAIT_BUYER_CONFIRM_GOODS", "TRADE_BUYER_SIGNED", "TRADE_FINISHED", "SELLER_CONSIGNED_PART"}
)
ENDED = frozenset({"TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"})
SHIPPABLE = frozenset({"WAIT_SELLER_SEND_GOODS", "SELLER_CONSIGNED_PART"})
#: The TMC topic announcing each trade status.
TOPIC_OF_STATUS = {
    "TRADE_NO_CREATE_PAY": "taobao_trade_TradeCreate",
    "WAIT_BUYER_PAY": "taobao_trade_TradeCreate",
    "WAIT_SELLER_SEND_GOODS": "taobao_trade_TradeBuyerPay",
    "SELLER_CONSIGNED_PART": "taobao_trade_TradePartlySellerShip",
    "WAIT_BUYER_CONFIRM_GOODS": "taobao_trade_TradeSellerShip",
    "TRADE_FINISHED": "taobao_trade_TradeSuccess",
    "TRADE_CLOSED": "taobao_trade_TradeClose",
    "TRADE_CLOSED_BY_TAOBAO": "taobao_trade_TradeClose",
}
TRADE_CHANGED = "taobao_trade_TradeChanged"


class _TopError(Exception):
    """An ``error_response`` to answer."""

    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def _missing(name: str) -> _TopError:
    return _TopError(40, f"Missing required arguments:{name}", "isv.missing-parameter", name)


def _invalid(name: str, why: str) -> _TopError:
    return _TopError(41, f"Invalid arguments:{name}", f"isv.invalid-parameter:{name}", why)


def _business(sub_code: str, sub_msg: str) -> _TopError:
    return _TopError(15, "Remote service error", sub_code, sub_msg)


def _yuan(cents: int) -> str:
    return f"{Decimal(cents) / 100:.2f}"


def _ceil_second(when: datetime) -> datetime:
    floor = when.replace(microsecond=0)
    return (floor if floor == when else floor + timedelta(seconds=1)).astimezone(SHANGHAI)


# --- state ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Sku:
    sku_id: int
    outer_id: str
    properties: str
    quantity: int


@dataclass(slots=True)
class _Item:
    num_iid: int
    outer_id: str
    title: str
    price_cents: int
    skus: list[_Sku]
    quantity: int  # items without SKUs

    @property
    def num(self) -> int:
        return sum(s.quantity for s in self.skus) if self.skus else self.quantity


@dataclass(slots=True)
class _Line:
    oid: int
    item: _Item
    sku: _Sku | None
    num: int
    discount: int  # cents, the line's own discount
    adjust: int  # cents, the seller's manual change (negative: cheaper)
    share: int  # cents, share of order-level promotions (part_mjz_discount)
    subsidy: int  # cents, the platform-funded part of ``share``
    status: str
    refund_status: str = "NO_REFUND"
    refund_id: int | None = None
    invoice_no: str = ""
    logistics_company: str = ""
    consign_time: datetime | None = None

    @property
    def gross(self) -> int:
        return self.item.price_cents * self.num

    @property
    def total_fee(self) -> int:
        return self.gross - self.discount + self.adjust

    @property
    def divided(self) -> int:
        return self.total_fee - self.share


@dataclass(slots=True)
class _Trade:
    tid: int
    type: str
    status: str
    buyer_nick: str
    buyer_open_uid: str
    receiver: dict[str, str]
    buyer_message: str
    seller_memo: str
    post_fee: int
    created: datetime
    pay_time: datetime | None
    consign_time: datetime | None
    end_time: datetime | None
    modified: datetime
    lines: list[_Line]

    @property
    def payment(self) -> int:
        return sum(ln.divided for ln in self.lines) + self.post_fee


@dataclass(slots=True)
class _Refund:
    refund_id: int
    trade: _Trade
    line: _Line
    status: str
    refund_fee: int
    reason: str
    has_good_return: bool
    created: datetime
    modified: datetime


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt of :meth:`TmallSandbox.deliver`."""

    message_id: str
    attempt: int
    status: int | None
    confirmed: bool


@dataclass(slots=True)
class _Outage:
    calls: int
    http_status: int | None


# --- the sandbox ----------------------------------------------------------------------------------


class TmallSandbox(SalesSandbox):
    """One Taobao shop behind a local TOP gateway (see the module docstring)."""

    connector: ClassVar[str] = "tmall"
    order_statuses: ClassVar[tuple[str, ...]] = tuple(ORDER_STATUS)
    refund_statuses: ClassVar[tuple[str, ...]] = tuple(REFUND_STATUS)

    def __init__(
        self,
        *,
        seed: int = 0,
        sign_method: str | None = None,
        now: Callable[[], datetime] | None = None,
        trail_pace: float = 1.0,
    ) -> None:
        super().__init__(seed=seed)
        #: How fast the simulated couriers move: 60 makes an hour of a parcel's way pass in
        #: a minute (the demo's setting); 1 is real time.
        self.trail_pace = trail_pace
        ids = random.Random(f"tmall-sandbox-ids:{seed}")
        self.app_key = str(ids.randrange(20_000_000, 35_000_000))
        self.app_secret = "".join(ids.choice("0123456789abcdef") for _ in range(32))
        #: The seller's Taobao user id: TMC messages name it as ``user_id``.
        self.shop_id = str(ids.randrange(2_200_000_000, 2_999_999_999))
        self.seller_nick = "云栖生活旗舰店"
        self.sign_method = sign_method
        self._now = now or (lambda: datetime.now(UTC))
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._items = [
            _Item(
                num_iid=num_iid,
                outer_id=outer,
                title=title,
                price_cents=int(Decimal(price) * 100),
                skus=[_Sku(sid, code, props, 100) for sid, code, props in skus],
                quantity=100,
            )
            for num_iid, outer, title, price, skus in CATALOGUE
        ]
        self._trades: dict[str, _Trade] = {}
        self._refunds: dict[str, _Refund] = {}
        self._shipments: list[dict[str, Any]] = []
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._issued = 0
        self._throttle = 0
        self._outages: list[_Outage] = []
        self._pushed: dict[str, datetime] = {}  # digest of a message we signed -> when
        self._counter = 0  # request ids
        self._trade_count = 0
        self._refund_count = 0
        self._message_count = 0
        self._demo_rng = random.Random(seed + 1)
        self._demo_last: str | None = None
        self._demo_paid: list[str] = []
        self._memo_count = 0
        self._tid_base = 3_000_000_000_000_000 + (seed % 100_000) * 10_000_000_000
        self._refund_base = 150_000_000_000_000 + (seed % 100_000) * 1_000_000_000
        self._access, self._refresh_token = self._issue()
        self._app: Starlette | None = None
        #: Every attempt :meth:`deliver` made, in order.
        self.deliveries: list[Delivery] = []
        #: HTTP requests the gateways received (a batch request of many calls counts once).
        self.requests = 0

    # --- the gateway ------------------------------------------------------------------------------

    @property
    def app(self) -> Callable[..., Any]:
        """The gateway's ASGI app: :meth:`_gateway`, with Starlette's app behind it."""
        if self._app is None:
            self._app = Starlette(
                routes=[Route(ROUTER_PATH, self._endpoint, methods=["GET", "POST"])]
            )
        return self._gateway

    async def _gateway(self, scope: Any, receive: Any, send: Any) -> None:
        """The gateway's usual request, a form POST to the router, answered without
        Starlette's request, form parser, response and middleware (with the same result:
        query string and form decoded alike, the same headers answered). In the order bench
        the in-process sandbox serves every ship-back call, and a real platform bears this
        cost on its own servers; every other request goes to the Starlette app."""
        assert self._app is not None
        if scope["type"] == "http" and scope["path"] in (ROUTER_PATH, BATCH_PATH):
            self.requests += 1
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == BATCH_PATH:
            await self._batch_gateway(scope, receive, send)
            return
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != ROUTER_PATH
            or not any(
                k == b"content-type" and v.startswith(b"application/x-www-form-urlencoded")
                for k, v in scope["headers"]
            )
        ):
            await self._app(scope, receive, send)
            return
        raw = await _body(receive)
        if raw is None:
            return
        # as Starlette decodes them: Latin-1 bytes, then percent-escapes as UTF-8
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        params.update(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        status, body = self.handle(params)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        await _answer(send, status, content, b"application/json;charset=UTF-8")

    async def _batch_gateway(self, scope: Any, receive: Any, send: Any) -> None:
        """A POST to the batch gateway: :meth:`handle_batch` of its query and body."""
        raw = await _body(receive)
        if raw is None:
            return
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        separator = BATCH_SEPARATOR
        for k, v in scope["headers"]:
            if k.decode("latin-1").lower() == BATCH_SEPARATOR_HEADER and v:
                separator = v.decode("utf-8")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = "\ufffd"  # fails the signature check
        status, text = self.handle_batch(params, body, separator=separator)
        await _answer(send, status, text.encode("utf-8"), b"text/plain;charset=UTF-8")

    async def _endpoint(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items()}
        if request.method == "POST" and "form" in request.headers.get("content-type", ""):
            form = await request.form()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        status, body = self.handle(params)
        return Response(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")),
            status_code=status,
            media_type="application/json;charset=UTF-8",
        )

    def handle(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Answer one gateway request: ``(HTTP status, JSON body)``; recorded in ``calls``."""
        with self._lock:
            method = params.get("method", "")
            try:
                status = self._outage()
                if status is not None:
                    self.record(RecordedCall(api=method, params=dict(params), error=str(status)))
                    return status, {}
                handler = self._check(params)
            except _TopError as err:
                return 200, self._refused(method, params, err)
            return 200, self._answer(method, params, handler)

    def handle_batch(
        self, params: Mapping[str, str], body: str, *, separator: str = BATCH_SEPARATOR
    ) -> tuple[int, str]:
        """Answer one request to the batch gateway: ``(HTTP status, body)``, the body being
        each call's JSON answer in turn with ``separator`` between them, or one error when
        the request is refused as a whole; every call is recorded in ``calls``."""
        with self._lock:
            try:
                status = self._outage()
                if status is not None:
                    self.record(RecordedCall(api="batch", params=dict(params), error=str(status)))
                    return status, ""
                self._check_system(params, body)
                if params.get("session"):  # else each call names its own
                    self._check_session(params)
                calls = body.split(separator)
                public: dict[str, str] = {}
                if calls[0].startswith(BATCH_PUBLIC):
                    public = dict(
                        parse_qsl(calls.pop(0)[len(BATCH_PUBLIC) :], keep_blank_values=True)
                    )
                if not calls:
                    raise _missing("batch")
                if len(calls) > BATCH_LIMIT:
                    raise _TopError(
                        41,
                        "Invalid arguments",
                        "isv.invalid-parameter:batch",
                        f"at most {BATCH_LIMIT} calls in one batch",
                    )
            except _TopError as err:
                answer = self._refused("batch", params, err)
                return 200, json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
            answers = []
            for call in calls:
                own = {} if call == "N" else dict(parse_qsl(call, keep_blank_values=True))
                merged = {**params, **public, **own}
                method = merged.get("method", "")
                try:
                    handler = self._check_call(merged)
                except _TopError as err:
                    answer = self._refused(method, merged, err)
                else:
                    answer = self._answer(method, merged, handler)
                answers.append(json.dumps(answer, ensure_ascii=False, separators=(",", ":")))
            return 200, separator.join(answers)

    def _outage(self) -> int | None:
        """Take one request from the injected outage, if any: the HTTP status it answers
        with, or the TOP error it raises; None when there is none."""
        if not self._outages:
            return None
        outage = self._outages[0]
        outage.calls -= 1
        if outage.calls <= 0:
            self._outages.pop(0)
        if outage.http_status is not None:
            return outage.http_status
        raise _TopError(
            15, "Remote service error", "isp.top-remote-connection-timeout", "远程服务调用超时"
        )

    def _request_id(self) -> str:
        self._counter += 1
        return f"{self.seed:x}{self._counter:08x}"

    def _refused(self, method: str, params: Mapping[str, str], err: _TopError) -> dict[str, Any]:
        self.record(RecordedCall(api=method, params=dict(params), error=str(err.code)))
        error: dict[str, Any] = {"code": err.code, "msg": err.msg}
        if err.sub_code:
            error["sub_code"] = err.sub_code
        if err.sub_msg:
            error["sub_msg"] = err.sub_msg
        error["request_id"] = self._request_id()
        return {"error_response": error}

    def _answer(
        self,
        method: str,
        params: Mapping[str, str],
        handler: Callable[[Mapping[str, str]], dict[str, Any]],
    ) -> dict[str, Any]:
        try:
            answer = handler(params)
        except _TopError as err:
            return self._refused(method, params, err)
        self.record(RecordedCall(api=method, params=dict(params)))
        return {response_key(method): {**answer, "request_id": self._request_id()}}

    def _check(self, params: Mapping[str, str]) -> Callable[[Mapping[str, str]], dict[str, Any]]:
        """The gateway's checks, in TOP's order; the method's handler when all pass."""
        handler = self._method(params)
        self._check_system(params)
        self._check_quota()
        self._check_session(params)
        return handler

    def _check_call(
        self, params: Mapping[str, str]
    ) -> Callable[[Mapping[str, str]], dict[str, Any]]:
        """The checks of one call of a batch (its system parameters were checked with the
        request's); the method's handler when all pass."""
        handler = self._method(params)
        self._check_quota()
        self._check_session(params)
        return handler

    def _method(self, params: Mapping[str, str]) -> Callable[[Mapping[str, str]], dict[str, Any]]:
        method = params.get("method", "")
        if not method:
            raise _TopError(21, "Missing method")
        handler = self._handlers().get(method)
        if handler is None:
            raise _TopError(22, "Invalid method")
        return handler

    def _check_system(self, params: Mapping[str, str], body: str = "") -> None:
        """The system parameters: app key, timestamp, version, format and the sign (over the
        parameters and ``body``, for a batch request)."""
        app_key = params.get("app_key", "")
        if not app_key:
            raise _TopError(28, "Missing app key")
        if app_key != self.app_key:
            raise _TopError(29, "Invalid app key")
        stamp = params.get("timestamp", "")
        if not stamp:
            raise _TopError(30, "Missing timestamp")
        try:
            sent_at = parse_time(stamp)
        except ValueError:
            raise _TopError(31, "Invalid timestamp", sub_msg="yyyy-MM-dd HH:mm:ss") from None
        if abs(self._now() - sent_at) > SKEW:
            raise _TopError(31, "Invalid timestamp", sub_msg="时间戳与服务器时间相差超过10分钟")
        if not params.get("v"):
            raise _TopError(32, "Missing version")
        if params["v"] != API_VERSION:
            raise _TopError(34, "Unsupported version")
        if params.get("format", "xml") != "json":
            raise _TopError(23, "Invalid format", sub_msg="the sandbox answers format=json only")
        sign_method = params.get("sign_method") or "md5"
        if sign_method not in ("md5", "hmac", "hmac-sha256"):
            raise _TopError(25, "Invalid signature", sub_msg="unsupported sign_method")
        sent = params.get("sign", "")
        if not sent:
            raise _TopError(24, "Missing signature")
        expected = top_sign(params, self.app_secret, _method(sign_method), body=body)
        if not constant_time_equals(expected, sent):
            raise _TopError(25, "Invalid signature")

    def _check_quota(self) -> None:
        if self._throttle > 0:
            self._throttle -= 1
            raise _TopError(
                7,
                "App Call Limited",
                "accesscontrol.limited-by-app-access-count",
                "This ban will last for 1 more seconds",
            )

    def _check_session(self, params: Mapping[str, str]) -> None:
        if params.get("method") != API.TOKEN_REFRESH:
            session = params.get("session", "")
            if not session:
                raise _TopError(26, "Missing session")
            token = self._tokens.get(session)
            if token is None:
                raise _TopError(27, "Invalid session", "invalid-sessionkey", "SessionKey非法")
            if token.revoked or token.expires_at <= self._now():
                raise _TopError(27, "Invalid session", "session-expired", "SessionKey过期")

    def _handlers(self) -> dict[str, Callable[[Mapping[str, str]], dict[str, Any]]]:
        return {
            API.TRADES_INCREMENT: self._trades_increment,
            API.TRADE_FULLINFO: self._trade_fullinfo,
            API.REFUNDS_RECEIVE: self._refunds_receive,
            API.REFUND_GET: self._refund_get,
            API.OFFLINE_SEND: self._offline_send,
            API.LOGISTICS_TRACE: self._logistics_trace,
            API.ITEM_QUANTITY: self._item_quantity,
            API.SKUS_QUANTITY: self._skus_quantity,
            API.SKUS_CUSTOM: self._skus_custom,
            API.ITEMS_CUSTOM: self._items_custom,
            API.TOKEN_REFRESH: self._token_refresh,
        }

    # --- parameters -------------------------------------------------------------------------------

    @staticmethod
    def _required(params: Mapping[str, str], name: str) -> str:
        value = params.get(name, "")
        if not value:
            raise _missing(name)
        return value

    @staticmethod
    def _int(params: Mapping[str, str], name: str, default: int) -> int:
        value = params.get(name, "")
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise _invalid(name, f"{name} must be a whole number") from None

    def _time(self, params: Mapping[str, str], name: str, *, required: bool) -> datetime | None:
        value = params.get(name, "")
        if not value:
            if required:
                raise _missing(name)
            return None
        try:
            return parse_time(value)
        except ValueError:
            raise _invalid(name, "格式必须为yyyy-MM-dd HH:mm:ss") from None

    def _paging(self, params: Mapping[str, str]) -> tuple[int, int, bool]:
        size = self._int(params, "page_size", 40)
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise _invalid("page_size", f"page_size 必须在1到{MAX_PAGE_SIZE}之间")
        page = self._int(params, "page_no", 1)
        if page < 1:
            raise _invalid("page_no", "page_no 必须大于0")
        return page, size, params.get("use_has_next", "false").lower() == "true"

    @staticmethod
    def _page(
        rows: list[Any],
        render: Callable[[Any], dict[str, Any]],
        page: int,
        size: int,
        use_has_next: bool,
        key: tuple[str, str],
    ) -> dict[str, Any]:
        """The ``page`` of ``rows``; only its rows are rendered (a deep backfill pages through
        tens of thousands of trades)."""
        chunk = [render(row) for row in rows[(page - 1) * size : page * size]]
        answer: dict[str, Any] = {"has_next": page * size < len(rows)}
        if not use_has_next:
            answer["total_results"] = len(rows)
        if chunk:
            answer[key[0]] = {key[1]: chunk}
        return answer

    # --- orders -----------------------------------------------------------------------------------

    def _trades_increment(self, params: Mapping[str, str]) -> dict[str, Any]:
        fields = self._fields(params)
        start = self._time(params, "start_modified", required=True)
        end = self._time(params, "end_modified", required=True)
        assert start is not None and end is not None
        if start >= end:
            raise _invalid("start_modified", "start_modified 必须早于 end_modified")
        if end - start > MAX_WINDOW:
            raise _invalid("end_modified", "end_modified 与 start_modified 的跨度不能超过一天")
        page, size, use_has_next = self._paging(params)
        types = (
            {t for t in params["type"].split(",") if t}
            if params.get("type")
            else set(DEFAULT_TRADE_TYPES)
        )
        status = params.get("status", "")
        rows = sorted(
            (
                t
                for t in self._trades.values()
                if start <= t.modified <= end
                and t.type in types
                and (not status or t.status == status)
            ),
            key=lambda t: (t.modified, t.tid),
            reverse=True,  # newest first, as TOP answers
        )
        return self._page(
            rows,
            lambda t: self._trade_json(t, fields),
            page,
            size,
            use_has_next,
            ("trades", "trade"),
        )

    def _trade_fullinfo(self, params: Mapping[str, str]) -> dict[str, Any]:
        fields = self._fields(params)
        trade = self._trades.get(self._required(params, "tid"))
        if trade is None:
            raise _business("isv.trade-not-exist", "交易不存在")
        return {"trade": self._trade_json(trade, fields)}

    @staticmethod
    def _fields(params: Mapping[str, str]) -> set[str]:
        value = params.get("fields", "")
        if not value:
            raise _missing("fields")
        return {f.strip() for f in value.split(",") if f.strip()}

    def _trade_json(self, trade: _Trade, fields: set[str] | None = None) -> dict[str, Any]:
        """The trade as TOP renders it, limited to ``fields`` (``orders.x`` selects in orders)."""
        single = len(trade.lines) == 1
        full: dict[str, Any] = {
            "tid": trade.tid,
            "tid_str": str(trade.tid),
            "type": trade.type,
            "status": trade.status,
            "seller_nick": self.seller_nick,
            "buyer_nick": trade.buyer_nick,
            "buyer_open_uid": trade.buyer_open_uid,
            "created": format_time(trade.created),
            "modified": format_time(trade.modified),
            "payment": _yuan(trade.payment),
            "total_fee": _yuan(sum(ln.gross for ln in trade.lines)),
            "post_fee": _yuan(trade.post_fee),
            "discount_fee": _yuan(sum(ln.share for ln in trade.lines)),
            "adjust_fee": _yuan(sum(ln.adjust for ln in trade.lines)),
            "platform_subsidy_fee": _yuan(sum(ln.subsidy for ln in trade.lines)),
            "buyer_message": trade.buyer_message,
            "seller_memo": trade.seller_memo,
            **trade.receiver,
            "orders": {"order": [self._line_json(trade, ln, single) for ln in trade.lines]},
        }
        for name, value in (
            ("pay_time", trade.pay_time),
            ("consign_time", trade.consign_time),
            ("end_time", trade.end_time),
        ):
            if value is not None:
                full[name] = format_time(value)
        if fields is None:
            return full
        out = {k: v for k, v in full.items() if k in fields}
        if "orders" not in fields:
            sub = {f.split(".", 1)[1] for f in fields if f.startswith("orders.")}
            if sub:
                out["orders"] = {
                    "order": [
                        {k: v for k, v in o.items() if k in sub} for o in full["orders"]["order"]
                    ]
                }
        return out

    def _line_json(self, trade: _Trade, line: _Line, single: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "oid": line.oid,
            "oid_str": str(line.oid),
            "num_iid": line.item.num_iid,
            "outer_iid": line.item.outer_id,
            "title": line.item.title,
            "price": _yuan(line.item.price_cents),
            "num": line.num,
            "total_fee": _yuan(line.total_fee),
            # TOP's quirk: a one-line trade's line payment is the trade's, postage included.
            "payment": _yuan(trade.payment if single else line.total_fee),
            "discount_fee": _yuan(line.discount),
            "adjust_fee": _yuan(line.adjust),
            "part_mjz_discount": _yuan(line.share),
            "divide_order_fee": _yuan(line.divided),
            "platform_subsidy_fee": _yuan(line.subsidy),
            "status": line.status,
            "refund_status": line.refund_status,
            "seller_type": "B",
        }
        if line.sku is not None:
            out["sku_id"] = str(line.sku.sku_id)
            out["outer_sku_id"] = line.sku.outer_id
            out["sku_properties_name"] = line.sku.properties
        if line.refund_id is not None:
            out["refund_id"] = line.refund_id
        if line.invoice_no:
            out["invoice_no"] = line.invoice_no
            out["logistics_company"] = line.logistics_company
        if line.consign_time is not None:
            out["consign_time"] = format_time(line.consign_time)
        return out

    # --- refunds ----------------------------------------------------------------------------------

    def _refunds_receive(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._fields(params)
        start = self._time(params, "start_modified", required=False)
        end = self._time(params, "end_modified", required=False)
        if start is not None and end is not None and start >= end:
            raise _invalid("start_modified", "start_modified 必须早于 end_modified")
        page, size, use_has_next = self._paging(params)
        rows = sorted(
            (
                r
                for r in self._refunds.values()
                if (start is None or r.modified >= start) and (end is None or r.modified <= end)
            ),
            key=lambda r: (r.modified, r.refund_id),
            reverse=True,
        )
        return self._page(rows, self._refund_json, page, size, use_has_next, ("refunds", "refund"))

    def _refund_get(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._fields(params)
        refund = self._refunds.get(self._required(params, "refund_id"))
        if refund is None:
            raise _business("isv.refund-not-exist", "退款单不存在")
        return {"refund": self._refund_json(refund)}

    def _refund_json(self, refund: _Refund) -> dict[str, Any]:
        line, trade = refund.line, refund.trade
        return {
            "refund_id": refund.refund_id,
            "refund_id_str": str(refund.refund_id),
            "tid": trade.tid,
            "oid": line.oid,
            "title": line.item.title,
            "num": line.num,
            "num_iid": line.item.num_iid,
            "buyer_nick": trade.buyer_nick,
            "seller_nick": self.seller_nick,
            "status": refund.status,
            "order_status": line.status,
            "refund_fee": _yuan(refund.refund_fee),
            "total_fee": _yuan(line.total_fee),
            "payment": _yuan(line.divided),
            "reason": refund.reason,
            "desc": "",
            "has_good_return": refund.has_good_return,
            "good_status": "BUYER_RETURNED_GOODS"
            if refund.status in ("WAIT_SELLER_CONFIRM_GOODS", "SUCCESS") and refund.has_good_return
            else ("BUYER_RECEIVED" if line.invoice_no else "BUYER_NOT_RECEIVED"),
            "refund_phase": "aftersale" if trade.status == "TRADE_FINISHED" else "onsale",
            "created": format_time(refund.created),
            "modified": format_time(refund.modified),
        }

    # --- ship-back -------------------------------------------------------------------------------

    def _offline_send(self, params: Mapping[str, str]) -> dict[str, Any]:
        tid = self._required(params, "tid")
        out_sid = self._required(params, "out_sid")
        company = self._required(params, "company_code")
        trade = self._trades.get(tid)
        if trade is None:
            raise _business("isv.logistics-offline-service-error:B01", "订单不存在")
        if not re.fullmatch(r"[A-Za-z0-9-]{4,64}", out_sid):
            raise _business("isv.logistics-offline-service-error:B60", "运单号不符合规则")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", company):
            raise _invalid("company_code", "物流公司代码不正确")
        already = _business(
            "isv.logistics-offline-service-error:B04",
            "订单状态不对该物流订单已经发货或者已关闭，不能重复发货",  # noqa: RUF001
        )
        if trade.status not in SHIPPABLE:
            raise already
        split = params.get("is_split", "0") == "1"
        if split:
            wanted = [s.strip() for s in params.get("sub_tid", "").split(",") if s.strip()]
            by_oid = {str(ln.oid): ln for ln in trade.lines}
            if not wanted or any(w not in by_oid for w in wanted):
                raise _business("isv.logistics-offline-service-error:P38", "拆单校验未通过")
            lines = [by_oid[w] for w in wanted]
            if any(ln.invoice_no for ln in lines):
                raise already
        else:
            lines = [
                ln for ln in trade.lines if not ln.invoice_no and ln.refund_status != "SUCCESS"
            ]
            if not lines:
                raise already
        now = _ceil_second(self._now())
        for line in lines:
            line.invoice_no, line.logistics_company = out_sid, company
            line.consign_time, line.status = now, "WAIT_BUYER_CONFIRM_GOODS"
        waiting = [ln for ln in trade.lines if not ln.invoice_no and ln.refund_status != "SUCCESS"]
        trade.status = "SELLER_CONSIGNED_PART" if waiting else "WAIT_BUYER_CONFIRM_GOODS"
        trade.consign_time = trade.consign_time or now
        trade.modified = max(trade.modified, now)
        self._shipments.append(
            {
                "order_id": tid,
                # a tuple: once the collector has seen it, a record of plain strings and
                # tuples is no longer walked by its full passes
                "line_ids": tuple(str(ln.oid) for ln in lines) if split else (),
                "tracking_no": out_sid,
                "courier_code": company,
            }
        )
        return {"shipping": {"is_success": True}}

    def _logistics_trace(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The courier's steps of a shipped trade (or of the lines ``sub_tid`` of a split
        one): a simulated courier that collects an hour after the ship-back, leaves, arrives
        in the receiver's city, delivers and gets it signed for in about a day and a half
        (``trail_pace`` times faster). Only steps already past are answered."""
        tid = self._required(params, "tid")
        trade = self._trades.get(tid)
        if trade is None:
            raise _business("isv.logistics-trace-service-error:B01", "订单不存在")
        if params.get("is_split", "0") == "1":
            wanted = [x.strip() for x in params.get("sub_tid", "").split(",") if x.strip()]
            by_oid = {str(ln.oid): ln for ln in trade.lines}
            if not wanted or any(w not in by_oid for w in wanted):
                raise _business("isv.logistics-trace-service-error:P38", "拆单校验未通过")
            lines = [by_oid[w] for w in wanted]
        else:
            lines = [ln for ln in trade.lines if ln.invoice_no]
        shipped = [ln for ln in lines if ln.invoice_no and ln.consign_time is not None]
        if not shipped:
            raise _business("isv.logistics-trace-service-error:B02", "订单未发货")
        first = shipped[0]
        assert first.consign_time is not None
        city = trade.receiver.get("receiver_city", "") or "目的地"
        now = self._now()
        steps = []
        for after, action, text in _COURIER_STEPS:
            at = first.consign_time + after / max(self.trail_pace, 1e-6)
            if at <= now:
                steps.append(
                    {
                        "status_time": format_time(at),
                        "status_desc": text.format(city=city),
                        "action": action,
                    }
                )
        return {
            "tid": int(tid),
            "out_sid": first.invoice_no,
            "company_name": COURIER_NAMES.get(first.logistics_company, first.logistics_company),
            "status": "对方已签收" if steps and steps[-1]["action"] == "SIGNED" else "运输中",
            "trace_list": {"transit_step_info": steps},
        }

    # --- stock ------------------------------------------------------------------------------------

    def _item(self, params: Mapping[str, str]) -> _Item:
        num_iid = self._required(params, "num_iid")
        for item in self._items:
            if str(item.num_iid) == num_iid:
                return item
        raise _business("isv.item-not-exist", "商品不存在")

    @staticmethod
    def _kind(params: Mapping[str, str]) -> int:
        kind = params.get("type", "1") or "1"
        if kind not in ("1", "2"):
            raise _invalid("type", "type 只能为1(全量)或2(增量)")
        return int(kind)

    @staticmethod
    def _apply(current: int, quantity: int, kind: int, name: str) -> int:
        new = quantity if kind == 1 else current + quantity
        if new < 0:
            raise _invalid(name, "库存不能小于0")
        return new

    def _item_json(self, item: _Item, skus: Iterable[_Sku]) -> dict[str, Any]:
        now = format_time(self._now())
        out: dict[str, Any] = {"num_iid": item.num_iid, "num": item.num, "modified": now}
        listed = [{"sku_id": s.sku_id, "quantity": s.quantity, "modified": now} for s in skus]
        if listed:
            out["skus"] = {"sku": listed}
        return out

    def _item_quantity(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        quantity = self._int(params, "quantity", 0)
        if not params.get("quantity"):
            raise _missing("quantity")
        kind = self._kind(params)
        sku_id, outer = params.get("sku_id", ""), params.get("outer_id", "")
        if item.skus:
            sku = next(
                (
                    s
                    for s in item.skus
                    if str(s.sku_id) == sku_id or (outer and s.outer_id == outer)
                ),
                None,
            )
            if sku is None:
                raise _invalid("sku_id", "商品有SKU时必须指定该商品的sku_id")
            sku.quantity = self._apply(sku.quantity, quantity, kind, "quantity")
            return {"item": self._item_json(item, [sku])}
        if sku_id:
            raise _invalid("sku_id", "商品没有SKU")
        item.quantity = self._apply(item.quantity, quantity, kind, "quantity")
        return {"item": self._item_json(item, [])}

    def _skus_quantity(self, params: Mapping[str, str]) -> dict[str, Any]:
        item = self._item(params)
        pairs = self._required(params, "skuid_quantities")
        kind = self._kind(params)
        changes: list[tuple[_Sku, int]] = []
        for pair in (p for p in pairs.split(";") if p):
            sku_id, _, amount = pair.partition(":")
            sku = next((s for s in item.skus if str(s.sku_id) == sku_id.strip()), None)
            if sku is None:
                raise _invalid("skuid_quantities", f"SKU {sku_id} 不属于该商品")
            try:
                changes.append((sku, int(amount)))
            except ValueError:
                raise _invalid("skuid_quantities", "格式必须为 skuId:数量;skuId:数量") from None
        if not changes or len(changes) > MAX_SKUS_PER_CALL:
            raise _invalid("skuid_quantities", f"一次最多{MAX_SKUS_PER_CALL}个SKU")
        new: dict[int, int] = {}
        for sku, qty in changes:  # all or nothing
            new[sku.sku_id] = self._apply(new.get(sku.sku_id, sku.quantity), qty, kind, "quantity")
        for sku, _qty in changes:
            sku.quantity = new[sku.sku_id]
        return {"item": self._item_json(item, [s for s, _ in changes])}

    def _skus_custom(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._fields(params)
        outer = self._required(params, "outer_id")
        found = [
            {
                "sku_id": s.sku_id,
                "num_iid": i.num_iid,
                "outer_id": s.outer_id,
                "quantity": s.quantity,
            }
            for i in self._items
            for s in i.skus
            if s.outer_id == outer
        ]
        return {"skus": {"sku": found}} if found else {}

    def _items_custom(self, params: Mapping[str, str]) -> dict[str, Any]:
        self._fields(params)
        outer = self._required(params, "outer_id")
        found = [
            {"num_iid": i.num_iid, "outer_id": i.outer_id, "num": i.num}
            for i in self._items
            if i.outer_id == outer
        ]
        return {"items": {"item": found}} if found else {}

    # --- tokens -----------------------------------------------------------------------------------

    def _issue(self) -> tuple[str, str]:
        self._issued += 1
        now = self._now()
        digest = hashlib.sha256(
            f"{self.app_secret}:{self.seed}:{self._issued}".encode()
        ).hexdigest()
        access = "6100" + digest[:36]
        refresh = "6101" + digest[36:64] + digest[:8]
        self._tokens[access] = _Token(access, now + ACCESS_TTL)
        self._refresh[refresh] = _Token(refresh, now + REFRESH_TTL)
        return access, refresh

    def _token_refresh(self, params: Mapping[str, str]) -> dict[str, Any]:
        given = self._required(params, "refresh_token")
        token = self._refresh.get(given)
        if token is None or token.expires_at <= self._now():
            raise _invalid("refresh_token", "refresh_token 不存在或已过期")
        self._access, self._refresh_token = self._issue()
        access, refresh = self._tokens[self._access], self._refresh[self._refresh_token]
        result = {
            "access_token": access.value,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TTL.total_seconds()),
            "expire_time": int(access.expires_at.timestamp() * 1000),
            "refresh_token": refresh.value,
            "re_expires_in": int(REFRESH_TTL.total_seconds()),
            "refresh_token_valid_time": int(refresh.expires_at.timestamp() * 1000),
            "taobao_user_id": self.shop_id,
            "taobao_user_nick": self.seller_nick,
        }
        return {"token_result": json.dumps(result, ensure_ascii=False)}

    # --- data generation --------------------------------------------------------------------------

    def _instant(self, start: datetime, end: datetime) -> datetime:
        """A modified time in ``[start, end)``, whole seconds: a third on whole hours (window
        boundaries), a quarter on a few instants shared by many trades (ties across pages),
        the rest anywhere."""
        rng = self._rng
        lo = _ceil_second(start)
        if lo >= end:
            raise ValueError("the range holds no whole second")
        span = math.ceil((end - lo).total_seconds())  # the seconds lo, lo+1 … before end
        r = rng.random()
        if r < 0.33:
            first = lo.replace(minute=0, second=0)
            if first < lo:
                first += timedelta(hours=1)
            hours = [first + timedelta(hours=h) for h in range(span // 3600 + 1)]
            hours = [h for h in hours if h < end]
            if hours:
                return rng.choice(hours)
        if r < 0.58:
            fraction = rng.choice((0, 0.125, 0.25, 0.5, 0.75))
            return lo + timedelta(seconds=int(span * fraction))
        return lo + timedelta(seconds=rng.randrange(span))

    def _next_tid(self) -> int:
        self._trade_count += 1
        return self._tid_base + self._trade_count * 1000

    def _receiver(self) -> dict[str, str]:
        rng = self._rng
        state, city, district, town, street, zip_code = rng.choice(PLACES)
        estate = rng.choice(ESTATES)
        detail = f"{street}{rng.randint(1, 999)}号{estate}"
        room = f"{rng.randint(1, 33)}0{rng.randint(1, 4)}"
        detail += f"{rng.randint(1, 30)}幢{rng.randint(1, 6)}单元{room}室"
        return {
            "receiver_name": rng.choice(SURNAMES) + "".join(rng.sample(GIVEN, rng.randint(1, 2))),
            "receiver_mobile": f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
            "receiver_state": state,
            "receiver_city": city,
            "receiver_district": district,
            "receiver_town": town,
            # TOP sometimes repeats the town at the head of the street address.
            "receiver_address": (town + detail) if rng.random() < 0.3 else detail,
            "receiver_zip": zip_code,
        }

    def _nick(self) -> str:
        rng = self._rng
        r = rng.random()
        if r < 0.4:
            return f"tb{rng.randrange(10**8, 10**9)}"
        if r < 0.7:
            return rng.choice(NICK_WORDS) + str(rng.randint(1, 9999))
        return rng.choice(SURNAMES) + rng.choice(GIVEN) + "_" + str(rng.randint(1980, 2005))

    def _make_trade(
        self, status: str, modified: datetime, *, line_count: int | None = None
    ) -> _Trade:
        rng = self._rng
        tid = self._next_tid()
        count = rng.choices((1, 2, 3, 4), weights=(5, 3, 2, 1))[0]
        if line_count is not None:
            count = min(4, max(1, line_count))
        if status == "SELLER_CONSIGNED_PART":
            count = max(2, count)
        options: list[tuple[_Item, _Sku | None]] = []
        for item in self._items:
            options += [(item, sku) for sku in item.skus] if item.skus else [(item, None)]
        picks = rng.sample(options, count)
        lines: list[_Line] = []
        for n, (item, sku) in enumerate(picks):
            num = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
            gross = item.price_cents * num
            discount = rng.choice((0, 0, 500, gross // 10))
            adjust = rng.choice((0, 0, 0, -200, -500))
            if gross - discount + adjust < 100:
                discount, adjust = 0, 0
            oid = tid if count == 1 else tid + n + 1  # one-line trades share tid and oid
            lines.append(_Line(oid, item, sku, num, discount, adjust, 0, 0, status))
        self._promote(lines)
        created = modified - timedelta(seconds=rng.randrange(2 * 3600, 72 * 3600))
        paid = status not in UNPAID and status != "TRADE_CLOSED_BY_TAOBAO"
        pay_time = created + timedelta(seconds=rng.randrange(60, 1800)) if paid else None
        trade = _Trade(
            tid=tid,
            type={"TRADE_BUYER_SIGNED": "cod", "WAIT_PRE_AUTH_CONFIRM": "pre_auth_type"}.get(
                status, rng.choice(("fixed", "fixed", "fixed", "guarantee_trade", "step"))
            ),
            status=status,
            buyer_nick=self._nick(),
            buyer_open_uid="AAH" + "".join(rng.choice(OPEN_UID_CHARS) for _ in range(21)),
            receiver=self._receiver(),
            buyer_message=rng.choice(BUYER_MESSAGES),
            seller_memo=rng.choice(("", "", "", "", "赠品: 试用装一份")),
            post_fee=rng.choice((0, 0, 0, 600, 800, 1000, 1200)),
            created=created,
            pay_time=pay_time,
            consign_time=None,
            end_time=modified if status in ENDED else None,
            modified=modified,
            lines=lines,
        )
        if status in SHIPPED:
            assert pay_time is not None
            consign = pay_time + (modified - pay_time) / 2
            consign = _ceil_second(consign) if consign.microsecond else consign
            ship = lines[: max(1, len(lines) // 2)] if status == "SELLER_CONSIGNED_PART" else lines
            courier = rng.choice(COURIERS)
            waybill = f"{courier[:2]}{rng.randrange(10**11, 10**12)}"
            for ln in ship:
                ln.invoice_no, ln.logistics_company, ln.consign_time = waybill, courier, consign
                ln.status = (
                    "WAIT_BUYER_CONFIRM_GOODS" if status == "SELLER_CONSIGNED_PART" else status
                )
            for ln in lines[len(ship) :]:
                ln.status = "WAIT_SELLER_SEND_GOODS"
            trade.consign_time = consign
        if status == "TRADE_CLOSED":  # closed after payment: everything was refunded
            for ln in lines:
                ln.refund_status = "SUCCESS"
        self._trades[str(tid)] = trade
        return trade

    def _promote(self, lines: list[_Line]) -> None:
        """An order-level promotion (满减 / coupon) shared over the lines by their amounts,
        sometimes partly paid by the platform (cross-store vouchers)."""
        rng = self._rng
        base = sum(ln.total_fee for ln in lines)
        coupon = 2000 if base >= 19900 else (1000 if base >= 9900 else 0)
        if not coupon or rng.random() < 0.4:
            return
        platform = rng.random() < 0.4
        left = coupon
        for n, ln in enumerate(lines):
            share = left if n == len(lines) - 1 else coupon * ln.total_fee // base
            share = min(share, ln.total_fee - 1)
            ln.share, left = share, left - share
            ln.subsidy = share // 2 if platform else 0

    def _make_refund(self, trade: _Trade, line: _Line, status: str, modified: datetime) -> _Refund:
        rng = self._rng
        self._refund_count += 1
        refund_id = self._refund_base + self._refund_count
        fee = line.divided if rng.random() < 0.7 else max(1, line.divided // 2)
        refund = _Refund(
            refund_id=refund_id,
            trade=trade,
            line=line,
            status=status,
            refund_fee=fee,
            reason=rng.choice(REFUND_REASONS),
            has_good_return=status in ("WAIT_BUYER_RETURN_GOODS", "WAIT_SELLER_CONFIRM_GOODS")
            or (bool(line.invoice_no) and rng.random() < 0.5),
            created=modified - timedelta(seconds=rng.randrange(600, 48 * 3600)),
            modified=modified,
        )
        line.refund_status, line.refund_id = status, refund_id
        self._refunds[str(refund_id)] = refund
        return refund

    # --- SalesSandbox -----------------------------------------------------------------------------

    def generate(self, start: datetime, end: datetime, *, orders: int, refunds: int = 0) -> None:
        with self._lock:
            statuses = list(ORDER_STATUS)
            weighted = ["WAIT_SELLER_SEND_GOODS"] * 6 + ["WAIT_BUYER_CONFIRM_GOODS"] * 4
            weighted += ["TRADE_FINISHED"] * 4 + ["WAIT_BUYER_PAY"] * 2 + statuses
            batch: list[_Trade] = []
            for n in range(orders):
                # Every status appears once the batch is large enough, then mostly the common ones.
                status = statuses[n] if n < len(statuses) else self._rng.choice(weighted)
                batch.append(self._make_trade(status, self._instant(start, end)))
            refund_statuses = list(REFUND_STATUS)
            for n in range(refunds):
                status = (
                    refund_statuses[n]
                    if n < len(refund_statuses)
                    else self._rng.choice(refund_statuses)
                )
                modified = self._instant(start, end)
                candidates = _refundable(batch) or _refundable(self._trades.values())
                if candidates:
                    trade, line = self._rng.choice(candidates)
                else:  # nothing refundable yet: a paid trade to refund
                    trade = self._make_trade("WAIT_SELLER_SEND_GOODS", modified)
                    line = trade.lines[0]
                self._make_refund(trade, line, status, modified)

    def expected_orders(self, start: datetime, end: datetime) -> dict[str, datetime]:
        with self._lock:
            return {k: t.modified for k, t in self._trades.items() if start <= t.modified < end}

    def expected_refunds(self, start: datetime, end: datetime) -> dict[str, datetime]:
        with self._lock:
            return {k: r.modified for k, r in self._refunds.items() if start <= r.modified < end}

    def order_with_status(self, raw_status: str, *, at: datetime, lines: int | None = None) -> str:
        """A trade in ``raw_status`` modified at ``at`` (the next whole second when ``at`` has a
        fraction: TOP knows seconds); ``lines`` fixes its number of lines (1-4)."""
        with self._lock:
            return str(self._make_trade(raw_status, _ceil_second(at), line_count=lines).tid)

    def request_refund(
        self, order_id: str, *, at: datetime, status: str = "WAIT_SELLER_AGREE"
    ) -> str:
        """The buyer asks a refund of the trade's first line (the trade is modified too, as
        TOP does: the line carries the refund status). Returns the refund id."""
        with self._lock:
            trade = self._trades[order_id]
            when = _ceil_second(at)
            refund = self._make_refund(trade, trade.lines[0], status, when)
            trade.modified = max(trade.modified, when)
            return str(refund.refund_id)

    def demo_step(self, hook_url: str) -> int:
        """A few seconds of a busy shop: one to three new paid orders, now and then one with an
        address that does not add up, a second order of the same buyer to the same address
        (to merge), and a refund asked before shipping; every change pushed to ``hook_url``."""
        rng = self._demo_rng
        self.trail_pace = max(self.trail_pace, 120.0)  # a demo's parcel arrives in 16 minutes
        now = _ceil_second(self._now())
        touched: list[str] = []
        with self._lock:
            for _ in range(rng.randint(1, 3)):
                trade = self._make_trade(
                    "WAIT_SELLER_SEND_GOODS", now, line_count=rng.randint(1, 3)
                )
                trade.created = now - timedelta(seconds=rng.randrange(60, 900))
                trade.pay_time = now - timedelta(seconds=rng.randrange(5, 50))
                roll = rng.random()
                if roll < 0.12:  # the buyer picked a city of another province
                    trade.receiver = {**trade.receiver, "receiver_city": "广州市"}
                    trade.receiver["receiver_state"] = "浙江省"
                elif roll < 0.27 and self._demo_last is not None:  # again, same buyer and address
                    last = self._trades[self._demo_last]
                    trade.buyer_nick, trade.buyer_open_uid = last.buyer_nick, last.buyer_open_uid
                    trade.receiver = dict(last.receiver)
                self._demo_last = str(trade.tid)
                self._demo_paid.append(str(trade.tid))
                touched.append(str(trade.tid))
            if self._demo_paid and rng.random() < 0.15:  # a refund before shipping
                tid = rng.choice(self._demo_paid[-20:])
                trade = self._trades[tid]
                if trade.status == "WAIT_SELLER_SEND_GOODS" and trade.lines[0].refund_status in (
                    "",
                    "NO_REFUND",
                ):
                    self._make_refund(trade, trade.lines[0], "WAIT_SELLER_AGREE", now)
                    trade.modified = now
                    touched.append(tid)
        delivered = 0
        for tid in touched:
            if self.deliver(hook_url, self.push(tid)):
                delivered += 1
        return delivered

    def modify(self, order_id: str, *, at: datetime) -> None:
        with self._lock:
            trade = self._trades[order_id]
            self._memo_count += 1
            trade.seller_memo = f"已核对收货地址 #{self._memo_count}"
            trade.modified = _ceil_second(at)

    def push(
        self, order_id: str, *, topic: str = "", signed_at: datetime | None = None
    ) -> PushRequest:
        """A TMC message about the trade (``topic`` "": the topic of its current status, or
        ``taobao_trade_TradeChanged``); a ``taobao_refund_*`` topic speaks of the trade's
        latest refund. ``signed_at`` backdates the signature (stale-message tests)."""
        with self._lock:
            trade = self._trades[order_id]
            if topic.startswith("taobao_refund_"):
                refunds = [r for r in self._refunds.values() if r.trade is trade]
                if not refunds:
                    raise ValueError(f"trade {order_id} has no refund to announce")
                refund = max(refunds, key=lambda r: (r.modified, r.refund_id))
                content: dict[str, Any] = {
                    "refund_id": refund.refund_id,
                    "tid": trade.tid,
                    "oid": refund.line.oid,
                    "refund_fee": _yuan(refund.refund_fee),
                    "refund_phase": "aftersale" if trade.status == "TRADE_FINISHED" else "onsale",
                    "bill_type": "return_bill" if refund.has_good_return else "refund_bill",
                    "buyer_nick": trade.buyer_nick,
                    "seller_nick": self.seller_nick,
                    "modified": format_time(refund.modified),
                }
                happened = refund.modified
            else:
                topic = topic or TOPIC_OF_STATUS.get(trade.status, TRADE_CHANGED)
                content = {
                    "tid": trade.tid,
                    "oid": trade.lines[0].oid,
                    "status": trade.status,
                    "payment": _yuan(trade.payment),
                    "type": trade.type,
                    "buyer_nick": trade.buyer_nick,
                    "seller_nick": self.seller_nick,
                }
                happened = trade.modified
            self._message_count += 1
            message_id = 7_000_000_000 + self.seed % 1000 * 1_000_000 + self._message_count
            message = {
                "topic": topic,
                "id": message_id,
                "pub_app_key": TMC_APP_KEY,
                "user_id": int(self.shop_id),
                "user_nick": self.seller_nick,
                "pub_time": format_time(happened),
                "outgoing_time": format_time(self._now()),
                "content": json.dumps(content, ensure_ascii=False, separators=(",", ":")),
            }
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._pushed[hashlib.sha256(body).hexdigest()] = self._now()
            return PushRequest(
                body=body,
                headers=self._push_headers(body, signed_at or self._now()),
                message_id=str(message_id),
            )

    def _push_headers(self, body: bytes, signed_at: datetime) -> dict[str, str]:
        stamp = str(int(signed_at.timestamp() * 1000))
        text = body.decode("utf-8")
        sign = top_sign(
            {"app_key": self.app_key, "timestamp": stamp, "message": text},
            self.app_secret,
            PUSH_SIGN_METHOD,
        )
        return {
            "content-type": "application/json; charset=utf-8",
            HEADER_APP_KEY: self.app_key,
            HEADER_TIMESTAMP: stamp,
            HEADER_SIGN_METHOD: PUSH_SIGN_METHOD,
            HEADER_SIGN: sign,
        }

    def tamper(self, push: PushRequest) -> PushRequest:
        try:
            message = json.loads(push.body)
            content = json.loads(message["content"])
            content["payment" if "payment" in content else "refund_fee"] = "0.01"
            message["content"] = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (ValueError, KeyError, TypeError):
            body = push.body + b" "
        if body == push.body:
            body += b" "
        return PushRequest(
            body=body,
            headers=dict(push.headers),
            query=dict(push.query),
            message_id=push.message_id,
        )

    def deliver(
        self,
        url: str,
        push: PushRequest,
        *,
        attempts: int = 3,
        interval: float = 0.5,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """POST ``push`` to ``url`` until it is confirmed (TMC semantics); True if it was.

        A message this sandbox signed is signed again for every attempt (TMC redelivers with
        a fresh time); any other body (a tampered one) is sent exactly as given.
        """
        with self._lock:
            ours = hashlib.sha256(push.body).hexdigest() in self._pushed
        for attempt in range(1, attempts + 1):
            with self._lock:
                fresh = self._push_headers(push.body, self._now()) if ours else None
            headers = fresh or dict(push.headers)
            status: int | None = None
            confirmed = False
            try:
                answer = httpx.post(
                    url,
                    content=push.body,
                    headers=headers,
                    params=dict(push.query),
                    timeout=timeout,
                )
                status = answer.status_code
                confirmed = status == 200 and _confirms(answer, push.message_id)
            except httpx.HTTPError:
                pass
            with self._lock:
                self.deliveries.append(Delivery(push.message_id, attempt, status, confirmed))
            if confirmed:
                return True
            if attempt < attempts:
                sleep(interval)
        return False

    def forget(self, before: datetime) -> int:
        with self._lock:
            gone = {tid for tid, t in self._trades.items() if t.modified < before}
            if gone:
                self._trades = {k: t for k, t in self._trades.items() if k not in gone}
                self._refunds = {
                    k: r for k, r in self._refunds.items() if str(r.trade.tid) not in gone
                }
                self._shipments = [s for s in self._shipments if s["order_id"] not in gone]
                self._demo_paid = [t for t in self._demo_paid if t not in gone]
                if self._demo_last in gone:
                    self._demo_last = None
            # a message of a forgotten order is not delivered again (insertion order is time)
            stale = [d for d, at in self._pushed.items() if at < before]
            for digest in stale:
                del self._pushed[digest]
            keep = self.history
            if keep is not None and len(self.deliveries) > keep:
                del self.deliveries[: len(self.deliveries) - keep]
            return len(gone)

    def shipments(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{**s, "line_ids": list(s["line_ids"])} for s in self._shipments]

    def stock(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for item in self._items:
                if item.skus:
                    out.update({s.outer_id: s.quantity for s in item.skus})
                else:
                    out[item.outer_id] = item.quantity
            return out

    def stock_items(self) -> list[tuple[str, str, str]]:
        with self._lock:
            out: list[tuple[str, str, str]] = []
            for item in self._items:
                if item.skus:
                    out += [(s.outer_id, str(item.num_iid), str(s.sku_id)) for s in item.skus]
                else:
                    out.append((item.outer_id, str(item.num_iid), ""))
            return out

    def throttle(self, calls: int) -> None:
        with self._lock:
            self._throttle = max(0, calls)

    def fail(self, calls: int, *, http_status: int | None = None) -> None:
        """The next ``calls`` calls fail transiently: TOP's ``isp.top-remote-connection-timeout``,
        or a bare HTTP ``http_status`` (a 502 from a proxy, say)."""
        with self._lock:
            self._outages.append(_Outage(calls, http_status))

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    def account(self) -> AccountSpec:
        with self._lock:
            # An unserved sandbox points at a host that never resolves (RFC 2606), never at the
            # real gateway.
            config: dict[str, Any] = {
                "base_url": (self.base_url or "http://sandbox.invalid") + ROUTER_PATH
            }
            if self.sign_method:
                config["sign_method"] = self.sign_method
            return AccountSpec(
                shop_id=self.shop_id,
                app_key=self.app_key,
                secrets={"app_secret": self.app_secret},
                config=config,
                access_token=self._access,
                refresh_token=self._refresh_token,
                token_expires_at=self._tokens[self._access].expires_at,
            )

    # --- inspection -------------------------------------------------------------------------------

    def trade_json(self, order_id: str) -> dict[str, Any]:
        """The trade as fullinfo.get renders it with every field (tests and the demo)."""
        with self._lock:
            return self._trade_json(self._trades[order_id])

    def refund_json(self, refund_id: str) -> dict[str, Any]:
        with self._lock:
            return self._refund_json(self._refunds[refund_id])


async def _body(receive: Any) -> bytes | None:
    """An ASGI request's whole body; None when the client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Any, status: int, content: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(content)).encode()),
                (b"content-type", content_type),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def _refundable(trades: Iterable[_Trade]) -> list[tuple[_Trade, _Line]]:
    return [
        (t, ln)
        for t in trades
        if t.pay_time is not None and t.status != "TRADE_CLOSED"
        for ln in t.lines
        if ln.refund_id is None
    ]


def _method(name: str) -> TopSignMethod:
    return "hmac" if name == "hmac" else ("hmac-sha256" if name == "hmac-sha256" else "md5")


def _confirms(answer: httpx.Response, message_id: str) -> bool:
    try:
        data = answer.json()
    except ValueError:
        return False
    return isinstance(data, dict) and str(data.get("confirm")) == message_id
