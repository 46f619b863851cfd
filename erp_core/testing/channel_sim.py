"""An in-memory marketplace for the sync engine's tests (test-only).

:class:`PlatformSim` holds orders and refunds reproducibly generated from a seed, with modified
times that fall on window boundaries and share instants (ties across page boundaries), and
answers incremental queries the way Taobao's ``taobao.trades.sold.increment.get`` does: the
window must be no longer than the connector's ``max_window`` and is half-open, results are
sorted by modified time **newest first**, and the connector pages from the last page backwards
(so that rows modified during the fetch cannot push an unread row off a page). It throttles or
crashes on demand and records every call.

Tests route a connector to it without editing the connector::

    sim = PlatformSim(seed=1, start=T0, end=T0 + timedelta(days=2), orders=80)
    channel_sim.register("shop-1", sim)
    monkeypatch.setattr(BetaChannel, "fetch_orders", channel_sim.fetch_orders)
    monkeypatch.setattr(BetaChannel, "fetch_refunds", channel_sim.fetch_refunds)
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelRejected,
    ChannelThrottled,
    Cursor,
    Page,
    SalesChannel,
)
from erp_core.channels.types import (
    Address,
    Order,
    OrderLine,
    OrderStatus,
    Refund,
    RefundStatus,
)

Kind = Literal["orders", "refunds"]
T = TypeVar("T", Order, Refund)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛")
PLACES = (
    ("浙江省", "杭州市", "西湖区"),
    ("广东省", "深圳市", "南山区"),
    ("上海市", "上海市", "浦东新区"),
    ("北京市", "北京市", "朝阳区"),
    ("四川省", "成都市", "武侯区"),
    ("江苏省", "南京市", "鼓楼区"),
)
STATUSES = (
    (OrderStatus.PAID, "WAIT_SELLER_SEND_GOODS"),
    (OrderStatus.SHIPPED, "WAIT_BUYER_CONFIRM_GOODS"),
    (OrderStatus.COMPLETED, "TRADE_FINISHED"),
    (OrderStatus.PENDING_PAYMENT, "WAIT_BUYER_PAY"),
    (OrderStatus.CLOSED, "TRADE_CLOSED"),
)
REFUND_STATUSES = (
    (RefundStatus.REQUESTED, "WAIT_SELLER_AGREE"),
    (RefundStatus.WAITING_RETURN, "WAIT_BUYER_RETURN_GOODS"),
    (RefundStatus.RETURNED, "WAIT_SELLER_CONFIRM_GOODS"),
    (RefundStatus.REFUSED, "SELLER_REFUSE_BUYER"),
    (RefundStatus.REFUNDED, "SUCCESS"),
    (RefundStatus.CLOSED, "CLOSED"),
)


class SimCrash(RuntimeError):
    """Raised by the simulator on demand (a lost connection, a killed worker)."""


@dataclass
class PlatformSim:
    """One shop's orders and refunds at an imaginary platform."""

    seed: int = 0
    start: datetime | None = None
    end: datetime | None = None
    orders: int = 50
    refunds: int = 10
    #: Items per page; None: the connector's ``page_size``.
    page_size: int | None = None
    #: Repeat the last item of the previous page at the top of each page (platforms do).
    repeat_items: bool = False
    calls: list[tuple[str, datetime, datetime, str]] = field(default_factory=list)
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    _throttle: int = 0
    _retry_after: float | None = 0.0
    _crash_in: int | None = None
    _auth_fail: bool = False
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.start is None or self.end is None:
            raise ValueError("PlatformSim needs start and end (aware datetimes)")
        self._rng = random.Random(self.seed)
        self.data = {"orders": {}, "refunds": {}}
        span = self.end - self.start
        for i in range(self.orders):
            self.put(self._order(i, self._when(span)))
        ids = sorted(self.data["orders"])
        for i in range(min(self.refunds, len(ids))):
            self.put(self._refund(i, ids[i], self._when(span)))

    # --- data ------------------------------------------------------------------------------

    def _when(self, span: timedelta) -> datetime:
        """Modified times: a third on whole hours (window boundaries), a third on a few shared
        instants (ties that straddle pages), the rest anywhere (to the second)."""
        assert self.start is not None
        r = self._rng.random()
        hours = int(span.total_seconds() // 3600)
        if r < 0.33 and hours > 0:
            return self.start + timedelta(hours=self._rng.randrange(hours))
        if r < 0.66:
            return self.start + span * self._rng.choice((0.125, 0.25, 0.5, 0.75))
        return self.start + timedelta(seconds=self._rng.randrange(int(span.total_seconds())))

    def _order(self, i: int, modified: datetime) -> Order:
        rng = self._rng
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(("", *GIVEN))
        province, city, district = rng.choice(PLACES)
        lines = []
        for n in range(rng.randint(1, 3)):
            qty = rng.randint(1, 4)
            price = Decimal(rng.randint(990, 29900)) / 100
            discount = Decimal(rng.choice((0, 0, 500, 1000))) / 100
            discount = min(discount, price * qty)
            lines.append(
                OrderLine(
                    line_id=f"{i}-{n}",
                    platform_sku_id=f"sku{rng.randint(1000, 9999)}",
                    merchant_sku=f"M-{rng.randint(1, 40):03d}",
                    title=rng.choice(("纯棉T恤", "保温杯", "蓝牙耳机", "帆布包", "茶叶礼盒")),
                    quantity=qty,
                    unit_price=price,
                    platform_discount=discount,
                    paid=price * qty - discount,
                )
            )
        status, raw = rng.choice(STATUSES)
        return Order(
            order_id=f"T{self.seed}{i:06d}",
            account="sim-shop",
            status=status,
            raw_status=raw,
            buyer_id=f"b{rng.randint(1, 10**8)}",
            buyer_nick=name,
            receiver=Address(
                name=name,
                phone=f"13{rng.randint(100000000, 999999999)}",
                province=province,
                city=city,
                district=district,
                detail=f"文三路{rng.randint(1, 999)}号",
            ),
            lines=tuple(lines),
            total_paid=sum((line.paid for line in lines), Decimal(0)),
            created_at=modified - timedelta(minutes=rng.randint(0, 600)),
            modified_at=modified,
        )

    def _refund(self, i: int, order_id: str, modified: datetime) -> Refund:
        status, raw = self._rng.choice(REFUND_STATUSES)
        return Refund(
            refund_id=f"R{self.seed}{i:06d}",
            order_id=order_id,
            amount=Decimal(self._rng.randint(100, 9900)) / 100,
            reason=self._rng.choice(("七天无理由", "尺码不合适", "质量问题")),
            status=status,
            raw_status=raw,
            created_at=modified - timedelta(hours=1),
            modified_at=modified,
        )

    def put(self, item: Order | Refund) -> None:
        if isinstance(item, Order):
            self.data["orders"][item.order_id] = item
        else:
            self.data["refunds"][item.refund_id] = item

    def touch(self, kind: Kind, platform_id: str, modified_at: datetime, memo: str) -> Any:
        """A new version of an object: changed content and modified time."""
        old = self.data[kind][platform_id]
        if kind == "orders":
            new = dataclasses.replace(old, seller_memo=memo, modified_at=modified_at)
        else:
            new = dataclasses.replace(old, reason=memo, modified_at=modified_at)
        self.put(new)
        return new

    def expected(self, kind: Kind, start: datetime, end: datetime) -> dict[str, Any]:
        """What a sync of ``[start, end)`` must deliver: platform id -> current version."""
        return {k: v for k, v in self.data[kind].items() if start <= v.modified_at < end}

    # --- faults ----------------------------------------------------------------------------

    def throttle(self, calls: int, retry_after: float | None = 0.0) -> None:
        """The next ``calls`` calls answer "throttled"."""
        self._throttle = calls
        self._retry_after = retry_after

    def crash_on_call(self, n: int | None) -> None:
        """The ``n``-th call from now raises :class:`SimCrash` (None: never)."""
        self._crash_in = n

    def refuse_auth(self, on: bool = True) -> None:
        self._auth_fail = on

    # --- the API ---------------------------------------------------------------------------

    def fetch(
        self, kind: Kind, cursor: Cursor, *, page_size: int, max_window: timedelta
    ) -> Page[Any]:
        w = cursor.window
        self.calls.append((kind, w.start, w.end, cursor.token))
        if self._crash_in is not None:
            self._crash_in -= 1
            if self._crash_in <= 0:
                self._crash_in = None
                raise SimCrash("connection reset by the simulator")
        if self._auth_fail:
            raise ChannelAuthError("invalid session (code 27)")
        if self._throttle > 0:
            self._throttle -= 1
            raise ChannelThrottled("accesscontrol.limited-by-api-access-count", self._retry_after)
        if w.length > max_window:
            raise ChannelRejected(f"window longer than {max_window}", code="isv.invalid-parameter")
        size = self.page_size or page_size
        rows = sorted(
            (v for v in self.data[kind].values() if w.start <= v.modified_at < w.end),
            key=lambda v: (v.modified_at, _pid(v)),
            reverse=True,  # newest first
        )
        last = max(1, -(-len(rows) // size))
        page_no = int(cursor.token) if cursor.token else last  # from the last page backwards
        if not 1 <= page_no <= last:
            raise ChannelRejected(f"page {page_no} out of range", code="isv.invalid-parameter")
        items = rows[(page_no - 1) * size : page_no * size]
        if self.repeat_items and page_no < last:
            items = [*items, rows[page_no * size]]
        nxt = None if page_no == 1 else Cursor(window=w, token=str(page_no - 1))
        return Page(items=tuple(items), next=nxt)


def _pid(item: Order | Refund) -> str:
    return item.order_id if isinstance(item, Order) else item.refund_id


# --- routing a connector to a simulator ----------------------------------------------------------

_SIMS: dict[str, PlatformSim] = {}


def register(shop_id: str, sim: PlatformSim) -> None:
    _SIMS[shop_id] = sim


def clear() -> None:
    _SIMS.clear()


def _sim_of(channel: SalesChannel) -> PlatformSim:
    try:
        return _SIMS[channel.context.shop_id]
    except KeyError:
        raise ChannelRejected(f"no simulated shop {channel.context.shop_id!r}") from None


def fetch_orders(self: SalesChannel, cursor: Cursor) -> Page[Order]:
    """Patch onto a connector class: its orders come from the shop's simulator."""
    return _sim_of(self).fetch(
        "orders", cursor, page_size=type(self).page_size, max_window=type(self).max_window
    )


def fetch_refunds(self: SalesChannel, cursor: Cursor) -> Page[Refund]:
    return _sim_of(self).fetch(
        "refunds", cursor, page_size=type(self).page_size, max_window=type(self).max_window
    )
