"""Orders stored a page at once (``ingest_many``, what the sync's ``erp_channel_orders`` runs)
end exactly as stored one at a time, however the page mixes new orders, later versions and
repeats."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from erp_oms import service as svc
from erp_oms.models import Event, Order, OrderLine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select

from erp_core.channels.types import Address, LineRefundStatus, OrderStatus
from erp_core.channels.types import Order as ChannelOrder
from erp_core.channels.types import OrderLine as ChannelLine
from erp_core.inventory import service as inv

T0 = datetime(2026, 11, 11, tzinfo=UTC)
_runs = itertools.count(1)


@pytest.fixture
def pair(make_tenant: Any, erp_db: Any) -> tuple[int, int]:
    """Two tenants with the same SKUs: one stores one order at a time, the other a page."""
    ids = []
    for name in ("one", "many"):
        t = make_tenant(name, plugins=("oms",))
        with erp_db.tenant_session(t.id) as s:
            for code in ("TEA", "CUP"):
                inv.create_sku(s, code=code, name=code)
        ids.append(t.id)
    return ids[0], ids[1]


STATUSES = (
    (OrderStatus.PAID, "WAIT_SELLER_SEND_GOODS"),
    (OrderStatus.CLOSED, "TRADE_CLOSED"),
    (OrderStatus.SHIPPED, "WAIT_BUYER_CONFIRM_GOODS"),
    (OrderStatus.COMPLETED, "TRADE_FINISHED"),
)


def version(
    n: int, minute: int, status: int, skus: list[str], refund: bool, detail: str
) -> ChannelOrder:
    st_, raw = STATUSES[status]
    asked = LineRefundStatus.REQUESTED if refund else LineRefundStatus.NONE
    lines = tuple(
        ChannelLine(
            line_id=str(k),
            platform_sku_id=f"p{k}",
            merchant_sku=sku,
            title=sku,
            quantity=k + 1,
            unit_price=Decimal("9.90"),
            paid=Decimal("9.90") * (k + 1),
            refund_status=asked if k == 0 else LineRefundStatus.NONE,
        )
        for k, sku in enumerate(skus)
    )
    return ChannelOrder(
        order_id=f"P{n}",
        account="shop",
        status=st_,
        raw_status=raw,
        buyer_id="b",
        buyer_nick="b",
        receiver=Address(
            name="李强",
            phone="13900000000",
            province="浙江省",
            city="杭州市",
            district="余杭区",
            detail=detail,
        ),
        lines=lines,
        total_paid=sum((ln.paid for ln in lines), Decimal(0)),
        created_at=T0,
        modified_at=T0 + timedelta(minutes=minute),
    )


versions = st.lists(
    st.builds(
        version,
        n=st.integers(0, 4),
        minute=st.integers(0, 5),
        status=st.integers(0, len(STATUSES) - 1),
        skus=st.lists(st.sampled_from(("TEA", "CUP", "NOPE")), min_size=1, max_size=3),
        refund=st.booleans(),
        detail=st.sampled_from(("文一西路969号", "文三路1号")),
    ),
    max_size=10,
)


def stored(db: Any, tenant_id: int, prefix: str) -> Any:
    with db.tenant_session(tenant_id) as s:
        orders = {
            o.id: o
            for o in s.scalars(select(Order).where(Order.platform_order_id.startswith(prefix)))
        }
        pid = {i: o.platform_order_id for i, o in orders.items()}
        head = sorted(
            (
                o.platform_order_id,
                o.status,
                o.platform_status,
                o.hold_code,
                o.address_key,
                o.total_paid,
                o.goods_total,
                o.platform_modified_at,
            )
            for o in orders.values()
        )
        lines = sorted(
            (
                pid[ln.order_id],
                ln.line_id,
                ln.merchant_sku,
                ln.sku_id is not None,
                ln.quantity,
                ln.refund_status,
            )
            for ln in s.scalars(select(OrderLine).where(OrderLine.order_id.in_(orders)))
        )
        events = [
            (pid[e.order_id], e.kind, e.message)
            for e in s.scalars(select(Event).where(Event.order_id.in_(orders)).order_by(Event.id))
        ]
        # the timeline of each order, in the order it was written
        timeline = {p: [e[1:] for e in events if e[0] == p] for p in pid.values()}
        return head, lines, timeline


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(before=versions, page=versions)
def test_a_page_is_stored_as_one_order_at_a_time(erp_db, pair, before, page):
    from dataclasses import replace

    prefix = f"R{next(_runs)}-"

    def tagged(items: list[ChannelOrder]) -> list[ChannelOrder]:
        return [replace(o, order_id=prefix + o.order_id) for o in items]

    before, page = tagged(before), tagged(page)
    one, many = pair
    for tid in pair:
        with erp_db.tenant_session(tid) as s:
            for o in before:
                svc.ingest(s, None, "", o)
    with erp_db.tenant_session(one) as s:
        singles = [svc.ingest(s, None, "", o).platform_order_id for o in page]
    with erp_db.tenant_session(many) as s:
        rows = svc.ingest_many(s, None, "", page)
        assert [r.platform_order_id for r in rows] == singles
    assert stored(erp_db, one, prefix) == stored(erp_db, many, prefix)


def test_a_page_of_new_orders_takes_a_few_statements_whatever_its_length(erp_db, pair):
    _, many = pair
    page = [version(n, 0, 0, ["TEA", "CUP", "NOPE"], False, "文一西路969号") for n in range(50)]
    with erp_db.tenant_session(many) as s:
        s.execute(select(Order.id).limit(1))  # the session's first statements are not counted
        seen: list[str] = []

        def count(*args: Any) -> None:
            seen.append(args[2])

        conn = s.connection()
        event.listen(conn, "before_cursor_execute", count)
        svc.ingest_many(s, None, "", page)
        s.flush()
        event.remove(conn, "before_cursor_execute", count)
    # the lookup, the orders, the SKU maps and codes, the lines, the events
    assert len(seen) <= 8, seen
