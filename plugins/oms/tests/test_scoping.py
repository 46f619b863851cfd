"""Queries scoped by a driving table alone (``_through_parcels``) still see one tenant only."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from erp_oms import service as svc
from erp_oms.models import Parcel, WarehouseRoute
from sqlalchemy import select

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
