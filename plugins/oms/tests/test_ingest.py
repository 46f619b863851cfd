"""Orders stored a page at once (``ingest_many``, what the sync's ``erp_channel_orders`` runs)
end exactly as stored one at a time, however the page mixes new orders, later versions and
repeats."""

from __future__ import annotations

import itertools
from dataclasses import replace
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


def test_store_orders_gives_ids_in_page_order_and_makes_no_orm_objects(erp_db, pair):
    one, many = pair
    prefix = f"S{next(_runs)}-"
    page = [
        version(n, 0, status, ["TEA", "NOPE"], False, "文一西路969号")
        for n, status in ((1, 0), (2, 1), (3, 2))
    ]
    page = [replace(o, order_id=prefix + o.order_id) for o in page]
    with erp_db.tenant_session(many) as s:
        ids = svc.store_orders(s, None, "", [page[0], page[1], page[0], page[2]])
        assert ids[0] == ids[2] and len(set(ids)) == 3
        # the new orders went in by Core statements: nothing of them is in the session (the
        # repeat of the first one was brought up to date through its ORM row, as ingest does)
        fresh = {ids[1], ids[3]}
        held = [
            o
            for o in s.identity_map.values()
            if (o.id if isinstance(o, Order) else getattr(o, "order_id", None)) in fresh
        ]
        assert held == []
    with erp_db.tenant_session(many) as s:
        rows = {o.id: o for o in s.scalars(select(Order).where(Order.id.in_(ids)))}
        assert [rows[i].platform_order_id for i in ids] == [
            page[0].order_id,
            page[1].order_id,
            page[0].order_id,
            page[2].order_id,
        ]
        assert {rows[i].tenant_id for i in ids} == {many}
        assert [rows[i].status for i in ids[1:]] == ["cancelled", "new", "shipped"]
        lines = s.scalars(select(OrderLine).where(OrderLine.order_id == ids[0])).all()
        assert {(ln.merchant_sku, ln.sku_id is not None, ln.tenant_id) for ln in lines} == {
            ("TEA", True, many),
            ("NOPE", False, many),
        }
        kinds = [
            (e.order_id, e.kind, e.tenant_id)
            for e in s.scalars(select(Event).where(Event.order_id.in_(ids)).order_by(Event.id))
        ]
        assert kinds == [
            (ids[0], "received", many),
            (ids[1], "received", many),
            (ids[1], "cancelled", many),
            (ids[3], "received", many),
            (ids[3], "shipped", many),
        ]
    with erp_db.tenant_session(one) as s:  # the other tenant sees none of them
        assert s.scalars(select(Order).where(Order.id.in_(ids))).all() == []


def test_a_new_order_is_stored_as_a_later_identical_version_would_leave_it(erp_db, pair):
    """The creation (Core rows) and the update (the ORM row filled again) agree on every
    column: a later version with the same content changes nothing but its version time."""
    _, many = pair
    o = replace(version(7, 0, 0, ["TEA", "CUP"], False, "文三路1号"), order_id=f"V{next(_runs)}")
    o = replace(o, buyer_note="please wrap", seller_memo="vip", shipping_fee=Decimal("8.00"))
    skip = {"platform_modified_at", "updated_at"}
    with erp_db.tenant_session(many) as s:
        (oid,) = svc.store_orders(s, None, "", [o])
    with erp_db.tenant_session(many) as s:
        row = s.get(Order, oid)
        assert row is not None
        first = {c.key: getattr(row, c.key) for c in Order.__table__.columns if c.key not in skip}
    with erp_db.tenant_session(many) as s:
        again = svc.ingest(s, None, "", replace(o, modified_at=o.modified_at + timedelta(hours=1)))
        assert again.id == oid
    with erp_db.tenant_session(many) as s:
        row = s.get(Order, oid)
        assert row is not None
        then = {c.key: getattr(row, c.key) for c in Order.__table__.columns if c.key not in skip}
        assert then == first
        assert row.receiver_name == "李强" and row.address == "文三路1号"
        assert row.goods_total == Decimal("29.70")  # 9.90 x 1 + 9.90 x 2
        assert [e.kind for e in s.scalars(select(Event).where(Event.order_id == oid))] == [
            "received"
        ]
