"""Kernel hooks the OMS implements: orders and refunds from channels, tenant set-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from erp_core.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from erp_core.channels.types import Order, Refund
    from erp_core.inventory.types import StockChange
    from erp_core.tenancy.models import Tenant


@hookimpl
def erp_channel_orders(
    session: Session, tenant_id: int, account_id: int, orders: Sequence[Order]
) -> None:
    """Every new or changed platform order lands in the pool (once per platform order); a
    sync's page is stored with a few statements."""
    from erp_core.channels.models import ChannelAccount
    from erp_oms.service import store_orders

    account = session.get(ChannelAccount, account_id)
    store_orders(session, account_id, account.connector if account else "", orders)


@hookimpl
def erp_channel_refund(session: Session, tenant_id: int, account_id: int, refund: Refund) -> None:
    """A refund stops an unshipped order, or goes to after-sales."""
    from erp_oms.service import on_refund

    on_refund(session, account_id, refund)


@hookimpl
def erp_tenant_plugin_enabled(session: Session, tenant: Tenant, plugin: str) -> None:
    """A tenant starts with settings and review rules a merchant would set up first."""
    if plugin == "oms":
        from erp_oms.setup import seed_defaults

        seed_defaults(session)


@hookimpl
def erp_ledger_source_url(source_type: str, source_id: str) -> str | None:
    if source_type == "oms_order" and source_id.isdigit():
        return f"/oms/orders/{source_id}"
    return None


@hookimpl
def erp_stock_changed(session: Session, tenant_id: int, changes: list[StockChange]) -> None:
    """Mark the SKUs for the next channel stock push (in the transaction of the change)."""
    from erp_oms.stockpush import mark

    mark(session, (c.sku_id for c in changes))


@hookimpl
def erp_demo_tenant(session: Session, tenant: Tenant) -> None:
    """The demo runs by itself: orders are processed and shipped with generated tracking
    numbers, from Hangzhou for the east and Shanghai for everywhere else."""
    from decimal import Decimal

    from sqlalchemy import select

    from erp_core.inventory.models import Warehouse
    from erp_oms.models import CourierRate, WarehouseRoute
    from erp_oms.service import settings_of

    cfg = settings_of(session)
    cfg.auto_process = True
    cfg.auto_ship = True
    routes = {r.warehouse_id for r in session.scalars(select(WarehouseRoute))}
    for wh in session.scalars(select(Warehouse).order_by(Warehouse.id)):
        if wh.id in routes:
            continue
        east = wh.code == "HZ"
        session.add(
            WarehouseRoute(
                warehouse_id=wh.id,
                priority=10 if east else 20,
                regions=["浙江省", "江苏省", "上海市", "安徽省"] if east else [],
            )
        )
    rates = {
        (r.warehouse_id, r.courier_code, r.region) for r in session.scalars(select(CourierRate))
    }
    for wh in session.scalars(select(Warehouse).order_by(Warehouse.id)):
        for courier, region, first, extra in (
            ("ZTO", "*", "6.00", "2.00"),
            ("SF", "浙江省", "8.00", "1.00"),
            ("YTO", "*", "6.50", "1.50"),
        ):
            if (wh.id, courier, region) not in rates:
                session.add(
                    CourierRate(
                        warehouse_id=wh.id,
                        courier_code=courier,
                        region=region,
                        first_kg=Decimal(1),
                        first_cost=Decimal(first),
                        extra_cost_per_kg=Decimal(extra),
                    )
                )
    session.flush()
