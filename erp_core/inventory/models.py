"""Inventory tables (prefix ``inv_``). Only :mod:`erp_core.inventory.service` writes them.

- ``inv_sku``: what is stocked; ``tracking`` none / lot / serial, ``decimals`` of its unit.
- ``inv_warehouse`` and ``inv_location``: a tree per warehouse (root view location, ``STOCK``,
  zones, shelves, bins) plus the tenant's virtual locations (supplier, customer, adjustment,
  scrap, transit), whose paths start with ``@``.
- ``inv_lot``: lots (with expiry) and serial numbers (lots of a serial-tracked SKU).
- ``inv_move``: every stock movement, draft -> reserved -> done (or cancelled).
- ``inv_quant``: on hand and reserved per (SKU, location, lot), kept only for locations that
  hold the tenant's own stock (internal and transit); never negative, reserved <= on hand.
- ``inv_valuation``: moving average cost per SKU (quantity and value of the stock owned).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow
from erp_core.db.cache import MasterData
from erp_core.db.types import Money, Quantity

#: SKU tracking modes.
TRACKINGS = ("none", "lot", "serial")
#: What a location is for. ``internal`` and ``transit`` hold the tenant's own stock (quants,
#: valuation); the others are counterparts whose balance is the sum of the moves.
USAGES = ("internal", "supplier", "customer", "adjustment", "scrap", "transit")
#: ``view`` locations group others and hold no stock; ``stock`` locations hold stock.
KINDS = ("view", "stock")
#: Move states.
STATES = ("draft", "reserved", "done", "cancelled")
#: Usages whose stock the tenant owns: quants exist and are valued.
OWNED_USAGES = ("internal", "transit")


class Sku(MasterData, TenantScoped, Base):
    """A stock-keeping unit."""

    __tablename__ = "inv_sku"
    __table_args__ = (
        UniqueConstraint("tenant_id", "code"),
        CheckConstraint("tracking IN ('none', 'lot', 'serial')", name="tracking"),
        CheckConstraint("decimals >= 0 AND decimals <= 4", name="decimals"),
        CheckConstraint("tracking <> 'serial' OR decimals = 0", name="serial_whole"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: Unit of measure shown to people (pcs, kg, m ...).
    unit: Mapped[str] = mapped_column(String(16), nullable=False, default="pcs")
    #: Decimal places a quantity of this SKU may have (0: whole units; at most 4).
    decimals: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    tracking: Mapped[str] = mapped_column(String(8), nullable=False, default="none")
    #: Days from receipt to expiry; a new lot received without an expiry gets this one.
    shelf_life_days: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


class Warehouse(MasterData, TenantScoped, Base):
    """A warehouse; its locations are ``inv_location`` rows with its id."""

    __tablename__ = "inv_warehouse"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


class Location(MasterData, TenantScoped, Base):
    """A place stock can be: a node of a warehouse's tree, or a virtual location."""

    __tablename__ = "inv_location"
    __table_args__ = (
        UniqueConstraint("tenant_id", "path"),
        CheckConstraint("kind IN ('view', 'stock')", name="kind"),
        CheckConstraint(
            "usage IN ('internal', 'supplier', 'customer', 'adjustment', 'scrap', 'transit')",
            name="usage",
        ),
        Index("ix_inv_location_warehouse_id", "warehouse_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    #: The warehouse the location belongs to; None for virtual locations.
    warehouse_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inv_warehouse.id", ondelete="CASCADE")
    )
    parent_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("inv_location.id", ondelete="CASCADE"), index=True
    )
    #: This node's code (one path segment).
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    #: Full path: ``WH1/STOCK/A/01``; virtual locations ``@supplier``, ``@customer`` ...
    path: Mapped[str] = mapped_column(String(500), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    kind: Mapped[str] = mapped_column(String(8), nullable=False, default="stock")
    usage: Mapped[str] = mapped_column(String(16), nullable=False, default="internal")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)

    @property
    def owned(self) -> bool:
        """Whether stock here is the tenant's own (quants kept, valued)."""
        return self.usage in OWNED_USAGES and self.kind == "stock"


