"""The order pool's tables (prefix ``oms_``).

An **order** is one platform order (or a manual / imported one), stored once per (shop,
platform order id). Its **lines** are matched to kernel SKUs by merchant SKU code. Fulfilment
happens in **parcels**: a parcel ships from one warehouse with one courier and carries parcel
lines that point at order lines, so one order can ship in several parcels (a split) and one
parcel can carry the lines of several orders of the same buyer (a merge). Every change leaves an
**event** on the order's timeline.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, bulk_sentinel, utcnow
from erp_core.db.cache import MasterData

Money = Numeric(18, 2)
Qty = Numeric(18, 4)

#: Order states, in the order an order goes through them.
ORDER_STATES = (
    "new",  # stored, not reviewed yet
    "held",  # an exception for a person: see hold_reason
    "reviewed",  # passed the review, waiting for routing
    "routed",  # parcels planned (warehouse and courier chosen)
    "reserved",  # stock reserved for every parcel
    "shipped",  # every parcel has left with a tracking number
    "completed",  # the platform says the buyer received it
    "cancelled",  # closed before shipping (refund, platform closed it, merged away)
)
#: States in which the order has not left the warehouse (refunds intercept it).
OPEN_STATES = frozenset({"new", "held", "reviewed", "routed", "reserved"})
PARCEL_STATES = ("planned", "reserved", "shipped", "cancelled")
WRITEBACK_STATES = ("none", "pending", "done", "failed")


class Order(TenantScoped, Base):
    __tablename__ = "oms_order"
    __tenant_index__ = False  # the platform key and the status and buyer indexes start with it
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel_account_id", "platform_order_id"),
        Index("ix_oms_order_tenant_status_id", "tenant_id", "status", "id"),
        # review's duplicate suspicion: the open orders of a page's buyers
        Index("ix_oms_order_tenant_buyer", "tenant_id", "buyer_key", "status"),
        Index(
            "ix_oms_order_merged_into",
            "merged_into_id",
            postgresql_where=text("merged_into_id IS NOT NULL"),
            sqlite_where=text("merged_into_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: lets SQLite take many new rows in one INSERT (see erp_core.db.base.bulk_sentinel)
    insert_sentinel: Mapped[int | None] = bulk_sentinel()
    #: The shop (channel account) it came from; None for manual and imported orders.
    channel_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_channel_account.id")
    )
    connector: Mapped[str] = mapped_column(String(40), nullable=False, default="")
    #: The platform's order id, or the number a manual / imported order was given.
    platform_order_id: Mapped[str] = mapped_column(String(128), nullable=False)
    source: Mapped[str] = mapped_column(String(16), nullable=False, default="channel")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="new")
    #: The platform's view: normalized status, raw status, version (modified time).
    platform_status: Mapped[str] = mapped_column(String(24), nullable=False, default="")
    raw_status: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    platform_modified_at: Mapped[datetime | None] = mapped_column(nullable=True)
    hold_reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    #: ``hold_reason`` as a translatable message (msgid and parameters), so that each person
    #: reads it in their language; None for a reason typed by a person.
    hold_detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    hold_code: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    buyer_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    buyer_nick: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    #: Normalized buyer and address keys: merge candidates and duplicate suspicion.
    buyer_key: Mapped[str] = mapped_column(String(160), nullable=False, default="")
    address_key: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    receiver_name: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    receiver_phone: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    province: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    city: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    district: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    address: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    postcode: Mapped[str] = mapped_column(String(16), nullable=False, default="")
    buyer_note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    seller_memo: Mapped[str] = mapped_column(Text, nullable=False, default="")
    currency: Mapped[str] = mapped_column(String(3), nullable=False, default="CNY")
    goods_total: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    shipping_fee: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    platform_discount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    merchant_discount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    total_paid: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    ordered_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(nullable=True)
    shipped_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: Set when the order was merged into another one (it then ships in that order's parcels).
    merged_into_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("oms_order.id"))
    #: The refund that stopped the order before shipping, if any.
    refund_state: Mapped[str] = mapped_column(String(24), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


class OrderLine(TenantScoped, Base):
    __tablename__ = "oms_order_line"
    __tenant_index__ = False  # the unique constraint and the unmapped index start with it
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "line_id"),
        Index("ix_oms_order_line_order", "order_id"),
        Index("ix_oms_order_line_unmapped", "tenant_id", "merchant_sku", "sku_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: lets SQLite take many new rows in one INSERT (see erp_core.db.base.bulk_sentinel)
    insert_sentinel: Mapped[int | None] = bulk_sentinel()
    order_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("oms_order.id", ondelete="CASCADE"), nullable=False
    )
    #: The platform's line (sub-order) id.
    line_id: Mapped[str] = mapped_column(String(128), nullable=False)
    platform_sku_id: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    merchant_sku: Mapped[str] = mapped_column(String(128), nullable=False, default="")
    #: The kernel SKU it is matched to by merchant SKU code; None: "SKU not mapped".
    sku_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_sku.id"))
    title: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    quantity: Mapped[Decimal] = mapped_column(Qty, nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    platform_discount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    merchant_discount: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    paid: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    refund_status: Mapped[str] = mapped_column(String(24), nullable=False, default="none")


class Parcel(TenantScoped, Base):
    """What leaves one warehouse with one courier and one tracking number."""

    __tablename__ = "oms_parcel"
    __tenant_index__ = False  # the state, write-back and trail indexes start with it
    __table_args__ = (
        Index("ix_oms_parcel_tenant_state", "tenant_id", "state", "id"),
        Index("ix_oms_parcel_writeback", "tenant_id", "writeback", "id"),
        Index("ix_oms_parcel_order", "order_id"),
        Index("ix_oms_parcel_trail", "tenant_id", "state", "delivered_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: lets SQLite take many new rows in one INSERT (see erp_core.db.base.bulk_sentinel)
    insert_sentinel: Mapped[int | None] = bulk_sentinel()
    #: The order it was planned for (a merged parcel: the order the others merged into).
    order_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("oms_order.id", ondelete="CASCADE"), nullable=False
    )
    warehouse_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_warehouse.id"), nullable=False)
    courier_code: Mapped[str] = mapped_column(String(32), nullable=False, default="")
    tracking_no: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="planned")
    weight_kg: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal(0))
    shipping_cost: Mapped[Decimal | None] = mapped_column(Money, nullable=True)
    #: Write-back of the tracking number to the platform: none (manual order), pending,
    #: done, failed (retried; ``writeback_error`` says why).
    writeback: Mapped[str] = mapped_column(String(16), nullable=False, default="none")
    writeback_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    writeback_error: Mapped[str] = mapped_column(Text, nullable=False, default="")
    writeback_next_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    shipped_at: Mapped[datetime | None] = mapped_column(nullable=True)
    written_back_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: The courier's trail as the platform last told it, oldest step first: items
    #: ``{"at": ISO time, "text": the courier's words, "action": collected | in_transit |
    #: out_for_delivery | delivered | problem | ""}``.
    trail: Mapped[list[dict[str, str]]] = mapped_column(JSON, nullable=False, default=list)
    trail_courier: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    trail_checked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    #: When the trail said "delivered" (then it is no longer asked for).
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ParcelLine(TenantScoped, Base):
    __tablename__ = "oms_parcel_line"
    __table_args__ = (
        Index("ix_oms_parcel_line_parcel", "parcel_id"),
        Index("ix_oms_parcel_line_order_line", "order_line_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: lets SQLite take many new rows in one INSERT (see erp_core.db.base.bulk_sentinel)
    insert_sentinel: Mapped[int | None] = bulk_sentinel()
    parcel_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("oms_parcel.id", ondelete="CASCADE"), nullable=False
    )
    order_line_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("oms_order_line.id", ondelete="CASCADE"), nullable=False
    )
    quantity: Mapped[Decimal] = mapped_column(Qty, nullable=False)
    #: The kernel stock moves reserving it (one per quant used), as a list of ids.
    move_ids: Mapped[list[int]] = mapped_column(JSON, nullable=False, default=list)


class Event(TenantScoped, Base):
    """One entry of an order's timeline."""

    __tablename__ = "oms_event"
    __table_args__ = (Index("ix_oms_event_order", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: lets SQLite take many new rows in one INSERT (see erp_core.db.base.bulk_sentinel)
    insert_sentinel: Mapped[int | None] = bulk_sentinel()
    order_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("oms_order.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    actor: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


class ReviewRule(MasterData, TenantScoped, Base):
    """One automatic review rule of the tenant, evaluated in ``position`` order."""

    __tablename__ = "oms_review_rule"
    __table_args__ = (Index("ix_oms_review_rule_tenant_pos", "tenant_id", "position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    position: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    action: Mapped[str] = mapped_column(String(8), nullable=False, default="hold")
    reason: Mapped[str] = mapped_column(String(400), nullable=False, default="")
    tag: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Blacklist(MasterData, TenantScoped, Base):
    __tablename__ = "oms_blacklist"
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # buyer, phone, address
    value: Mapped[str] = mapped_column(String(400), nullable=False)
    note: Mapped[str] = mapped_column(String(400), nullable=False, default="")


class WarehouseRoute(MasterData, TenantScoped, Base):
    """How a warehouse takes part in routing: priority and the provinces it serves."""

    __tablename__ = "oms_warehouse_route"
    __table_args__ = (UniqueConstraint("tenant_id", "warehouse_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    warehouse_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_warehouse.id"), nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=100)
    #: Province names it delivers to; empty: everywhere.
    regions: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class CourierRate(MasterData, TenantScoped, Base):
    """What a courier charges from a warehouse to a province ("*": anywhere)."""

    __tablename__ = "oms_courier_rate"
    __table_args__ = (UniqueConstraint("tenant_id", "warehouse_id", "courier_code", "region"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    warehouse_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_warehouse.id"), nullable=False)
    courier_code: Mapped[str] = mapped_column(String(32), nullable=False)
    region: Mapped[str] = mapped_column(String(64), nullable=False, default="*")
    first_kg: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal(1))
    first_cost: Mapped[Decimal] = mapped_column(Money, nullable=False)
    extra_cost_per_kg: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class SkuMap(MasterData, TenantScoped, Base):
    """A merchant SKU code that is not the kernel SKU's code (or differs per shop)."""

    __tablename__ = "oms_sku_map"
    __table_args__ = (UniqueConstraint("tenant_id", "channel_account_id", "merchant_sku"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: None: for every shop.
    channel_account_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("core_channel_account.id")
    )
    merchant_sku: Mapped[str] = mapped_column(String(128), nullable=False)
    sku_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_sku.id"), nullable=False)


class SkuProfile(MasterData, TenantScoped, Base):
    """What the OMS needs to know about a SKU beyond the kernel's: its shipping weight."""

    __tablename__ = "oms_sku_profile"
    __table_args__ = (UniqueConstraint("tenant_id", "sku_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_sku.id"), nullable=False)
    weight_kg: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal("0.5"))


class Allocation(TenantScoped, Base):
    """How much of a SKU's available stock a shop may sell (channel stock push)."""

    __tablename__ = "oms_allocation"
    __table_args__ = (UniqueConstraint("tenant_id", "channel_account_id", "sku_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel_account_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_channel_account.id"), nullable=False
    )
    #: None: the shop's default for every SKU.
    sku_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_sku.id"))
    mode: Mapped[str] = mapped_column(String(12), nullable=False, default="percent")
    value: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal(100))
    #: Units held back from every push (safety buffer).
    buffer: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal(0))


class Setting(MasterData, TenantScoped, Base):
    """The tenant's OMS settings (one row)."""

    __tablename__ = "oms_setting"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    auto_process: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    routing_strategy: Mapped[str] = mapped_column(String(40), nullable=False, default="priority")
    #: When no single warehouse can serve an order: split it (True) or hold it.
    allow_split: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    merge_orders: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    #: Ship automatically after reservation with a generated tracking number (demo, and
    #: merchants whose warehouse system reports shipments itself): off by default.
    auto_ship: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    default_weight_kg: Mapped[Decimal] = mapped_column(Qty, nullable=False, default=Decimal("0.5"))


class StockDirty(TenantScoped, Base):
    """A SKU whose sellable stock changed since the shops were last told (the stock hook marks
    it in the transaction of the change; the push task clears it after pushing)."""

    __tablename__ = "oms_stock_dirty"
    __tenant_index__ = False  # the unique constraint starts with it
    __table_args__ = (UniqueConstraint("tenant_id", "sku_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_sku.id"), nullable=False)
    marked_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
