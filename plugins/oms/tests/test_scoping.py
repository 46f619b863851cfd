"""Queries scoped by a driving table alone (``_through_parcels``) still see one tenant only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from erp_oms import service as svc
from erp_oms.models import Parcel, WarehouseRoute
from sqlalchemy import event, select

from erp_core.channels.types import Address, OrderLine, OrderStatus
from erp_core.channels.types import Order as ChannelOrder
from erp_core.inventory import service as inv
from erp_core.inventory.models import Sku


def _shop(make_tenant: Any, db: Any, name: str, sku: str) -> tuple[int, int]:
    """A tenant with one SKU in stock and one order reserved: (tenant id, parcel id)."""
    t = make_tenant(name, plugins=("oms",))
    with db.tenant_session(t.id) as s:
        wh = inv.create_warehouse(s, code="W", name="仓")
        inv.create_sku(s, code=sku, name=sku)
        inv.receive(s, sku, 5, warehouse=wh, unit_cost=Decimal("1.00"))
        s.add(WarehouseRoute(warehouse_id=wh.id, priority=10, regions=[]))
    order = ChannelOrder(
        order_id=f"{name}-1",
        account="manual",
        status=OrderStatus.PAID,
        raw_status="PAID",
        buyer_id="b",
        buyer_nick="b",
        receiver=Address(
            name="李强",
            phone="13900000000",
            province="浙江省",
            city="杭州市",
            district="余杭区",
            detail="文一西路969号",
        ),
        lines=(
            OrderLine(
                line_id="1",
                platform_sku_id="p",
                merchant_sku=sku,
                title=sku,
                quantity=1,
                unit_price=Decimal("5.00"),
                paid=Decimal("5.00"),
            ),
        ),
        total_paid=Decimal("5.00"),
        created_at=svc.utcnow(),
        modified_at=svc.utcnow(),
    )
    with db.tenant_session(t.id) as s:
        row = svc.ingest(s, None, "", order)
        assert svc.process(s, order_ids=[row.id]).reserved == 1
        (parcel,) = s.scalars(select(Parcel).where(Parcel.order_id == row.id))
        return t.id, parcel.id


def test_a_join_scoped_by_its_parcels_sees_only_the_tenants_own(make_tenant, erp_db):
    a, pa = _shop(make_tenant, erp_db, "acme", "TEA")
    b, pb = _shop(make_tenant, erp_db, "beta", "CUP")
    for tid, own, other, code in ((a, pa, pb, "TEA"), (b, pb, pa, "CUP")):
        with erp_db.tenant_session(tid) as s:
            sku = s.scalar(select(Sku.id).where(Sku.code == code))
            assert svc._parcel_sku_ids(s, Parcel.id.in_([own, other])) == [sku]
            assert svc._parcel_sku_ids(s, Parcel.id == other) == []


def test_duplicate_suspicion_looks_up_the_buyers_not_every_open_order(make_tenant, erp_db):
    """Review asks for the open orders of the page's buyers. A shop with thousands of orders
    waiting must not have them all read for each page: the query goes through the buyer
    index (SQLite's planner, given the hints that ``upgrade`` writes)."""
    if erp_db.is_postgres:
        pytest.skip("SQLite's planner; PostgreSQL keeps statistics of its own")
    t = make_tenant("acme", plugins=("oms",))
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    event.listen(erp_db.engine, "before_cursor_execute", grab)
    try:
        with erp_db.tenant_session(t.id) as s:
            s.execute(svc._OPEN_ORDERS_OF_BUYERS, {"ids": ["b1", "b2"]}).all()
    finally:
        event.remove(erp_db.engine, "before_cursor_execute", grab)
    (statement, params) = [x for x in seen if "buyer_key IN" in x[0]][-1]
    with erp_db.engine.connect() as conn:
        plan = " ".join(
            r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
        )
    assert "ix_oms_order_tenant_buyer" in plan and "buyer_key=?" in plan, plan