class Lot(TenantScoped, Base):
    """A lot of one SKU, or a serial number (a lot of a serial-tracked SKU: one unit)."""

    __tablename__ = "inv_lot"
    __table_args__ = (UniqueConstraint("tenant_id", "sku_id", "code"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inv_sku.id", ondelete="CASCADE"), nullable=False
    )
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    expiry: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


def _not_null(column: str) -> dict[str, Any]:
    """Options of a partial index over the rows where ``column`` is set (PostgreSQL, SQLite)."""
    cond = text(f"{column} IS NOT NULL")
    return {"postgresql_where": cond, "sqlite_where": cond}


class Move(TenantScoped, Base):
    """One movement of a quantity of one SKU (one lot or serial at most) between locations."""

    __tablename__ = "inv_move"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("reserved >= 0 AND reserved <= quantity", name="reserved_range"),
        CheckConstraint("from_location_id <> to_location_id", name="distinct_locations"),
        CheckConstraint(
            "state IN ('draft', 'reserved', 'done', 'cancelled')",
            name="state",
        ),
        Index("ix_inv_move_tenant_id_sku_id_state", "tenant_id", "sku_id", "state"),
        Index("ix_inv_move_tenant_id_source", "tenant_id", "source_type", "source_id"),
        # partial: most moves have no lot and no origin, and a reservation should not pay for
        # index entries nobody looks up (migration 0004)
        Index("ix_inv_move_lot_id", "lot_id", **_not_null("lot_id")),
        # the moves list pages by (created_at, id), newest first (migration 0004)
        Index("ix_inv_move_tenant_id_created_at", "tenant_id", "created_at", "id"),
        # a move's follow-ups (transfer legs, splits); also what deleting a move checks
        Index("ix_inv_move_origin_move_id", "origin_move_id", **_not_null("origin_move_id")),
    )
    __tenant_index__ = False  # tenant_id leads the indexes that look moves up by tenant

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_sku.id"), nullable=False)
    quantity: Mapped[Decimal] = mapped_column(Quantity, nullable=False)
    #: Quantity held on the source quant for this move (state reserved, internal source).
    reserved: Mapped[Decimal] = mapped_column(Quantity, nullable=False, default=Decimal(0))
    from_location_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inv_location.id"), nullable=False
    )
    to_location_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inv_location.id"), nullable=False
    )
    lot_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_lot.id"))
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="draft")
    #: Cost per unit the move was valued at (receipts: the purchase cost given).
    unit_cost: Mapped[Decimal | None] = mapped_column(Money)
    #: Value booked for the move (positive); None for moves that are not valued.
    value: Mapped[Decimal | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column()
    #: What caused the move, e.g. ("oms.order", "SO-1001").
    source_type: Mapped[str | None] = mapped_column(String(63))
    source_id: Mapped[str | None] = mapped_column(String(128))
    idempotency_key: Mapped[str | None] = mapped_column(String(160))
    #: The move this one continues (a transfer's leg out of transit) or was split from.
    origin_move_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_move.id"))
    reference: Mapped[str] = mapped_column(String(200), nullable=False, default="")


class Quant(TenantScoped, Base):
    """On hand and reserved quantity of one SKU in one location, per lot.

    ``lot_key`` is the lot's id or 0, so that the unique key also holds for stock without a
    lot (NULLs are never equal in a unique constraint). ``warehouse_id`` is the location's
    warehouse (None in transit), copied so that reservations filter on one index.
    """

    __tablename__ = "inv_quant"
    __tenant_index__ = False  # the unique constraint and the warehouse index start with it
    __table_args__ = (
        UniqueConstraint("tenant_id", "sku_id", "location_id", "lot_key"),
        CheckConstraint("quantity >= 0", name="quantity_nonnegative"),
        CheckConstraint("reserved >= 0 AND reserved <= quantity", name="reserved_range"),
        Index("ix_inv_quant_tenant_id_sku_id_warehouse_id", "tenant_id", "sku_id", "warehouse_id"),
        Index("ix_inv_quant_location_id", "location_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_sku.id"), nullable=False)
    location_id: Mapped[int] = mapped_column(BigId, ForeignKey("inv_location.id"), nullable=False)
    warehouse_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_warehouse.id"))
    lot_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("inv_lot.id"))
    lot_key: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    quantity: Mapped[Decimal] = mapped_column(Quantity, nullable=False, default=Decimal(0))
    reserved: Mapped[Decimal] = mapped_column(Quantity, nullable=False, default=Decimal(0))
    #: When stock first arrived in this quant (FIFO order).
    in_date: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)


class Valuation(TenantScoped, Base):
    """Moving average valuation of one SKU across the tenant's own stock."""

    __tablename__ = "inv_valuation"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sku_id"),
        CheckConstraint("quantity >= 0", name="quantity_nonnegative"),
        CheckConstraint("value >= 0", name="value_nonnegative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sku_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("inv_sku.id", ondelete="CASCADE"), nullable=False
    )
    quantity: Mapped[Decimal] = mapped_column(Quantity, nullable=False, default=Decimal(0))
    value: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    #: The current average cost per unit (kept when the stock runs out: the next gain found
    #: by a count is valued at it).
    average_cost: Mapped[Decimal] = mapped_column(Money, nullable=False, default=Decimal(0))
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
