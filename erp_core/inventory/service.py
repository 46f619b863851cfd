"""The inventory service: SKUs, warehouses, locations, lots, moves, reservations, valuation.

This module is the only writer of the ``inv_`` tables; plugins (OMS, WMS, purchasing ...)
call the functions below and never write those tables themselves.

Conventions of every function:

- ``session`` is bound to a tenant (``bind_tenant``/``Database.tenant_session``); everything
  happens in the caller's transaction, which the caller commits. Nothing here commits.
- Quantities and costs are :class:`~decimal.Decimal` (``int`` and numeric strings are accepted;
  floats are refused). A quantity must be positive and have no more decimal places than its
  SKU's ``decimals``.
- Invalid input raises :class:`InventoryError` (or its subclasses: :class:`InventoryConflict`
  when a move or the stock is in the wrong state, :class:`ShortageError` when stock is
  missing) **before anything is written**, so the caller's transaction is unchanged.
- ``hooks`` is the tenant's hooks (``registry.hooks_for(enabled)``; the API's ``Hooks``
  dependency). The kernel's built-ins (the ledger's posting of valued moves) run through it,
  so pass it whenever stock changes; with ``hooks=None`` **no hook runs** (no ledger entry, no
  stock push), which is meant for tests and data imports only.
- References: a SKU is a :class:`Sku`, its id or its code; a warehouse a :class:`Warehouse`, its
  id or its code; a location a :class:`Location`, its id or its path (``WH1/STOCK/A``,
  ``@customer``); a move a :class:`Move` or its id.

Concurrency: stock is taken with conditional updates of the quant rows
(``UPDATE inv_quant SET reserved = reserved + :q WHERE ... AND quantity - reserved >= :q``) in
the caller's transaction, so concurrent reservations never oversell and never wait for more
than the row lock of the quant they update. Operations that change several rows lock them
first (``SELECT ... FOR UPDATE`` on PostgreSQL; the database write lock on SQLite).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, case, func, or_, select, text, type_coerce, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm.base import instance_state

from erp_core.db.base import beside_key, utcnow
from erp_core.db.bulk import FEW_ROWS, RowInsert, RowStatement
from erp_core.db.cache import cached, keep_rows, kept_copy, kept_row, kept_rows
from erp_core.db.direct import Direct
from erp_core.db.session import SYSTEM_KEY, fetch_one_raw, session_tenant
from erp_core.db.types import Quantity
from erp_core.inventory.errors import InventoryConflict, InventoryError, ShortageError, _fmt
from erp_core.inventory.models import (
    KINDS,
    OWNED_USAGES,
    TRACKINGS,
    Location,
    Lot,
    Move,
    Quant,
    Sku,
    Valuation,
    Warehouse,
)
from erp_core.inventory.types import (
    CountedLine,
    CountLine,
    CountResult,
    Reservation,
    ReservedLine,
    StockChange,
    StockLevel,
    StockValuation,
    TransferResult,
    ValuationKind,
)
from erp_core.tenancy.context import NoTenantError
from erp_core.tenancy.models import Tenant

__all__ = [
    "InventoryConflict",
    "InventoryError",
    "ShortageError",
    "cancel",
    "complete",
    "count",
    "create_location",
    "create_move",
    "create_sku",
    "create_warehouse",
    "ensure_virtual_locations",
    "get_location",
    "get_lot",
    "get_move",
    "get_sku",
    "get_warehouse",
    "location_tree",
    "lock_stock",
    "lot_history",
    "receive",
    "release",
    "reserve",
    "reserve_move",
    "scrap",
    "serial_history",
    "stock_change_batch",
    "stock_levels",
    "transfer",
    "update_sku",
    "virtual_location",
]

SkuRef = Sku | int | str
WarehouseRef = Warehouse | int | str
LocationRef = Location | int | str
MoveRef = Move | int
Number = Decimal | int | str
Strategy = Literal["fifo", "fefo"]
Source = tuple[str, str]

#: Largest quantity of one operation (and unit cost): far beyond any real order, small enough
#: that sums and values stay exact in 64-bit scaled integers.
MAX_QUANTITY = Decimal(10) ** 9
MAX_UNIT_COST = Decimal(10) ** 9
#: Largest value of one move and of one SKU's stock, in the tenant's currency.
MAX_MOVE_VALUE = Decimal(10) ** 13
MAX_STOCK_VALUE = Decimal(9) * Decimal(10) ** 14
CENT = Decimal("0.0001")  # the precision of Money and Quantity columns

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KEY_RE = re.compile(r"^[^#\s][^#]*$")

#: The tenant's virtual locations: usage -> (path, name).
VIRTUAL_LOCATIONS: dict[str, tuple[str, str]] = {
    "supplier": ("@supplier", "Suppliers"),
    "customer": ("@customer", "Customers"),
    "adjustment": ("@adjustment", "Inventory adjustment"),
    "scrap": ("@scrap", "Scrap"),
    "transit": ("@transit", "Transit between warehouses"),
}

#: How a done move between a virtual location and the tenant's own stock is valued.
_VALUED_IN: dict[str, ValuationKind] = {
    "supplier": "receipt",
    "customer": "customer_return",
    "adjustment": "adjustment_gain",
    "scrap": "adjustment_gain",
}
_VALUED_OUT: dict[str, ValuationKind] = {
    "customer": "delivery",
    "supplier": "supplier_return",
    "adjustment": "adjustment_loss",
    "scrap": "scrap",
}

Q = cast(Table, Quant.__table__)
M = cast(Table, Move.__table__)
LOT = cast(Table, Lot.__table__)
LOC = cast(Table, Location.__table__)
VAL = cast(Table, Valuation.__table__)

#: on hand minus reserved, typed as a quantity (``col - col`` would be a bare BIGINT: its
#: result unscaled, and decimals compared with it unscaled too)
q_available = type_coerce(Q.c.quantity - Q.c.reserved, Quantity)

# Statements of the reservation path, built once (bound parameters, cached compilation).
_TAKE = (
    update(Q)
    .where(
        Q.c.id == bindparam("qid"),
        beside_key(Q.c.tenant_id) == bindparam("tid"),
        q_available >= bindparam("take", type_=Quantity),
    )
    .values(reserved=Q.c.reserved + bindparam("take", type_=Quantity))
)
_GIVE_BACK = (
    update(Q)
    .where(
        Q.c.id == bindparam("qid"),
        beside_key(Q.c.tenant_id) == bindparam("tid"),
        Q.c.reserved >= bindparam("take", type_=Quantity),
    )
    .values(reserved=Q.c.reserved - bindparam("take", type_=Quantity))
)
_AVAILABLE = select(q_available).where(
    Q.c.id == bindparam("qid"), beside_key(Q.c.tenant_id) == bindparam("tid")
)
#: new moves, their ids back (a few at a time: :meth:`RowInsert.ids`)
_MOVE_ROWS = RowInsert(M)
#: on hand and reserved per SKU and warehouse, for the stock hook
_STOCK_SUMS = Direct(
    select(
        Q.c.sku_id,
        Q.c.warehouse_id,
        func.coalesce(func.sum(Q.c.quantity), 0).label("on_hand"),
        func.coalesce(func.sum(Q.c.reserved), 0).label("reserved"),
    )
    .where(
        Q.c.tenant_id == bindparam("tid"),
        Q.c.sku_id.in_(bindparam("skus", expanding=True)),
        Q.c.warehouse_id.in_(bindparam("whs", expanding=True)),
    )
    .group_by(Q.c.sku_id, Q.c.warehouse_id)
)

SK = cast(Table, Sku.__table__)
WH = cast(Table, Warehouse.__table__)
#: The whole look-up of a reservation by codes in one statement: the SKU, the warehouse, the
#: destination location and the warehouse's quants with available stock, oldest first (one
#: row with ``id`` NULL when there is none).
_FAST_LOOKUP = Direct(
    select(
        SK.c.id.label("sku_id"),
        SK.c.decimals,
        SK.c.tracking,
        WH.c.id.label("warehouse_id"),
        select(LOC.c.id)
        .where(
            LOC.c.tenant_id == bindparam("tid"),
            LOC.c.path == bindparam("dst"),
            LOC.c.kind == "stock",
        )
        .scalar_subquery()
        .label("dst_id"),
        Q.c.id,
        Q.c.location_id,
        Q.c.lot_id,
        q_available.label("available"),
    )
    .select_from(
        SK.join(WH, (WH.c.tenant_id == SK.c.tenant_id) & (WH.c.code == bindparam("wh"))).outerjoin(
            Q,
            (Q.c.tenant_id == SK.c.tenant_id)
            & (Q.c.sku_id == SK.c.id)
            & (Q.c.warehouse_id == WH.c.id)
            & (Q.c.quantity > Q.c.reserved),
        )
    )
    .where(SK.c.tenant_id == bindparam("tid"), SK.c.code == bindparam("sku"))
    .order_by(Q.c.in_date, Q.c.id)
)


# --- small helpers ---------------------------------------------------------------------------


def _tenant_id(session: Session) -> int:
    tid = session_tenant(session)
    if tid is None:
        raise NoTenantError("inventory operations need a session bound to a tenant")
    return tid


def to_decimal(value: Any, what: str = "quantity") -> Decimal:
    """``value`` as a Decimal; refuses floats (inexact), booleans and non-numbers."""
    if isinstance(value, bool | float):
        raise InventoryError(
            f"{what} must be given exactly (a Decimal, an integer or a string like '1.5'), "
            f"not as a {type(value).__name__}"
        )
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise InventoryError(f"{what} {value[:40]!r} is not a number") from None
    else:
        raise InventoryError(f"{what} must be a number, not {type(value).__name__}")
    if not d.is_finite():
        raise InventoryError(f"{what} must be a finite number")
    return d


def _places(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp))


def _quantity(value: Any, sku: Sku, what: str = "quantity", *, zero: bool = False) -> Decimal:
    d = to_decimal(value, what)
    if d < 0 or (d == 0 and not zero):
        raise InventoryError(f"{what} must be {'zero or more' if zero else 'positive'}, got {d}")
    if d > MAX_QUANTITY:
        raise InventoryError(f"{what} {d} is larger than the maximum {_fmt(MAX_QUANTITY)}")
    if _places(d) > sku.decimals:
        unit = f"whole {sku.unit}" if sku.decimals == 0 else f"{sku.decimals} decimal places"
        raise InventoryError(f"{what} of {sku.code} must be in {unit}, got {d}")
    return d.quantize(CENT)


def _unit_cost(value: Any) -> Decimal:
    d = to_decimal(value, "unit_cost")
    if d < 0:
        raise InventoryError(f"unit_cost must not be negative, got {d}")
    if d > MAX_UNIT_COST:
        raise InventoryError(f"unit_cost {d} is larger than the maximum {_fmt(MAX_UNIT_COST)}")
    if _places(d) > 4:
        raise InventoryError(f"unit_cost {d} has more than 4 decimal places")
    return d.quantize(CENT)


def _money(d: Decimal) -> Decimal:
    return d.quantize(CENT, rounding=ROUND_HALF_EVEN)


def _text(value: str | None, what: str, max_len: int, *, required: bool = True) -> str:
    v = (value or "").strip()
    if required and not v:
        raise InventoryError(f"{what} must not be empty")
    if len(v) > max_len:
        raise InventoryError(f"{what} is longer than {max_len} characters")
    return v


def _code(value: str, what: str, max_len: int) -> str:
    v = _text(value, what, max_len)
    if not CODE_RE.match(v):
        raise InventoryError(
            f"{what} {v[:40]!r} must start with a letter or digit and use only letters, "
            "digits, '.', '_' and '-'"
        )
    return v


def _source(source: Source | None) -> tuple[str | None, str | None]:
    if source is None:
        return None, None
    if not (isinstance(source, tuple) and len(source) == 2):
        raise InventoryError("source must be a pair (type, id), e.g. ('oms.order', 'SO-1')")
    kind = _text(source[0], "source type", 63)
    ident = _text(source[1], "source id", 128)
    return kind, ident


def _key(key: str | None) -> str | None:
    if key is None:
        return None
    k = _text(key, "idempotency key", 128)
    if not KEY_RE.match(k):
        raise InventoryError("idempotency key must not contain '#' or start with a space")
    return k


def _keys(key: str | None, n: int) -> list[str | None]:
    """The idempotency keys of ``n`` moves made by one call: ``key``, ``key#2``, ..."""
    if key is None:
        return [None] * n
    return [key if i == 0 else f"{key}#{i + 1}" for i in range(n)]


def _tenant_info(session: Session, tid: int) -> tuple[str, ZoneInfo]:
    """(currency, time zone) of the tenant, cached on the session."""
    cache: dict[int, tuple[str, ZoneInfo]] = session.info.setdefault("erp_inv_tenant", {})
    hit = cache.get(tid)
    if hit is None:
        mine = tid == session_tenant(session)
        row = (kept_copy(session, Tenant, tid) or kept_row(session, Tenant, tid)) if mine else None
        if row is None:
            row = session.get(Tenant, tid)
        if row is None:
            raise NoTenantError(f"tenant {tid} does not exist")
        hit = (row.currency, ZoneInfo(row.timezone))
        cache[tid] = hit
    return hit


def _today(session: Session, tid: int) -> date:
    """Today in the tenant's time zone (lots expire at the end of their expiry day there)."""
    return utcnow().astimezone(_tenant_info(session, tid)[1]).date()


# --- look-ups --------------------------------------------------------------------------------


def get_sku(session: Session, ref: SkuRef) -> Sku:
    """The SKU named by ``ref`` (object, id or code); :class:`InventoryError` if unknown."""
    tid = _tenant_id(session)
    if isinstance(ref, Sku):
        if ref.tenant_id not in (None, tid):
            raise InventoryError(f"unknown SKU {ref.code!r}")
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        sku = _held(session, Sku, ref, tid) if 0 < ref < 2**63 else None
        if sku is None:
            raise InventoryError(f"unknown SKU id {ref}")
        return sku
    if isinstance(ref, str):
        sku = session.scalar(select(Sku).where(Sku.code == ref.strip()))
        if sku is None:
            raise InventoryError(f"unknown SKU {ref[:64]!r}")
        return sku
    raise InventoryError(f"a SKU is named by its code or id, not {type(ref).__name__}")


def get_warehouse(session: Session, ref: WarehouseRef) -> Warehouse:
    """The warehouse named by ``ref`` (object, id or code)."""
    tid = _tenant_id(session)
    if isinstance(ref, Warehouse):
        if ref.tenant_id not in (None, tid):
            raise InventoryError(f"unknown warehouse {ref.code!r}")
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        wh = _held(session, Warehouse, ref, tid) if 0 < ref < 2**63 else None
        if wh is None:
            raise InventoryError(f"unknown warehouse id {ref}")
        return wh
    if isinstance(ref, str):
        wh = session.scalar(select(Warehouse).where(Warehouse.code == ref.strip()))
        if wh is None:
            raise InventoryError(f"unknown warehouse {ref[:64]!r}")
        return wh
    raise InventoryError(f"a warehouse is named by its code or id, not {type(ref).__name__}")


def get_location(session: Session, ref: LocationRef) -> Location:
    """The location named by ``ref`` (object, id or full path such as ``WH1/STOCK``)."""
    tid = _tenant_id(session)
    if isinstance(ref, Location):
        if ref.tenant_id not in (None, tid):
            raise InventoryError(f"unknown location {ref.path!r}")
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool):
        loc = _held(session, Location, ref, tid) if 0 < ref < 2**63 else None
        if loc is None:
            raise InventoryError(f"unknown location id {ref}")
        return loc
    if isinstance(ref, str):
        path = ref.strip().strip("/")
        if path.startswith("@"):
            usage = path[1:]
            if usage in VIRTUAL_LOCATIONS:
                return virtual_location(session, usage)
        loc = session.scalar(select(Location).where(Location.path == path))
        if loc is None:
            raise InventoryError(f"unknown location {ref[:100]!r}")
        return loc
    raise InventoryError(f"a location is named by its path or id, not {type(ref).__name__}")


def get_lot(session: Session, sku: SkuRef, ref: Lot | int | str) -> Lot:
    """The lot (or serial number) ``ref`` of ``sku``; an error if it belongs to another SKU."""
    s = get_sku(session, sku)
    if isinstance(ref, Lot):
        lot: Lot | None = ref
    elif isinstance(ref, int) and not isinstance(ref, bool):
        lot = session.get(Lot, ref) if 0 < ref < 2**63 else None
        if lot is None:
            raise InventoryError(f"unknown lot id {ref}")
    elif isinstance(ref, str):
        code = ref.strip()
        lot = session.scalar(select(Lot).where(Lot.sku_id == s.id, Lot.code == code))
        if lot is None:
            other = session.scalar(
                select(Sku.code).join(Lot, Lot.sku_id == Sku.id).where(Lot.code == code).limit(1)
            )
            what = "serial number" if s.tracking == "serial" else "lot"
            if other is not None:
                raise InventoryError(f"{what} {code!r} belongs to SKU {other}, not {s.code}")
            raise InventoryError(f"unknown {what} {code[:64]!r} of SKU {s.code}")
    else:
        raise InventoryError(f"a lot is named by its code or id, not {type(ref).__name__}")
    assert lot is not None
    if lot.sku_id != s.id:
        other_sku = session.get(Sku, lot.sku_id)
        raise InventoryError(
            f"lot {lot.code!r} belongs to SKU {other_sku.code if other_sku else '?'}, not {s.code}"
        )
    return lot


def get_move(session: Session, ref: MoveRef) -> Move:
    """The move ``ref``, freshly read from the database."""
    _tenant_id(session)
    move_id = ref.id if isinstance(ref, Move) else ref
    if not isinstance(move_id, int) or isinstance(move_id, bool) or not 0 < move_id < 2**63:
        raise InventoryError(f"unknown move {move_id!r}")
    move = session.get(Move, move_id, populate_existing=True)
    if move is None:
        raise InventoryError(f"unknown move id {move_id}")
    return move


_T = TypeVar("_T", Sku, Warehouse, Location)
#: ``Session.info`` key: master data the service read in this session, held strongly (the
#: session's identity map holds objects only weakly, so each look-up by id would otherwise be
#: a query again as soon as the caller let go of the object).
_HELD = "erp_inv_held"


def _held(session: Session, cls: type[_T], ident: int, tid: int) -> _T | None:
    """``session.get(cls, ident)`` of the tenant ``tid`` (None for another tenant's row, even
    one the identity map still holds), kept for the session's later look-ups."""
    held = session.info.get(_HELD)
    if held is not None:
        obj = held.get((cls, ident))
        if obj is not None:
            state = instance_state(obj)
            if not state.expired and state.session_id == session.hash_key:
                # held earlier in this session, as loaded then
                return obj if obj.tenant_id in (None, tid) else None
    obj = kept_row(session, cls, ident)
    if obj is None or obj.tenant_id not in (None, tid):
        return None
    session.info.setdefault(_HELD, {})[(cls, ident)] = obj
    return obj


def _read_only(session: Session, cls: type[_T], ident: int, tid: int) -> _T | None:
    """A master-data row of the tenant ``tid`` (or shared) to read and nothing else: a kept
    copy where there is one (:func:`~erp_core.db.cache.kept_copy`: not merged into the
    session, so never changed or handed to it), else as :func:`_held` has it."""
    obj = kept_copy(session, cls, ident)
    if obj is None:
        return _held(session, cls, ident, tid)
    return obj if obj.tenant_id in (None, tid) else None


def _to_read(op: _Op, cls: type[_T], ref: Any, lookup: Callable[[Session, Any], _T]) -> _T:
    """The row named by ``ref`` to read only: by id, :meth:`_Op.read_only`; otherwise (or if
    that finds none) ``lookup`` (``get_sku``, say), which names what is wrong."""
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 < ref < 2**63:
        obj = op.read_only(cls, ref)
        if obj is not None:
            return obj
    return lookup(op.session, ref)


def _virtual_to_read(op: _Op, usage: str) -> Location:
    """:func:`virtual_location` to read only (a kept copy where there is one)."""
    ids: dict[str, int] = cached(op.session, "inv.virtual", dict)
    if len(ids) == len(VIRTUAL_LOCATIONS):
        loc = op.read_only(Location, ids[usage])
        if loc is not None:
            return loc
    return virtual_location(op.session, usage)


def virtual_location(session: Session, usage: str) -> Location:
    """The tenant's virtual location for ``usage`` (supplier, customer, adjustment, scrap,
    transit), created if missing."""
    if usage not in VIRTUAL_LOCATIONS:
        raise InventoryError(f"no virtual location {usage!r}")
    tid = _tenant_id(session)
    if tid not in session.info.get("erp_inv_virtual", {}):
        # the first need of this session: the one row asked for, when the ids are kept
        ids: dict[str, int] = cached(session, "inv.virtual", dict)
        if len(ids) == len(VIRTUAL_LOCATIONS):
            loc = _held(session, Location, ids[usage], tid)
            if loc is not None:
                return loc
    return ensure_virtual_locations(session)[usage]


def ensure_virtual_locations(
    session: Session, tenant: Tenant | int | None = None
) -> dict[str, Location]:
    """The virtual locations of ``tenant`` (default: the session's) by usage, creating those
    missing (idempotent). Called when a tenant is created (hook ``erp_tenant_created``; the
    migration ``0005_inventory_virtual_locations`` gave them to older tenants) and by the
    service's writes, which need them."""
    if isinstance(tenant, Tenant):
        tid = tenant.id
    else:
        tid = tenant if tenant is not None else _tenant_id(session)
    # The objects themselves are kept (the session's identity map holds them only weakly, so
    # ids alone would mean five look-ups per call), valid while they are still persistent in
    # this session (a rollback of the transaction that created them makes them transient).
    cache: dict[int, dict[str, Location]] = session.info.setdefault("erp_inv_virtual", {})
    known = cache.get(tid)
    if known is not None and all(
        (st := sa_inspect(loc)).persistent and st.session is session for loc in known.values()
    ):
        return dict(known)
    # their ids are kept across transactions, the rows too (see _held)
    mine = tid == session_tenant(session)
    if mine:
        ids: dict[str, int] = cached(session, "inv.virtual", dict)
        if len(ids) == len(VIRTUAL_LOCATIONS):
            held = {u: _held(session, Location, i, tid) for u, i in ids.items()}
            if all(loc is not None for loc in held.values()):
                cache[tid] = cast(dict[str, Location], held)
                return dict(cache[tid])
    paths = [p for p, _ in VIRTUAL_LOCATIONS.values()]
    existing = {
        loc.path: loc
        for loc in session.scalars(
            select(Location).where(Location.tenant_id == tid, Location.path.in_(paths))
        )
    }
    out: dict[str, Location] = {}
    for usage, (path, name) in VIRTUAL_LOCATIONS.items():
        loc = existing.get(path)
        if loc is None:
            loc = Location(
                tenant_id=tid,
                warehouse_id=None,
                parent_id=None,
                code=path[1:],
                path=path,
                name=name,
                kind="stock",
                usage=usage,
            )
            session.add(loc)
        out[usage] = loc
    session.flush()
    cache[tid] = out
    if mine:
        kept: dict[str, int] = cached(session, "inv.virtual", dict)
        kept.update({u: loc.id for u, loc in out.items()})
    return dict(out)


# --- SKUs, warehouses, locations -------------------------------------------------------------


def create_sku(
    session: Session,
    *,
    code: str,
    name: str,
    unit: str = "pcs",
    decimals: int = 0,
    tracking: str = "none",
    shelf_life_days: int | None = None,
) -> Sku:
    """Create a SKU. ``tracking``: ``none``, ``lot`` (lots with optional expiry) or ``serial``
    (one serial number per unit; ``decimals`` must be 0)."""
    tid = _tenant_id(session)
    code = _code(code, "SKU code", 64)
    name = _text(name, "SKU name", 200)
    unit = _text(unit, "unit", 16)
    _check_sku_fields(decimals, tracking, shelf_life_days)
    if session.scalar(select(Sku.id).where(Sku.code == code)) is not None:
        raise InventoryError(f"SKU {code!r} already exists")
    sku = Sku(
        tenant_id=tid,
        code=code,
        name=name,
        unit=unit,
        decimals=decimals,
        tracking=tracking,
        shelf_life_days=shelf_life_days,
        active=True,
    )
    session.add(sku)
    session.flush()
    return sku


def _check_sku_fields(decimals: int, tracking: str, shelf_life_days: int | None) -> None:
    if tracking not in TRACKINGS:
        raise InventoryError(f"tracking must be one of {', '.join(TRACKINGS)}, not {tracking!r}")
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 4:
        raise InventoryError("decimals must be a whole number from 0 to 4")
    if tracking == "serial" and decimals != 0:
        raise InventoryError("a serial-tracked SKU is counted in whole units (decimals 0)")
    if shelf_life_days is not None and (
        not isinstance(shelf_life_days, int) or not 0 < shelf_life_days <= 36500
    ):
        raise InventoryError("shelf_life_days must be a whole number of days from 1 to 36500")


_UNSET: Any = object()


def update_sku(
    session: Session,
    sku: SkuRef,
    *,
    name: str | None = None,
    unit: str | None = None,
    decimals: int | None = None,
    tracking: str | None = None,
    shelf_life_days: int | None = _UNSET,
    active: bool | None = None,
) -> Sku:
    """Change a SKU. ``decimals`` may only grow; ``tracking`` may change only while the SKU
    has no moves."""
    s = get_sku(session, sku)
    new_decimals = s.decimals if decimals is None else decimals
    new_tracking = s.tracking if tracking is None else tracking
    new_shelf = s.shelf_life_days if shelf_life_days is _UNSET else shelf_life_days
    _check_sku_fields(new_decimals, new_tracking, new_shelf)
    if new_decimals < s.decimals:
        raise InventoryError("decimals can only grow (existing quantities must stay valid)")
    if new_tracking != s.tracking and session.scalar(
        select(Move.id).where(Move.sku_id == s.id).limit(1)
    ):
        raise InventoryConflict(f"tracking of {s.code} cannot change: it already has moves")
    if name is not None:
        s.name = _text(name, "SKU name", 200)
    if unit is not None:
        s.unit = _text(unit, "unit", 16)
    s.decimals = new_decimals
    s.tracking = new_tracking
    s.shelf_life_days = new_shelf
    if active is not None:
        s.active = bool(active)
    session.flush()
    return s


def create_warehouse(session: Session, *, code: str, name: str) -> Warehouse:
    """Create a warehouse with its root view location (path = ``code``) and its default
    stock location ``<code>/STOCK``. Transfers to other warehouses go through the tenant's
    transit location ``@transit``, which is created with the other virtual locations."""
    tid = _tenant_id(session)
    code = _code(code, "warehouse code", 32)
    name = _text(name, "warehouse name", 200)
    if session.scalar(select(Warehouse.id).where(Warehouse.code == code)) is not None:
        raise InventoryError(f"warehouse {code!r} already exists")
    if session.scalar(select(Location.id).where(Location.path == code)) is not None:
        raise InventoryError(f"a location with path {code!r} already exists")
    ensure_virtual_locations(session)
    wh = Warehouse(tenant_id=tid, code=code, name=name, active=True)
    session.add(wh)
    session.flush()
    root = Location(
        tenant_id=tid,
        warehouse_id=wh.id,
        parent_id=None,
        code=code,
        path=code,
        name=name,
        kind="view",
        usage="internal",
    )
    session.add(root)
    session.flush()
    stock = Location(
        tenant_id=tid,
        warehouse_id=wh.id,
        parent_id=root.id,
        code="STOCK",
        path=f"{code}/STOCK",
        name="Stock",
        kind="stock",
        usage="internal",
    )
    session.add(stock)
    session.flush()
    return wh


def warehouse_stock_location(session: Session, warehouse: WarehouseRef) -> Location:
    """The warehouse's default stock location (``<code>/STOCK``)."""
    wh = get_warehouse(session, warehouse)
    loc = session.scalar(
        select(Location).where(Location.warehouse_id == wh.id, Location.path == f"{wh.code}/STOCK")
    )
    if loc is None:  # pragma: no cover - created with the warehouse, never removed
        raise InventoryError(f"warehouse {wh.code} has no STOCK location")
    return loc


def create_location(
    session: Session, *, parent: LocationRef, code: str, name: str = "", kind: str = "stock"
) -> Location:
    """Create a location (zone, shelf, bin ...) under ``parent`` in a warehouse's tree.

    ``kind`` ``stock`` locations hold stock; ``view`` locations only group others.
    """
    tid = _tenant_id(session)
    p = get_location(session, parent)
    if p.warehouse_id is None:
        raise InventoryError(f"locations are created inside a warehouse, not under {p.path}")
    code = _code(code, "location code", 64)
    if kind not in KINDS:
        raise InventoryError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    path = f"{p.path}/{code}"
    if len(path) > 500:
        raise InventoryError("the location's path is longer than 500 characters")
    if session.scalar(select(Location.id).where(Location.path == path)) is not None:
        raise InventoryError(f"location {path!r} already exists")
    loc = Location(
        tenant_id=tid,
        warehouse_id=p.warehouse_id,
        parent_id=p.id,
        code=code,
        path=path,
        name=_text(name, "location name", 200, required=False),
        kind=kind,
        usage="internal",
    )
    session.add(loc)
    session.flush()
    return loc


def location_tree(session: Session, warehouse: WarehouseRef) -> list[Location]:
    """Every location of the warehouse, parents before children (ordered by path)."""
    wh = get_warehouse(session, warehouse)
    return list(
        session.scalars(
            select(Location).where(Location.warehouse_id == wh.id).order_by(Location.path)
        )
    )


# --- the operation context -------------------------------------------------------------------


@dataclass
class _Row:
    """A move as the service handles it (read or about to be written)."""

    id: int
    sku: Sku
    quantity: Decimal
    reserved: Decimal
    src: Location
    dst: Location
    lot_id: int | None
    state: str
    unit_cost: Decimal | None = None
    source_type: str | None = None
    source_id: str | None = None
    #: the sale's dimensions of this move's valuation (None: the call's)
    dims: dict[str, str] | None = None


@dataclass
class _Op:
    """State of one service call: connection, collected hook payloads, undo actions."""

    session: Session
    hooks: Any
    tid: int = 0
    conn: Connection = field(init=False)
    now: datetime = field(default_factory=utcnow)
    touched: set[tuple[int, int]] = field(default_factory=set)
    valued: list[StockValuation] = field(default_factory=list)
    #: Posting dimensions given to every valuation of the call (see :func:`complete`).
    dimensions: dict[str, str] = field(default_factory=dict)
    undo: list[Callable[[], None]] = field(default_factory=list)
    locked: bool = False
    #: master-data rows read by the call (see :meth:`read_only`)
    seen: dict[tuple[type[Any], int], Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tid = _tenant_id(self.session)
        if self.session.info.get(SYSTEM_KEY):
            raise InventoryError("inventory operations act for one tenant, not with system access")
        if self.session.new or self.session.dirty:
            self.session.flush()
        self.conn = self.session.connection()

    @property
    def is_pg(self) -> bool:
        return self.conn.dialect.name == "postgresql"

    def write_lock(self) -> None:
        """Take SQLite's database write lock now (BEGIN IMMEDIATE): the reads that follow see
        what the writes will act on. PostgreSQL locks rows instead (``FOR UPDATE``)."""
        if not self.locked and not self.is_pg:
            # once per transaction: the lock is held until it ends, whatever savepoints do
            txn = self.session.get_transaction()
            if self.session.info.get(_WRITE_LOCKED) is not txn:
                _TAKE_WRITE_LOCK.run(self.conn, {})
                self.session.info[_WRITE_LOCKED] = txn
        self.locked = True

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Run the writes of the call in a savepoint: if anything fails (a hook included),
        nothing of the call remains and the caller's transaction goes on. On SQLite the write
        lock is taken first, so that the savepoint is nested in a real transaction."""
        self.write_lock()
        with self.session.begin_nested():
            # the session emits SAVEPOINT lazily, when it next needs its connection: now,
            # before the writes that go to the connection directly
            self.conn = self.session.connection()
            yield

    def rollback_writes(self) -> None:
        for action in reversed(self.undo):
            action()
        self.undo.clear()

    def location(self, loc_id: int) -> Location:
        loc = self.read_only(Location, loc_id)
        assert loc is not None
        return loc

    def read_only(self, cls: type[_T], ident: int) -> _T | None:
        """:func:`_read_only`, kept for the rest of the call."""
        key = (cls, ident)
        obj = self.seen.get(key)
        if obj is None:
            obj = _read_only(self.session, cls, ident, self.tid)
            if obj is not None:
                self.seen[key] = obj
        return obj


#: ``Session.info`` key: the transaction that took SQLite's write lock (:meth:`_Op.write_lock`)
_WRITE_LOCKED = "erp_inv_write_locked"
_TAKE_WRITE_LOCK = Direct(text("UPDATE inv_quant SET id = id WHERE 1 = 0"))


def _finish(op: _Op) -> None:
    """Fire the hooks of the call: ``erp_stock_valued`` once with the valued moves, then
    ``erp_stock_changed`` once (only computed when someone implements it)."""
    hooks = op.hooks
    if hooks is None:
        return
    if op.valued:
        op.session.flush()
        hooks.erp_stock_valued(session=op.session, tenant_id=op.tid, valuations=list(op.valued))
    if op.touched and _implemented(hooks, "erp_stock_changed"):
        pending = op.session.info.get(_BATCH_KEY)
        if pending is not None and pending[0] == op.tid:
            pending[2].update(op.touched)
            if pending[1] is None:
                pending[1] = hooks
            return
        changes = _stock_changes(op.session, op.tid, op.touched)
        hooks.erp_stock_changed(session=op.session, tenant_id=op.tid, changes=changes)


def lock_stock(session: Session, sku_ids: Iterable[int]) -> None:
    """Lock the stock rows of ``sku_ids`` (their quants in every warehouse, and their moving
    average) until the transaction ends, in one fixed order (by SKU, then row).

    For bulk work that touches many SKUs in one transaction, such as a page of orders reserved
    or shipped: each service call locks what it changes when it changes it, so two such
    transactions taking the same SKUs in different orders can deadlock on PostgreSQL (one is
    then rolled back). Locking them all first, in the same order, makes the second wait for
    the first instead. On SQLite it takes the database's write lock (writes are serialized
    there anyway).
    """
    op = _Op(session, None)
    ids = sorted({int(i) for i in sku_ids})
    if not ids:
        return
    if not op.is_pg:
        op.write_lock()
        return
    for table in (Q, VAL):
        op.conn.execute(
            select(table.c.id)
            .where(table.c.tenant_id == op.tid, table.c.sku_id.in_(ids))
            .order_by(table.c.sku_id, table.c.id)
            .with_for_update()
        )


#: ``Session.info`` key of an open :func:`stock_change_batch`: [tenant id, hooks, pairs].
_BATCH_KEY = "erp_inv_stock_batch"


@contextmanager
def stock_change_batch(session: Session) -> Iterator[None]:
    """Within the block, the service's calls on ``session`` report their stock changes once,
    at its end: one ``erp_stock_changed`` with the levels of every (SKU, warehouse) touched,
    instead of one per call. For bulk work (a page of orders reserved or shipped), where a
    stock push per line would be wasted. Nothing is reported when the block raises (its
    transaction is being abandoned). Valuations (``erp_stock_valued``) still fire per call,
    since their ledger entries belong to the call. Nested blocks join the outermost one."""
    if session.info.get(_BATCH_KEY) is not None:
        yield
        return
    tid = _tenant_id(session)
    pending: list[Any] = [tid, None, set()]
    session.info[_BATCH_KEY] = pending
    try:
        yield
    finally:
        session.info.pop(_BATCH_KEY, None)
    hooks, pairs = pending[1], pending[2]
    if hooks is not None and pairs:
        changes = _stock_changes(session, tid, pairs)
        hooks.erp_stock_changed(session=session, tenant_id=tid, changes=changes)


def _implemented(hooks: Any, name: str) -> bool:
    caller = getattr(hooks, name, None)
    get = getattr(caller, "get_hookimpls", None)
    return True if get is None else bool(get())


def _stock_changes(session: Session, tid: int, pairs: set[tuple[int, int]]) -> list[StockChange]:
    skus = sorted({s for s, _ in pairs})
    whs = sorted({w for _, w in pairs})
    sums = {
        (r.sku_id, r.warehouse_id): (r.on_hand, r.reserved)
        for r in _STOCK_SUMS.rows(session.connection(), {"tid": tid, "skus": skus, "whs": whs})
    }
    out = []
    for sku_id, wh_id in sorted(pairs):
        sku = _read_only(session, Sku, sku_id, tid)
        wh = _read_only(session, Warehouse, wh_id, tid)
        assert sku is not None and wh is not None
        on_hand, reserved = sums.get((sku_id, wh_id), (0, 0))
        on_hand = Decimal(on_hand) if not isinstance(on_hand, Decimal) else on_hand
        reserved = Decimal(reserved) if not isinstance(reserved, Decimal) else reserved
        out.append(
            StockChange(
                sku_id=sku_id,
                sku_code=sku.code,
                warehouse_id=wh_id,
                warehouse_code=wh.code,
                on_hand=on_hand.quantize(CENT),
                reserved=reserved.quantize(CENT),
                available=(on_hand - reserved).quantize(CENT),
            )
        )
    return out


def _touch(op: _Op, sku_id: int, loc: Location) -> None:
    if loc.warehouse_id is not None and loc.usage == "internal":
        op.touched.add((sku_id, loc.warehouse_id))


# --- taking stock (reservation) --------------------------------------------------------------


@dataclass
class _Taken:
    quant_id: int
    location_id: int
    lot_id: int | None
    quantity: Decimal


def _scope_where(op: _Op, scope: Location | Warehouse, exact: bool) -> list[Any]:
    if isinstance(scope, Warehouse):
        return [Q.c.warehouse_id == scope.id]
    if exact:
        return [Q.c.location_id == scope.id]
    sub = select(LOC.c.id).where(
        LOC.c.tenant_id == op.tid,
        or_(LOC.c.id == scope.id, LOC.c.path.startswith(scope.path + "/", autoescape=True)),
    )
    return [Q.c.location_id.in_(sub)]


def _take(
    op: _Op,
    sku: Sku,
    quantity: Decimal,
    scope: Location | Warehouse,
    *,
    strategy: Strategy = "fifo",
    lot_ids: Sequence[int] | None = None,
    allow_partial: bool = False,
    allow_expired: bool = False,
    exact: bool = False,
    exclude_location: int | None = None,
) -> list[_Taken]:
    """Reserve ``quantity`` on the best quants of ``scope`` (conditional updates, in order).

    Without ``allow_partial``, a shortage gives everything back and raises
    :class:`ShortageError`. The reservations are registered for undo in ``op``.
    """
    where = [Q.c.tenant_id == op.tid, Q.c.sku_id == sku.id, Q.c.quantity > Q.c.reserved]
    where += _scope_where(op, scope, exact)
    cols = [Q.c.id, Q.c.location_id, Q.c.lot_id, q_available.label("available")]
    stmt = select(*cols)
    if lot_ids is not None:
        where.append(Q.c.lot_id.in_(list(lot_ids)))
    if exclude_location is not None:
        where.append(Q.c.location_id != exclude_location)
    if sku.tracking != "none":
        stmt = stmt.select_from(Q.outerjoin(LOT, LOT.c.id == Q.c.lot_id))
        if not allow_expired:
            today = _today(op.session, op.tid)
            where.append(or_(LOT.c.expiry.is_(None), LOT.c.expiry >= today))
    stmt = stmt.where(*where)
    if strategy == "fefo" and sku.tracking != "none":
        stmt = stmt.order_by(LOT.c.expiry.asc().nulls_last(), Q.c.in_date, Q.c.id)
    else:
        stmt = stmt.order_by(Q.c.in_date, Q.c.id)
    candidates = op.conn.execute(stmt).all()
    taken, remaining = _take_from(op, candidates, quantity)
    if remaining > 0 and not allow_partial:
        op.rollback_writes()
        where_name = scope.path if isinstance(scope, Location) else f"warehouse {scope.code}"
        raise ShortageError(sku.code, quantity, quantity - remaining, where_name)
    return taken


def _take_from(
    op: _Op, candidates: Sequence[Any], quantity: Decimal
) -> tuple[list[_Taken], Decimal]:
    """Reserve up to ``quantity`` on ``candidates`` (rows with ``id``, ``location_id``,
    ``lot_id``, ``available``), in order; returns what was taken and what is missing."""
    remaining = quantity
    taken: list[_Taken] = []
    for c in candidates:
        if remaining <= 0:
            break
        available = c.available
        while available > 0:
            take = min(available, remaining)
            params = {"qid": c.id, "tid": op.tid, "take": take}
            if op.conn.execute(_TAKE, params).rowcount == 1:
                taken.append(_Taken(c.id, c.location_id, c.lot_id, take))
                op.undo.append(lambda p=params: _give_back(op, p))  # type: ignore[misc]
                remaining -= take
                break
            # someone took from this quant since we looked: see what is left (each retry
            # follows a commit of another transaction, so this ends)
            left = op.conn.execute(_AVAILABLE, {"qid": c.id, "tid": op.tid}).scalar() or 0
            if left >= take:  # pragma: no cover - would loop: the update is not conditional
                raise RuntimeError(f"quant {c.id} has {left} available but cannot be reserved")
            available = left
    return taken, remaining


def _give_back(op: _Op, params: dict[str, Any]) -> None:
    if op.conn.execute(_GIVE_BACK, params).rowcount != 1:  # pragma: no cover - invariant
        raise RuntimeError(f"could not give back a reservation on quant {params['qid']}")


def _insert_moves(op: _Op, values: list[dict[str, Any]]) -> list[int]:
    """Insert moves (one statement) and register their deletion for undo."""
    if not values:
        return []
    for v in values:
        v.setdefault("tenant_id", op.tid)
        v.setdefault("created_at", op.now)
        v.setdefault("reference", "")
        v.setdefault("origin_move_id", None)
        v.setdefault("source_type", None)
        v.setdefault("source_id", None)
        v.setdefault("idempotency_key", None)
        v.setdefault("unit_cost", None)
        v.setdefault("value", None)
        v.setdefault("done_at", None)
    if len(values) == 1:
        ids = _MOVE_ROWS.ids(op.conn, values)
    else:
        rows = op.conn.execute(
            M.insert().returning(M.c.id, sort_by_parameter_order=True), values
        ).all()
        ids = [r[0] for r in rows]
    op.undo.append(lambda: _delete_moves(op, ids))
    return ids


def _delete_moves(op: _Op, ids: list[int]) -> None:
    op.conn.execute(M.delete().where(M.c.tenant_id == op.tid, M.c.id.in_(ids)))


def _existing(op: _Op, key: str | None) -> list[Any]:
    """Moves already made with idempotency key ``key`` (a repeated call)."""
    if key is None:
        return []
    # A call's first move carries ``key`` itself (see _keys), so an index look-up answers the
    # common case, a new call; only a repeat reads its other parts (``key#2`` ...), with a
    # LIKE that no index serves.
    first = select(M.c.id).where(M.c.tenant_id == op.tid, M.c.idempotency_key == key)
    if op.conn.execute(first).first() is None:
        return []
    stmt = (
        select(M)
        .where(
            M.c.tenant_id == op.tid,
            or_(
                M.c.idempotency_key == key,
                M.c.idempotency_key.startswith(key + "#", autoescape=True),
            ),
        )
        .order_by(M.c.id)
    )
    return list(op.conn.execute(stmt).all())


def _same_call(rows: list[Any], sku: Sku, what: str) -> None:
    if any(r.sku_id != sku.id for r in rows):
        raise InventoryConflict(f"idempotency key already used for another {what}")


def reserve(
    session: Session,
    sku: SkuRef,
    quantity: Number,
    *,
    warehouse: WarehouseRef | None = None,
    location: LocationRef | None = None,
    to_location: LocationRef | None = None,
    strategy: Strategy = "fifo",
    allow_partial: bool = False,
    lot: str | int | None = None,
    serials: Sequence[str] | None = None,
    source: Source | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
    hooks: Any = None,
) -> Reservation:
    """Reserve ``quantity`` of ``sku`` in ``warehouse`` (any of its internal locations) or in
    ``location`` and the locations below it, for a move to ``to_location`` (default: the
    customer location, i.e. a delivery).

    Stock is taken from quants in ``strategy`` order: ``fifo`` (oldest stock first) or
    ``fefo`` (earliest expiry first); expired lots are never reserved. ``lot`` or ``serials``
    restrict it to given lots / serial numbers. One move in state ``reserved`` is made per
    quant used (one location and lot each).

    Not enough available stock: :class:`ShortageError` (nothing reserved), unless
    ``allow_partial`` is set, in which case what is available is reserved and the result's
    ``shortage`` says what is missing. A repeated call with the same ``idempotency_key``
    returns the first call's reservation without reserving again.
    """
    op = _Op(session, hooks)
    if strategy not in ("fifo", "fefo"):
        raise InventoryError(f"strategy must be 'fifo' or 'fefo', not {strategy!r}")
    key = _key(idempotency_key)
    stype, sid = _source(source)
    ref = _text(reference, "reference", 200, required=False)
    if (
        isinstance(sku, str)
        and isinstance(warehouse, str)
        and location is None
        and lot is None
        and serials is None
        and (to_location is None or isinstance(to_location, str))
        and (key is None or not _existing(op, key))
    ):
        fast = _reserve_fast(
            op,
            sku.strip(),
            quantity,
            warehouse.strip(),
            (to_location or "@customer").strip().strip("/"),
            allow_partial,
            key,
            stype,
            sid,
            ref,
        )
        if fast is not None:
            return fast
    s = get_sku(session, sku)
    qty = _quantity(quantity, s)
    if (warehouse is None) == (location is None):
        raise InventoryError("give either a warehouse or a location to reserve from")
    scope: Location | Warehouse
    if warehouse is not None:
        scope = get_warehouse(session, warehouse)
    else:
        scope = get_location(session, cast(LocationRef, location))
        if scope.usage != "internal" or scope.warehouse_id is None:
            raise InventoryError(f"stock is reserved in a warehouse's locations, not {scope.path}")
    dst = (
        get_location(session, to_location)
        if to_location is not None
        else virtual_location(session, "customer")
    )
    _check_destination(dst)
    lot_ids = _lot_filter(op, s, qty, lot, serials, allow_expired=False)
    done_before = _existing(op, key)
    if done_before:
        _same_call(done_before, s, "reservation")
        lines = tuple(
            ReservedLine(
                move_id=r.id, location_id=r.from_location_id, lot_id=r.lot_id, quantity=r.quantity
            )
            for r in done_before
        )
        got = sum((ln.quantity for ln in lines), Decimal(0))
        return Reservation(
            sku_id=s.id,
            sku_code=s.code,
            requested=qty,
            reserved=got,
            shortage=max(qty - got, Decimal(0)),
            lines=lines,
        )
    taken = _take(
        op, s, qty, scope, strategy=strategy, lot_ids=lot_ids, allow_partial=allow_partial
    )
    keys = _keys(key, len(taken))
    ids = _insert_moves(
        op,
        [
            {
                "sku_id": s.id,
                "quantity": t.quantity,
                "reserved": t.quantity,
                "from_location_id": t.location_id,
                "to_location_id": dst.id,
                "lot_id": t.lot_id,
                "state": "reserved",
                "source_type": stype,
                "source_id": sid,
                "idempotency_key": k,
                "reference": ref,
            }
            for t, k in zip(taken, keys, strict=True)
        ],
    )
    for t in taken:
        if isinstance(scope, Warehouse):
            op.touched.add((s.id, scope.id))
        else:
            _touch(op, s.id, op.location(t.location_id))
    got = sum((t.quantity for t in taken), Decimal(0))
    try:
        _finish(op)
    except BaseException:
        op.rollback_writes()
        raise
    return Reservation(
        sku_id=s.id,
        sku_code=s.code,
        requested=qty,
        reserved=got,
        shortage=qty - got,
        lines=tuple(
            ReservedLine(move_id=i, location_id=t.location_id, lot_id=t.lot_id, quantity=t.quantity)
            for i, t in zip(ids, taken, strict=True)
        ),
    )


#: PostgreSQL: the whole single-quant reservation in one round trip, through the function made
#: by migration c0000006 (see there): the move is inserted first and the hot quant's row lock is
#: taken last, so that it is held only from that update to COMMIT. Values are raw scaled
#: integers (``Quantity``). A row without ``move_id``: not served here, nothing written.
#: Run on the DBAPI cursor (psycopg's paramstyle, prepared by psycopg after a few uses).
_PG_RESERVE_ONE = (
    "SELECT sku_id, warehouse_id, move_id, from_location_id, quant_id FROM erp_inv_reserve_one("
    "%(tid)s::bigint, %(sku)s::text, %(wh)s::text, %(dst)s::text, %(take)s::bigint,"
    " %(places)s::integer, %(now)s::timestamptz, %(stype)s::text, %(sid)s::text,"
    " %(key)s::text, %(ref)s::text)"
)


def _reserve_pg_one(
    op: _Op,
    sku_code: str,
    qty: Decimal,
    wh_code: str,
    dst_path: str,
    key: str | None,
    stype: str | None,
    sid: str | None,
    ref: str,
) -> Reservation | None:
    """One round trip when one quant can serve the whole request (PostgreSQL); else None
    (nothing written)."""
    take = int(qty.scaleb(4))
    # SQLAlchemy's statement and result set-up for this textual statement cost about as much
    # as the function's own work: this is the hot path of a flash sale.
    row = fetch_one_raw(
        op.conn,
        _PG_RESERVE_ONE,
        {
            "tid": op.tid,
            "sku": sku_code,
            "wh": wh_code,
            "dst": dst_path,
            "take": take,
            "places": _places(qty),
            "now": op.now,
            "stype": stype,
            "sid": sid,
            "key": key,
            "ref": ref,
        },
    )
    if row is None or row[2] is None:
        return None
    sku_id, warehouse_id, move_id, from_location_id, quant_id = row
    params = {"qid": quant_id, "tid": op.tid, "take": qty}
    op.undo.append(lambda: _give_back(op, params))
    op.undo.append(lambda: _delete_moves(op, [move_id]))
    op.touched.add((sku_id, warehouse_id))
    try:
        _finish(op)
    except BaseException:
        op.rollback_writes()
        raise
    return Reservation(
        sku_id=sku_id,
        sku_code=sku_code,
        requested=qty,
        reserved=qty,
        shortage=Decimal(0).quantize(CENT),
        lines=(
            ReservedLine(
                move_id=move_id,
                location_id=from_location_id,
                lot_id=None,
                quantity=qty,
            ),
        ),
    )


def _reserve_fast(
    op: _Op,
    sku_code: str,
    quantity: Number,
    wh_code: str,
    dst_path: str,
    allow_partial: bool,
    key: str | None,
    stype: str | None,
    sid: str | None,
    ref: str,
) -> Reservation | None:
    """The reservation path of an untracked SKU named by code in a warehouse named by code:
    one look-up, one conditional update per quant used, one insert. Returns None when the
    general path must decide (unknown names, tracked SKUs, invalid quantities: it raises the
    precise error)."""
    try:
        d = to_decimal(quantity)
    except InventoryError:
        return None
    if not 0 < d <= MAX_QUANTITY:
        return None
    if op.is_pg:
        one = _reserve_pg_one(
            op, sku_code, d.quantize(CENT), wh_code, dst_path, key, stype, sid, ref
        )
        if one is not None:
            return one
    params = {"tid": op.tid, "sku": sku_code, "wh": wh_code, "dst": dst_path}
    rows = _FAST_LOOKUP.rows(op.conn, params)
    if not rows or rows[0].dst_id is None or rows[0].tracking != "none":
        return None
    head = rows[0]
    if _places(d) > head.decimals:
        return None
    qty = d.quantize(CENT)
    taken, remaining = _take_from(op, [r for r in rows if r.id is not None], qty)
    if remaining > 0 and not allow_partial:
        op.rollback_writes()
        raise ShortageError(sku_code, qty, qty - remaining, f"warehouse {wh_code}")
    keys = _keys(key, len(taken))
    ids = _insert_moves(
        op,
        [
            {
                "sku_id": head.sku_id,
                "quantity": t.quantity,
                "reserved": t.quantity,
                "from_location_id": t.location_id,
                "to_location_id": head.dst_id,
                "lot_id": None,
                "state": "reserved",
                "source_type": stype,
                "source_id": sid,
                "idempotency_key": k,
                "reference": ref,
            }
            for t, k in zip(taken, keys, strict=True)
        ],
    )
    if taken:
        op.touched.add((head.sku_id, head.warehouse_id))
    try:
        _finish(op)
    except BaseException:
        op.rollback_writes()
        raise
    got = qty - remaining
    return Reservation(
        sku_id=head.sku_id,
        sku_code=sku_code,
        requested=qty,
        reserved=got,
        shortage=remaining,
        lines=tuple(
            ReservedLine(move_id=i, location_id=t.location_id, lot_id=None, quantity=t.quantity)
            for i, t in zip(ids, taken, strict=True)
        ),
    )


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """One reservation of :func:`reserve_many`: ``quantity`` of ``sku`` in ``warehouse``.

    Requests with the same ``group`` (an order) are reserved all or none."""

    sku: SkuRef
    quantity: Number
    warehouse: WarehouseRef
    group: Any = None
    source: Source | None = None
    idempotency_key: str | None = None
    reference: str = ""


@dataclass(frozen=True, slots=True)
class ReservedMany:
    """What :func:`reserve_many` did: per request its :class:`Reservation`, or None when its
    group was short; per short group the first shortage."""

    reservations: list[Reservation | None]
    shortages: dict[Any, ShortageError]


def reserve_many(
    session: Session,
    requests: Iterable[ReserveRequest],
    *,
    to_location: LocationRef | None = None,
    hooks: Any = None,
) -> ReservedMany:
    """Reserve many requests at once, as bulk work does (a page of orders): each group of
    requests (``ReserveRequest.group``, an order) all or none, groups in the order they first
    appear, each request from its warehouse's oldest stock first (FIFO), for moves to
    ``to_location`` (default: the customer location).

    A group that cannot be served in full reserves nothing and is reported in ``shortages``
    (the others go on); invalid input (an unknown SKU or warehouse, a bad quantity) raises
    :class:`InventoryError` and reserves nothing. The stock of the requested SKUs is locked
    first (:func:`lock_stock`); the quants, the moves and the stock report are then written
    with one statement each, whatever the number of requests. Tracked SKUs (lots, serials)
    and repeated idempotency keys take the path of :func:`reserve`, one request at a time.
    Same result as :func:`reserve` for each request in turn, stopping a group at its first
    shortage.
    """
    reqs = list(requests)
    out: list[Reservation | None] = [None] * len(reqs)
    shortages: dict[Any, ShortageError] = {}
    if not reqs:
        return ReservedMany(out, shortages)
    op = _Op(session, hooks)
    dst = (
        get_location(session, to_location)
        if to_location is not None
        else _virtual_to_read(op, "customer")
    )
    _check_destination(dst)
    _hold_many(session, Sku, [r.sku for r in reqs if isinstance(r, ReserveRequest)], op.tid)
    parsed: list[tuple[Sku, Decimal, Warehouse, str | None, str | None, str | None, str]] = []
    groups: dict[Any, list[int]] = {}
    skus: dict[Any, Sku] = {}  # each name looked up once
    whs: dict[Any, Warehouse] = {}
    for i, r in enumerate(reqs):
        if not isinstance(r, ReserveRequest):
            raise InventoryError(f"request {i + 1} is not a ReserveRequest")
        sku = skus.get(r.sku) or skus.setdefault(r.sku, _to_read(op, Sku, r.sku, get_sku))
        wh = whs.get(r.warehouse) or whs.setdefault(
            r.warehouse, _to_read(op, Warehouse, r.warehouse, get_warehouse)
        )
        stype, sid = _source(r.source)
        parsed.append(
            (
                sku,
                _quantity(r.quantity, sku),
                wh,
                _key(r.idempotency_key),
                stype,
                sid,
                _text(r.reference, "reference", 200, required=False),
            )
        )
        groups.setdefault(r.group, []).append(i)
    keys = [k for _, _, _, k, _, _, _ in parsed if k is not None]
    repeated: set[str] = set()
    for i in range(0, len(keys), 500):
        found = _KEYS_TAKEN.scalars(op.conn, {"tid": op.tid, "keys": keys[i : i + 500]})
        repeated.update(k for k in found if k is not None)
    lock_stock(session, {sku.id for sku, *_ in parsed})
    general = {
        g
        for g, idx in groups.items()
        if any(parsed[i][0].tracking != "none" or parsed[i][3] in repeated for i in idx)
    }
    with op.atomic():
        # groups in the order they first appear: a run of fast groups at once, a general
        # group on its own (an earlier order is never left short by a later one)
        run: list[tuple[Any, list[int]]] = []
        for g, idx in groups.items():
            if g not in general:
                run.append((g, idx))
                continue
            _reserve_groups(op, dst, parsed, run, out, shortages)
            run = []
            _reserve_one_by_one(session, dst, parsed, g, idx, hooks, out, shortages)
        _reserve_groups(op, dst, parsed, run, out, shortages)
        _finish(op)
    return ReservedMany(out, shortages)


def _reserve_one_by_one(
    session: Session,
    dst: Location,
    parsed: Sequence[tuple[Sku, Decimal, Warehouse, str | None, str | None, str | None, str]],
    group: Any,
    idx: list[int],
    hooks: Any,
    out: list[Reservation | None],
    shortages: dict[Any, ShortageError],
) -> None:
    """The general path of :func:`reserve_many` (tracked SKUs, repeated keys): a request at a
    time through :func:`reserve`, the group in a savepoint."""
    try:
        with session.begin_nested():
            for i in idx:
                sku, qty, wh, key, stype, sid, ref = parsed[i]
                out[i] = reserve(  # (by id: the rows may be kept copies)
                    session,
                    sku.id,
                    qty,
                    warehouse=wh.id,
                    to_location=dst.id,
                    source=(stype, sid) if stype is not None and sid is not None else None,
                    idempotency_key=key,
                    reference=ref,
                    hooks=hooks,
                )
    except ShortageError as exc:
        for i in idx:
            out[i] = None
        shortages[group] = exc


#: The quants with free stock of some SKUs in some warehouses, oldest first (FIFO)
_QUANT_POOL = Direct(
    select(Q.c.id, Q.c.sku_id, Q.c.warehouse_id, Q.c.location_id, q_available)
    .where(
        Q.c.tenant_id == bindparam("tid"),
        Q.c.sku_id.in_(bindparam("skus", expanding=True)),
        Q.c.warehouse_id.in_(bindparam("whs", expanding=True)),
        Q.c.quantity > Q.c.reserved,
    )
    .order_by(Q.c.in_date, Q.c.id)
)
#: Which of some idempotency keys moves of the tenant carry already
_KEYS_TAKEN = Direct(
    select(M.c.idempotency_key).where(
        M.c.tenant_id == bindparam("tid"),
        M.c.idempotency_key.in_(bindparam("keys", expanding=True)),
    )
)


def _reserve_groups(
    op: _Op,
    dst: Location,
    parsed: Sequence[tuple[Sku, Decimal, Warehouse, str | None, str | None, str | None, str]],
    groups: Sequence[tuple[Any, list[int]]],
    out: list[Reservation | None],
    shortages: dict[Any, ShortageError],
) -> None:
    """The fast path of :func:`reserve_many`: untracked SKUs, the stock locked already."""
    if not groups:
        return
    pairs = {(parsed[i][0].id, parsed[i][2].id) for _, idx in groups for i in idx}
    pools: dict[tuple[int, int], list[list[Any]]] = {pair: [] for pair in pairs}
    args = {
        "tid": op.tid,
        "skus": sorted({s for s, _ in pairs}),
        "whs": sorted({w for _, w in pairs}),
    }
    for qid, sku_id, wh_id, loc_id, free in _QUANT_POOL.rows(op.conn, args):
        pool = pools.get((sku_id, wh_id))
        if pool is not None:
            pool.append([qid, loc_id, Decimal(free)])
    planned: list[tuple[int, list[tuple[list[Any], Decimal]]]] = []
    for group, idx in groups:
        tentative: list[tuple[int, list[tuple[list[Any], Decimal]]]] = []
        short: ShortageError | None = None
        for i in idx:
            sku, qty, wh, *_ = parsed[i]
            need, takes = qty, []
            for quant in pools[(sku.id, wh.id)]:
                if need <= 0:
                    break
                take = min(quant[2], need)
                if take > 0:
                    quant[2] -= take
                    need -= take
                    takes.append((quant, take))
            tentative.append((i, takes))
            if need > 0:
                short = ShortageError(sku.code, qty, qty - need, f"warehouse {wh.code}")
                break
        if short is not None:
            for _, takes in tentative:  # give the group's share back to the pools
                for quant, take in takes:
                    quant[2] += take
            shortages[group] = short
            continue
        planned.extend(tentative)
    if not planned:
        return
    by_quant: dict[int, Decimal] = {}
    rows: list[dict[str, Any]] = []
    for i, takes in planned:
        sku, _, wh, key, stype, sid, ref = parsed[i]
        for (quant, take), k in zip(takes, _keys(key, len(takes)), strict=True):
            by_quant[quant[0]] = by_quant.get(quant[0], Decimal(0)) + take
            rows.append(
                {
                    "tenant_id": op.tid,
                    "sku_id": sku.id,
                    "quantity": take,
                    "reserved": take,
                    "from_location_id": quant[1],
                    "to_location_id": dst.id,
                    "lot_id": None,
                    "state": "reserved",
                    "created_at": op.now,
                    "source_type": stype,
                    "source_id": sid,
                    "idempotency_key": k,
                    "origin_move_id": None,
                    "reference": ref,
                    "unit_cost": None,
                    "value": None,
                    "done_at": None,
                }
            )
        op.touched.add((sku.id, wh.id))
    params = [{"qid": q, "tid": op.tid, "take": t} for q, t in sorted(by_quant.items())]
    if _TAKE_MANY(op.conn, params).rowcount != len(params):  # pragma: no cover - locked
        raise RuntimeError("the locked stock changed under a reservation")

    def give_back() -> None:
        _GIVE_BACK_MANY(op.conn, params)

    op.undo.append(give_back)
    ids = _insert_rows_returning_ids(op, rows)
    op.undo.append(lambda: _delete_moves(op, ids))
    at = 0
    for i, takes in planned:
        sku, qty, *_ = parsed[i]
        lines = tuple(
            ReservedLine(move_id=ids[at + n], location_id=quant[1], lot_id=None, quantity=take)
            for n, (quant, take) in enumerate(takes)
        )
        at += len(takes)
        out[i] = Reservation(
            sku_id=sku.id,
            sku_code=sku.code,
            requested=qty,
            reserved=qty,
            shortage=Decimal(0).quantize(CENT),
            lines=lines,
        )


#: The columns that tell two moves apart when their ids come back from one multi-row insert.
_MOVE_IDENTITY = (
    "idempotency_key",
    "sku_id",
    "from_location_id",
    "quantity",
    "source_type",
    "source_id",
    "reference",
)
_INSERT_MOVES_RETURNING = M.insert().returning(M.c.id, *(M.c[c] for c in _MOVE_IDENTITY))


def _insert_rows_returning_ids(op: _Op, rows: list[dict[str, Any]]) -> list[int]:
    """Insert moves with one statement; their ids in the order of ``rows``. The database
    returns the rows in any order: they are matched by their values (moves equal in all of
    them are interchangeable)."""
    if len(rows) <= FEW_ROWS:
        return _MOVE_ROWS.ids(op.conn, rows)
    found: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for row in op.conn.execute(_INSERT_MOVES_RETURNING, rows):
        found[tuple(row[1:])].append(row[0])
    for ids in found.values():
        ids.sort(reverse=True)  # the earlier row of equal ones takes the lower id
    return [found[tuple(r[c] for c in _MOVE_IDENTITY)].pop() for r in rows]


def _hold_many(session: Session, cls: type[_T], refs: Iterable[Any], tid: int) -> None:
    """Read the rows of ``cls`` named by id in ``refs`` with one query and hold them (see
    :func:`_held`), so that the look-ups that follow cost nothing."""
    held = session.info.setdefault(_HELD, {})
    ids = sorted(
        {r for r in refs if isinstance(r, int) and not isinstance(r, bool) and 0 < r < 2**63}
        - {i for c, i in held if c is cls}
    )
    ids = [i for i in ids if kept_copy(session, cls, i) is None]  # those need no query
    for ident, obj in kept_rows(session, cls, ids).items():
        if obj.tenant_id in (None, tid):
            held[(cls, ident)] = obj
    ids = [i for i in ids if (cls, i) not in held]
    for i in range(0, len(ids), 500):
        found = list(session.scalars(select(cls).where(cls.id.in_(ids[i : i + 500]))))
        keep_rows(session, found)
        for obj in found:
            if obj.tenant_id in (None, tid):
                held[(cls, obj.id)] = obj


def _check_destination(dst: Location) -> None:
    if dst.kind != "stock":
        raise InventoryError(f"{dst.path} is a view location; stock goes to a stock location")


def _lot_filter(
    op: _Op,
    sku: Sku,
    qty: Decimal,
    lot: str | int | None,
    serials: Sequence[str] | None,
    *,
    allow_expired: bool,
) -> list[int] | None:
    """Lot ids a take is restricted to (None: any lot)."""
    if lot is not None and serials is not None:
        raise InventoryError("give a lot or serial numbers, not both")
    if lot is None and serials is None:
        return None
    if sku.tracking == "none":
        raise InventoryError(f"SKU {sku.code} is not tracked by lot or serial number")
    if lot is not None:
        found = [get_lot(op.session, sku, lot)]
    else:
        if sku.tracking != "serial":
            raise InventoryError(f"SKU {sku.code} is tracked by lot, not serial number")
        found = [get_lot(op.session, sku, c) for c in _serial_codes(cast(Sequence[str], serials))]
    if sku.tracking == "serial" and Decimal(len(found)) != qty:
        raise InventoryError(
            f"{len(found)} serial number(s) given for a quantity of {_fmt(qty)}; "
            "a serial number is one unit"
        )
    for x in found:
        _check_not_expired(op, sku, x, allow_expired)
    return [x.id for x in found]


def _serial_codes(serials: Sequence[str]) -> list[str]:
    if isinstance(serials, str) or not all(isinstance(c, str) for c in serials):
        raise InventoryError("serial numbers must be a list of strings")
    codes = [_text(c, "serial number", 64) for c in serials]
    seen: set[str] = set()
    for c in codes:
        if c in seen:
            raise InventoryError(f"serial number {c!r} is given more than once")
        seen.add(c)
    if not codes:
        raise InventoryError("no serial numbers given")
    return codes


def _check_not_expired(op: _Op, sku: Sku, lot: Lot, allow_expired: bool) -> None:
    if allow_expired or lot.expiry is None:
        return
    today = _today(op.session, op.tid)
    if lot.expiry < today:
        raise InventoryError(f"lot {lot.code} of {sku.code} expired on {lot.expiry.isoformat()}")


# --- moves: create, reserve, release, cancel, complete ---------------------------------------


def create_move(
    session: Session,
    sku: SkuRef,
    quantity: Number,
    *,
    from_location: LocationRef,
    to_location: LocationRef,
    lot: str | int | None = None,
    unit_cost: Number | None = None,
    source: Source | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
) -> Move:
    """Create a draft move. Reserve it with :func:`reserve_move`, finish it with
    :func:`complete` (which reserves a draft first), or :func:`cancel` it.

    One side must be a location holding own stock (internal or transit). A move from the
    supplier location needs ``unit_cost`` (the purchase cost per unit); a tracked SKU coming
    from outside needs ``lot``, an existing lot or serial number (:func:`receive` creates new
    ones); a serial-tracked SKU moves one serial number per move.
    """
    op = _Op(session, None)
    s = get_sku(session, sku)
    qty = _quantity(quantity, s)
    src = get_location(session, from_location)
    dst = get_location(session, to_location)
    _check_pair(src, dst)
    key = _key(idempotency_key)
    stype, sid = _source(source)
    cost = _unit_cost(unit_cost) if unit_cost is not None else None
    if src.usage == "supplier" and cost is None:
        raise InventoryError("a move from a supplier needs the unit_cost it was bought at")
    if cost is not None and src.usage != "supplier":
        raise InventoryError("unit_cost is given only for moves from a supplier")
    lot_id: int | None = None
    if lot is not None:
        if s.tracking == "none":
            raise InventoryError(f"SKU {s.code} is not tracked by lot")
        if s.tracking == "serial" and qty != 1:
            raise InventoryError("a move of one serial number has quantity 1 (one unit)")
        found = get_lot(session, s, lot)
        if src.usage not in OWNED_USAGES:
            _check_serial_not_in_stock(op, s, [found])
        lot_id = found.id
    elif s.tracking != "none" and src.usage not in OWNED_USAGES:
        what = "serial number" if s.tracking == "serial" else "lot"
        raise InventoryError(f"SKU {s.code} is tracked by {what}: give the {what} it comes in")
    if s.tracking == "serial" and lot_id is not None and qty != 1:
        raise InventoryError("a move of one serial number has quantity 1")
    before = _existing(op, key)
    if before:
        _same_call(before, s, "move")
        return get_move(session, before[0].id)
    [move_id] = _insert_moves(
        op,
        [
            {
                "sku_id": s.id,
                "quantity": qty,
                "reserved": Decimal(0),
                "from_location_id": src.id,
                "to_location_id": dst.id,
                "lot_id": lot_id,
                "state": "draft",
                "unit_cost": cost,
                "source_type": stype,
                "source_id": sid,
                "idempotency_key": key,
                "reference": _text(reference, "reference", 200, required=False),
            }
        ],
    )
    return get_move(session, move_id)


def _check_pair(src: Location, dst: Location) -> None:
    if src.id == dst.id:
        raise InventoryError("a move needs two different locations")
    _check_destination(dst)
    if src.usage not in OWNED_USAGES and dst.usage not in OWNED_USAGES:
        raise InventoryError(
            f"a move from {src.path} to {dst.path} does not touch own stock; one side must be "
            "a warehouse or transit location"
        )


def _check_serial_not_in_stock(op: _Op, sku: Sku, lots: Sequence[Lot]) -> None:
    """Serial numbers coming from outside must not already be in stock somewhere."""
    if sku.tracking != "serial" or not lots:
        return
    rows = op.conn.execute(
        select(LOT.c.code, LOC.c.path)
        .select_from(Q.join(LOT, LOT.c.id == Q.c.lot_id).join(LOC, LOC.c.id == Q.c.location_id))
        .where(Q.c.tenant_id == op.tid, Q.c.lot_id.in_([x.id for x in lots]), Q.c.quantity > 0)
    ).first()
    if rows is not None:
        raise InventoryConflict(
            f"serial number {rows.code} of {sku.code} is already in stock at {rows.path}"
        )


def _move_ids(moves: MoveRef | Iterable[MoveRef]) -> list[int]:
    items = [moves] if isinstance(moves, Move | int) else list(moves)
    ids: list[int] = []
    for m in items:
        i = m.id if isinstance(m, Move) else m
        if not isinstance(i, int) or isinstance(i, bool) or not 0 < i < 2**63:
            raise InventoryError(f"unknown move {i!r}")
        if i not in ids:
            ids.append(i)
    if not ids:
        raise InventoryError("no moves given")
    return ids


_MOVES = (
    select(M)
    .where(
        beside_key(M.c.tenant_id) == bindparam("t"), M.c.id.in_(bindparam("ids", expanding=True))
    )
    .order_by(M.c.id)
)
#: the same, locked until the transaction ends (PostgreSQL)
_MOVES_D = Direct(_MOVES)
_MOVES_LOCKED = Direct(_MOVES.with_for_update())


def _load(op: _Op, ids: list[int]) -> list[_Row]:
    """Lock and read moves (in id order, so concurrent callers lock in the same order)."""
    op.write_lock()
    stmt = _MOVES_LOCKED if op.is_pg else _MOVES_D
    found = {r.id: r for r in stmt.rows(op.conn, {"t": op.tid, "ids": ids})}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InventoryError(f"unknown move id {missing[0]}")
    rows = []
    for i in ids:
        r = found[i]
        sku = op.read_only(Sku, r.sku_id)
        assert sku is not None
        rows.append(
            _Row(
                id=r.id,
                sku=sku,
                quantity=r.quantity,
                reserved=r.reserved,
                src=op.location(r.from_location_id),
                dst=op.location(r.to_location_id),
                lot_id=r.lot_id,
                state=r.state,
                unit_cost=r.unit_cost,
                source_type=r.source_type,
                source_id=r.source_id,
            )
        )
    return rows


def _set_moves(op: _Op, ids: Sequence[int], **values: Any) -> None:
    if not ids:
        return
    params = {f"v_{k}": v for k, v in values.items()}
    op.conn.execute(
        _set_moves_statement(tuple(sorted(values))), {"t": op.tid, "ids": list(ids), **params}
    )
    _expire(op.session, ids)


@functools.lru_cache(maxsize=32)
def _set_moves_statement(columns: tuple[str, ...]) -> Any:
    """``UPDATE`` of ``columns`` of the tenant's moves ``:ids``, built once per set of columns."""
    return (
        update(M)
        .where(
            beside_key(M.c.tenant_id) == bindparam("t"),
            M.c.id.in_(bindparam("ids", expanding=True)),
        )
        .values({c: bindparam(f"v_{c}", type_=M.c[c].type) for c in columns})
    )


def _expire(session: Session, ids: Iterable[int]) -> None:
    """Forget stale ORM copies of moves changed with SQL statements."""
    for i in ids:
        obj = session.identity_map.get(session.identity_key(Move, i))
        if obj is not None:
            session.expire(obj)


def _reserve_row(
    op: _Op, row: _Row, strategy: Strategy, allow_partial: bool, allow_expired: bool = False
) -> list[int]:
    """Reserve a draft move; returns the ids of the moves now reserved (the move itself and
    the moves split off it when its stock comes from several quants). With
    ``allow_partial``, what could not be reserved stays in a new draft move."""
    if not row.src.owned and row.src.kind != "view":
        # from a supplier, a customer, the adjustment location: nothing to hold
        _set_moves(op, [row.id], state="reserved")
        row.state = "reserved"
        return [row.id]
    lot_ids = [row.lot_id] if row.lot_id is not None else None
    if row.lot_id is not None and not allow_expired:
        lot = op.session.get(Lot, row.lot_id)
        assert lot is not None
        _check_not_expired(op, row.sku, lot, allow_expired)
    taken = _take(
        op,
        row.sku,
        row.quantity,
        row.src,
        strategy=strategy,
        lot_ids=lot_ids,
        allow_partial=allow_partial,
        allow_expired=allow_expired,
    )
    got = sum((t.quantity for t in taken), Decimal(0))
    if not taken:
        return []
    first, rest = taken[0], taken[1:]
    before = {"state": row.state, "quantity": row.quantity, "reserved": row.reserved}
    before |= {"from_location_id": row.src.id, "lot_id": row.lot_id}
    _set_moves(
        op,
        [row.id],
        state="reserved",
        quantity=first.quantity,
        reserved=first.quantity,
        from_location_id=first.location_id,
        lot_id=first.lot_id,
    )
    op.undo.append(lambda: _set_moves(op, [row.id], **before))
    common: dict[str, Any] = {
        "sku_id": row.sku.id,
        "to_location_id": row.dst.id,
        "origin_move_id": row.id,
        "source_type": row.source_type,
        "source_id": row.source_id,
    }
    split: list[dict[str, Any]] = [
        common
        | {
            "quantity": t.quantity,
            "reserved": t.quantity,
            "from_location_id": t.location_id,
            "lot_id": t.lot_id,
            "state": "reserved",
        }
        for t in rest
    ]
    if got < row.quantity:
        split.append(
            common
            | {
                "quantity": row.quantity - got,
                "reserved": Decimal(0),
                "from_location_id": row.src.id,
                "lot_id": row.lot_id,
                "state": "draft",
            }
        )
    new_ids = _insert_moves(op, split)
    for t in taken:
        _touch(op, row.sku.id, op.location(t.location_id))
    row.src = op.location(first.location_id)
    row.lot_id = first.lot_id
    row.quantity = row.reserved = first.quantity
    row.state = "reserved"
    return [row.id, *new_ids[: len(rest)]]


def reserve_move(
    session: Session,
    move: MoveRef,
    *,
    strategy: Strategy = "fifo",
    allow_partial: bool = False,
    hooks: Any = None,
) -> list[Move]:
    """Reserve a draft move's stock at its source location (and the locations below it).

    Returns the reserved moves: the move itself, plus moves split off it when the stock
    comes from several quants (lots, bins). With ``allow_partial``, the part that cannot be
    reserved stays in a new draft move (``origin_move_id`` = this move); otherwise a
    shortage raises :class:`ShortageError` and nothing changes.
    """
    op = _Op(session, hooks)
    if strategy not in ("fifo", "fefo"):
        raise InventoryError(f"strategy must be 'fifo' or 'fefo', not {strategy!r}")
    with op.atomic():
        [row] = _load(op, _move_ids(move))
        if row.state != "draft":
            raise InventoryConflict(f"move {row.id} is {row.state}; only a draft move is reserved")
        ids = _reserve_row(op, row, strategy, allow_partial)
        _finish(op)
    return _fresh_moves(session, list(ids))


def release(
    session: Session,
    moves: MoveRef | Iterable[MoveRef],
    *,
    keep_move: bool = False,
    hooks: Any = None,
) -> list[Move]:
    """Give the stock reserved by ``moves`` back (it is available again). The moves are
    cancelled, or with ``keep_move`` go back to draft. Only reserved moves can be released."""
    op = _Op(session, hooks)
    with op.atomic():
        rows = _load(op, _move_ids(moves))
        for r in rows:
            if r.state != "reserved":
                raise InventoryConflict(f"move {r.id} is {r.state}, not reserved")
        _unreserve(op, rows)
        state = "draft" if keep_move else "cancelled"
        _set_moves(op, [r.id for r in rows], state=state, reserved=Decimal(0))
        _finish(op)
    return _fresh_moves(session, [r.id for r in rows])


def _unreserve(op: _Op, rows: Sequence[_Row]) -> None:
    for r in rows:
        if r.reserved > 0:
            res = op.conn.execute(
                update(Q)
                .where(
                    Q.c.tenant_id == op.tid,
                    Q.c.sku_id == r.sku.id,
                    Q.c.location_id == r.src.id,
                    Q.c.lot_key == (r.lot_id or 0),
                    Q.c.reserved >= r.reserved,
                )
                .values(reserved=Q.c.reserved - r.reserved)
            )
            if res.rowcount != 1:  # pragma: no cover - invariant
                raise RuntimeError(f"reservation of move {r.id} not found on its quant")
            _touch(op, r.sku.id, r.src)


def cancel(
    session: Session, moves: MoveRef | Iterable[MoveRef], *, hooks: Any = None
) -> list[Move]:
    """Cancel draft or reserved moves (reserved stock becomes available again). Cancelling a
    cancelled move does nothing; a done move cannot be cancelled (move the stock back)."""
    op = _Op(session, hooks)
    with op.atomic():
        rows = _load(op, _move_ids(moves))
        for r in rows:
            if r.state == "done":
                raise InventoryConflict(
                    f"move {r.id} is done and cannot be cancelled; make a move back instead"
                )
        live = [r for r in rows if r.state != "cancelled"]
        _unreserve(op, [r for r in live if r.state == "reserved"])
        _set_moves(op, [r.id for r in live], state="cancelled", reserved=Decimal(0))
        _finish(op)
    return _fresh_moves(session, [r.id for r in rows])


def complete(
    session: Session,
    moves: MoveRef | Iterable[MoveRef],
    *,
    strategy: Strategy = "fifo",
    hooks: Any = None,
    dimensions: Mapping[str, str] | None = None,
    move_dimensions: Mapping[int, Mapping[str, str]] | None = None,
    read_back: bool = True,
) -> list[Move]:
    """Mark moves done: stock leaves the source and arrives at the destination, atomically.

    A draft move is reserved first (see :func:`reserve_move`; it may be split over several
    quants, and every part is completed). Moves between a virtual location and own stock
    are valued at the moving average cost (receipts at their unit cost) and reported through
    ``erp_stock_valued``, with ``dimensions`` (``channel``, ``store``, ``order``: what the
    caller knows of the sale) on the valuation, so that the cost of goods sold lands on the
    same dimensions as the revenue. Bulk work (a page of parcels of many orders) completes all
    its moves in one call and gives each move's dimensions in ``move_dimensions`` (move id ->
    dimensions; they replace ``dimensions`` for that move). Returns the done moves, read
    again; with ``read_back=False`` nothing is read and the list is empty (bulk work that has
    no use for them saves a query).
    """
    op = _Op(session, hooks)
    op.dimensions = _dimensions(dimensions)
    per_move = {int(i): _dimensions(d) for i, d in (move_dimensions or {}).items()}
    if strategy not in ("fifo", "fefo"):
        raise InventoryError(f"strategy must be 'fifo' or 'fefo', not {strategy!r}")
    with op.atomic():
        rows = _load(op, _move_ids(moves))
        stray = sorted(set(per_move) - {r.id for r in rows})
        if stray:
            raise InventoryError(f"dimensions for move {stray[0]}, which is not completed here")
        for r in rows:
            if r.state in ("done", "cancelled"):
                raise InventoryConflict(f"move {r.id} is {r.state} already")
            r.dims = per_move.get(r.id)
        done: list[_Row] = []
        for r in rows:
            if r.state == "draft":
                ids = _reserve_row(op, r, strategy, allow_partial=False)
                done.append(r)
                if len(ids) > 1:
                    for part in _load(op, ids[1:]):
                        part.dims = r.dims
                        done.append(part)
            else:
                done.append(r)
        _apply_done(op, done)
        _finish(op)
    return _fresh_moves(session, [r.id for r in done]) if read_back else []


def _dimensions(given: Mapping[str, str] | None) -> dict[str, str]:
    unknown = sorted(set(given or {}) - {"channel", "store", "order"})
    if unknown:
        raise InventoryError(f"unknown valuation dimension(s) {', '.join(unknown)}")
    return {k: str(v) for k, v in (given or {}).items() if v}


_FRESH_MOVES = (
    select(Move)
    .where(Move.id.in_(bindparam("ids", expanding=True)))
    .execution_options(populate_existing=True)
)


def _fresh_moves(session: Session, ids: list[int]) -> list[Move]:
    """The moves ``ids``, freshly read in one query, in that order."""
    found = {m.id: m for m in session.scalars(_FRESH_MOVES, {"ids": ids})}
    return [found[i] for i in ids]


def _apply_done(op: _Op, rows: Sequence[_Row]) -> None:
    """Move the stock of reserved (or newly inserted, done) moves and value them."""
    # (their state is set with their value where they are valued: one statement, not two)
    ids = [r.id for r in rows if r.state != "done"]
    taken: dict[tuple[int, int, int], Decimal] = {}  # (SKU, location, lot) -> quantity
    for r in rows:
        if r.src.owned:
            k = (r.sku.id, r.src.id, r.lot_id or 0)
            taken[k] = taken.get(k, Decimal(0)) + r.quantity
            _touch(op, r.sku.id, r.src)
        if r.dst.owned:
            _add_to_quant(op, r.sku.id, r.dst, r.lot_id, r.quantity)
            _touch(op, r.sku.id, r.dst)
        r.state = "done"
    if taken:  # one statement for all the quants the moves leave, in lock order
        res = _TAKE_DONE(
            op.conn,
            [
                {"t": op.tid, "s": sku, "l": loc, "k": lot, "q": qty}
                for (sku, loc, lot), qty in sorted(taken.items())
            ],
        )
        if res.rowcount != len(taken):  # pragma: no cover - invariant: done moves were reserved
            raise RuntimeError("moves were not reserved on their quants")
    finished = _value(op, rows, set(ids))
    _set_moves(
        op, [i for i in ids if i not in finished], state="done", reserved=Decimal(0), done_at=op.now
    )


#: A reserved quantity leaves its quant (executemany: one parameter set per quant).
#: (executemany, erp_core.db.bulk) the quants that done moves leave
_TAKE_DONE = RowStatement(
    update(Q)
    .where(
        Q.c.tenant_id == bindparam("t"),
        Q.c.sku_id == bindparam("s"),
        Q.c.location_id == bindparam("l"),
        Q.c.lot_key == bindparam("k"),
        Q.c.reserved >= bindparam("q", type_=Q.c.reserved.type),
    )
    .values(
        quantity=Q.c.quantity - bindparam("q", type_=Q.c.quantity.type),
        reserved=Q.c.reserved - bindparam("q", type_=Q.c.reserved.type),
    )
)
_VALUE_MOVE = (
    update(M)
    .where(beside_key(M.c.tenant_id) == bindparam("t"), M.c.id == bindparam("m"))
    .values(
        unit_cost=bindparam("c", type_=M.c.unit_cost.type),
        value=bindparam("v", type_=M.c.value.type),
    )
)
#: the same for a move done now: its state, reservation and time with its value
_VALUE_AND_FINISH_MOVE = _VALUE_MOVE.values(
    state="done", reserved=0, done_at=bindparam("at", type_=M.c.done_at.type)
)
_SET_VALUATION = (
    update(VAL)
    .where(VAL.c.tenant_id == bindparam("t"), VAL.c.sku_id == bindparam("s"))
    .values(
        quantity=bindparam("q", type_=VAL.c.quantity.type),
        value=bindparam("v", type_=VAL.c.value.type),
        average_cost=bindparam("a", type_=VAL.c.average_cost.type),
        updated_at=bindparam("at", type_=VAL.c.updated_at.type),
    )
)
#: the statements above run for many rows at once (executemany, erp_core.db.bulk)
_TAKE_MANY = RowStatement(_TAKE)
_GIVE_BACK_MANY = RowStatement(_GIVE_BACK)
_VALUE_MOVES = RowStatement(_VALUE_MOVE)
_VALUE_AND_FINISH_MOVES = RowStatement(_VALUE_AND_FINISH_MOVE)
_SET_VALUATIONS = RowStatement(_SET_VALUATION)


#: a SKU's moving average row, made if missing (per dialect)
_ENSURE_VALUATION = {
    name: make(VAL).on_conflict_do_nothing(index_elements=[VAL.c.tenant_id, VAL.c.sku_id])
    for name, make in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_VALUATIONS = (
    select(VAL.c.sku_id, VAL.c.quantity, VAL.c.value, VAL.c.average_cost)
    .where(VAL.c.tenant_id == bindparam("t"), VAL.c.sku_id.in_(bindparam("s", expanding=True)))
    .order_by(VAL.c.sku_id)
)
#: the same, locked until the transaction ends (PostgreSQL)
_VALUATIONS_D = Direct(_VALUATIONS)
_VALUATIONS_LOCKED = Direct(_VALUATIONS.with_for_update())


def _add_to_quant(op: _Op, sku_id: int, loc: Location, lot_id: int | None, qty: Decimal) -> None:
    values = {
        "tenant_id": op.tid,
        "sku_id": sku_id,
        "location_id": loc.id,
        "warehouse_id": loc.warehouse_id,
        "lot_id": lot_id,
        "lot_key": lot_id or 0,
        "quantity": qty,
        "reserved": Decimal(0),
        "in_date": op.now,
    }
    ins: Any = (postgresql.insert(Q) if op.is_pg else sqlite.insert(Q)).values(values)
    ins = ins.on_conflict_do_update(
        index_elements=[Q.c.tenant_id, Q.c.sku_id, Q.c.location_id, Q.c.lot_key],
        set_={
            "quantity": Q.c.quantity + ins.excluded.quantity,
            # stock arriving in an empty quant is new stock (FIFO)
            "in_date": case((Q.c.quantity == 0, ins.excluded.in_date), else_=Q.c.in_date),
        },
    )
    op.conn.execute(ins)


# --- valuation -------------------------------------------------------------------------------


def _valuation_kind(r: _Row) -> ValuationKind | None:
    if r.src.owned and not r.dst.owned:
        return _VALUED_OUT.get(r.dst.usage)
    if r.dst.owned and not r.src.owned:
        return _VALUED_IN.get(r.src.usage)
    return None


def _value(
    op: _Op, rows: Sequence[_Row], finishing: set[int] | frozenset[int] = frozenset()
) -> set[int]:
    """Update the moving average of each SKU for its valued moves (in order) and collect the
    ``erp_stock_valued`` payloads. The moves of ``finishing`` that are valued are marked done
    in the same statement; returns their ids (the caller marks the others)."""
    by_sku: dict[int, list[tuple[_Row, ValuationKind]]] = {}
    for r in rows:
        kind = _valuation_kind(r)
        if kind is not None:
            by_sku.setdefault(r.sku.id, []).append((r, kind))
    if not by_sku:
        return set()
    currency = _tenant_info(op.session, op.tid)[0]
    skus = sorted(by_sku)
    zero = Decimal(0)
    stmt = _VALUATIONS_LOCKED if op.is_pg else _VALUATIONS_D
    held = {
        r.sku_id: (r.quantity, r.value, r.average_cost)
        for r in stmt.rows(op.conn, {"t": op.tid, "s": skus})
    }
    missing = [sku_id for sku_id in skus if sku_id not in held]
    if missing:  # a SKU's first valued move: its row, then read (and locked) as the others
        op.conn.execute(
            _ENSURE_VALUATION["postgresql" if op.is_pg else "sqlite"],
            [
                {
                    "tenant_id": op.tid,
                    "sku_id": sku_id,
                    "quantity": zero,
                    "value": zero,
                    "average_cost": zero,
                    "updated_at": op.now,
                }
                for sku_id in missing
            ],
        )
        held.update(
            (r.sku_id, (r.quantity, r.value, r.average_cost))
            for r in stmt.rows(op.conn, {"t": op.tid, "s": missing})
        )
    moves: list[dict[str, Any]] = []  # valued moves, done already
    done: list[dict[str, Any]] = []  # valued moves of ``finishing``: done now
    sums: list[dict[str, Any]] = []
    wh_codes: dict[int, str | None] = {}
    for sku_id in skus:
        qty, value, avg = held[sku_id]
        for r, kind in by_sku[sku_id]:
            if kind == "receipt":
                cost = r.unit_cost if r.unit_cost is not None else avg
                amount = _money(r.quantity * cost)
                qty, value = qty + r.quantity, value + amount
            elif r.dst.owned:  # returns and gains come in at the average
                cost = avg
                amount = _money(r.quantity * cost)
                qty, value = qty + r.quantity, value + amount
            else:
                cost = avg
                # the last units out take what value is left
                amount = value if r.quantity >= qty else min(_money(r.quantity * avg), value)
                qty, value = qty - r.quantity, value - amount
            if amount > MAX_MOVE_VALUE or value > MAX_STOCK_VALUE:
                raise InventoryError(f"the value of {r.sku.code} would exceed what can be stored")
            if qty > 0:
                avg = _money(value / qty)
            if r.id in finishing:
                done.append({"t": op.tid, "m": r.id, "c": cost, "v": amount, "at": op.now})
            else:
                moves.append({"t": op.tid, "m": r.id, "c": cost, "v": amount})
            wh_side = r.dst if r.dst.owned else r.src
            wh_code = None
            if wh_side.warehouse_id is not None:
                if wh_side.warehouse_id not in wh_codes:
                    wh = op.read_only(Warehouse, wh_side.warehouse_id)
                    wh_codes[wh_side.warehouse_id] = wh.code if wh is not None else None
                wh_code = wh_codes[wh_side.warehouse_id]
            if amount != 0:
                op.valued.append(
                    StockValuation(
                        move_id=r.id,
                        kind=kind,
                        sku_code=r.sku.code,
                        warehouse_code=wh_code,
                        quantity=r.quantity,
                        unit_cost=cost,
                        value=amount,
                        currency=currency,
                        occurred_at=op.now,
                        source_type=r.source_type,
                        source_id=r.source_id,
                        dimensions=dict(op.dimensions if r.dims is None else r.dims),
                    )
                )
        sums.append({"t": op.tid, "s": sku_id, "q": qty, "v": value, "a": avg, "at": op.now})
    if moves:
        _VALUE_MOVES(op.conn, moves)
    if done:
        _VALUE_AND_FINISH_MOVES(op.conn, done)
    _expire(op.session, [m["m"] for m in (*moves, *done)])
    if sums:
        _SET_VALUATIONS(op.conn, sums)
    op.valued.sort(key=lambda v: v.move_id)
    return {m["m"] for m in done}


# --- receipts, transfers, counts, scrap ------------------------------------------------------


def receive(
    session: Session,
    sku: SkuRef,
    quantity: Number,
    *,
    to_location: LocationRef | None = None,
    warehouse: WarehouseRef | None = None,
    unit_cost: Number | None = None,
    lot: str | None = None,
    expiry: date | None = None,
    serials: Sequence[str] | None = None,
    from_location: LocationRef | None = None,
    source: Source | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
    hooks: Any = None,
) -> list[Move]:
    """Receive goods from a supplier into ``to_location`` (or ``warehouse``'s STOCK): done
    moves at ``unit_cost`` per unit, which updates the moving average cost and is reported
    as a ``receipt`` through ``erp_stock_valued`` (inventory / GR-IR).

    Lot-tracked SKUs need ``lot`` (created if new; its ``expiry`` defaults to today plus the
    SKU's shelf life); serial-tracked SKUs need ``serials``, one per unit, never seen before
    (one move each). ``from_location`` defaults to the supplier location (a customer return
    comes from ``@customer``). A repeated call with the same ``idempotency_key`` returns the
    first call's moves.
    """
    op = _Op(session, hooks)
    s = get_sku(session, sku)
    qty = _quantity(quantity, s)
    if (to_location is None) == (warehouse is None):
        raise InventoryError("give either to_location or warehouse to receive into")
    dst = (
        get_location(session, to_location)
        if to_location is not None
        else warehouse_stock_location(session, cast(WarehouseRef, warehouse))
    )
    src = (
        get_location(session, from_location)
        if from_location is not None
        else virtual_location(session, "supplier")
    )
    if src.usage not in ("supplier", "customer"):
        raise InventoryError(
            f"goods are received from a supplier (or back from a customer), not from {src.path}"
        )
    if dst.usage != "internal" or dst.warehouse_id is None:
        raise InventoryError(f"goods are received into a warehouse location, not {dst.path}")
    _check_destination(dst)
    if unit_cost is None and src.usage == "supplier":
        raise InventoryError("a receipt from a supplier needs the unit_cost it was bought at")
    if unit_cost is not None and src.usage != "supplier":
        raise InventoryError("returns come back at the average cost; give no unit_cost")
    cost = _unit_cost(unit_cost) if unit_cost is not None else Decimal(0)
    key = _key(idempotency_key)
    stype, sid = _source(source)
    ref = _text(reference, "reference", 200, required=False)
    if expiry is not None and (not isinstance(expiry, date) or isinstance(expiry, datetime)):
        raise InventoryError("expiry must be a date")
    amount = qty * cost
    if amount > MAX_MOVE_VALUE:
        raise InventoryError(f"a receipt worth {_fmt(amount)} is more than can be stored")
    before = _existing(op, key)
    if before:
        _same_call(before, s, "receipt")
        return _fresh_moves(session, [r.id for r in before])
    # lots and serial numbers, validated before anything is written
    specs: list[tuple[str | None, Decimal]] = [(None, qty)]
    lot_expiry: date | None = None
    if s.tracking == "none":
        if lot is not None or serials is not None or expiry is not None:
            raise InventoryError(f"SKU {s.code} is not tracked by lot or serial number")
    elif s.tracking == "lot":
        if serials is not None:
            raise InventoryError(f"SKU {s.code} is tracked by lot, not serial number")
        if not isinstance(lot, str):
            raise InventoryError(f"SKU {s.code} is tracked by lot: give the lot's code")
        code = _code(lot, "lot", 64)
        known = session.scalar(select(Lot).where(Lot.sku_id == s.id, Lot.code == code))
        if known is not None:
            if expiry is not None and known.expiry != expiry:
                was = known.expiry.isoformat() if known.expiry else "none"
                raise InventoryError(f"lot {code} of {s.code} already exists with expiry {was}")
        else:
            lot_expiry = expiry
            if lot_expiry is None and s.shelf_life_days:
                lot_expiry = _today(session, op.tid) + timedelta(days=s.shelf_life_days)
        specs = [(code, qty)]
    else:
        if lot is not None and serials is None and isinstance(lot, str):
            serials = [lot]
        elif lot is not None:
            raise InventoryError("give serial numbers in serials, not lot")
        if serials is None:
            raise InventoryError(
                f"SKU {s.code} is tracked by serial number: give one serial number per unit"
            )
        codes = [_code(c, "serial number", 64) for c in _serial_codes(serials)]
        if Decimal(len(codes)) != qty:
            raise InventoryError(
                f"{len(codes)} serial number(s) given for a quantity of {_fmt(qty)}"
            )
        used = list(session.scalars(select(Lot).where(Lot.sku_id == s.id, Lot.code.in_(codes))))
        _check_serial_not_in_stock(op, s, used)
        if used and src.usage == "supplier":
            raise InventoryConflict(
                f"serial number {used[0].code} of {s.code} was already received; a serial "
                "number comes from a supplier once (returns come from @customer)"
            )
        lot_expiry = expiry
        specs = [(c, Decimal(1)) for c in codes]
    with op.atomic():
        lot_ids: dict[str, int] = {}
        codes_needed = [c for c, _ in specs if c is not None]
        if codes_needed:
            known_lots = {
                x.code: x
                for x in session.scalars(
                    select(Lot).where(Lot.sku_id == s.id, Lot.code.in_(codes_needed))
                )
            }
            for c in codes_needed:
                if c not in known_lots:
                    known_lots[c] = Lot(tenant_id=op.tid, sku_id=s.id, code=c, expiry=lot_expiry)
                    session.add(known_lots[c])
            session.flush()
            lot_ids = {c: x.id for c, x in known_lots.items()}
        keys = _keys(key, len(specs))
        values: list[dict[str, Any]] = [
            {
                "sku_id": s.id,
                "quantity": q,
                "reserved": Decimal(0),
                "from_location_id": src.id,
                "to_location_id": dst.id,
                "lot_id": lot_ids[c] if c is not None else None,
                "state": "done",
                "unit_cost": cost if src.usage == "supplier" else None,
                "done_at": op.now,
                "source_type": stype,
                "source_id": sid,
                "idempotency_key": k,
                "reference": ref,
            }
            for (c, q), k in zip(specs, keys, strict=True)
        ]
        ids = _insert_moves(op, values)
        rows = [
            _Row(
                id=i,
                sku=s,
                quantity=v["quantity"],
                reserved=Decimal(0),
                src=src,
                dst=dst,
                lot_id=v["lot_id"],
                state="done",
                unit_cost=v["unit_cost"],
                source_type=stype,
                source_id=sid,
            )
            for i, v in zip(ids, values, strict=True)
        ]
        _apply_done(op, rows)
        _finish(op)
    return _fresh_moves(session, list(ids))


def transfer(
    session: Session,
    sku: SkuRef,
    quantity: Number,
    *,
    from_warehouse: WarehouseRef | None = None,
    from_location: LocationRef | None = None,
    to_warehouse: WarehouseRef | None = None,
    to_location: LocationRef | None = None,
    lot: str | int | None = None,
    serials: Sequence[str] | None = None,
    strategy: Strategy = "fifo",
    receive_now: bool = False,
    source: Source | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
    hooks: Any = None,
) -> TransferResult:
    """Transfer stock from one warehouse (or location) to another.

    Between two warehouses the goods go through the transit location: the moves out of the
    source (to ``@transit``) are done at once, and the moves from transit to the destination
    are reserved on the transit stock until :func:`complete` receives them (or at once with
    ``receive_now``). Within one warehouse it is a single done move. Transfers are not valued
    (the stock stays the tenant's).
    """
    op = _Op(session, hooks)
    s = get_sku(session, sku)
    qty = _quantity(quantity, s)
    if (from_warehouse is None) == (from_location is None):
        raise InventoryError("give either from_warehouse or from_location")
    if (to_warehouse is None) == (to_location is None):
        raise InventoryError("give either to_warehouse or to_location")
    if strategy not in ("fifo", "fefo"):
        raise InventoryError(f"strategy must be 'fifo' or 'fefo', not {strategy!r}")
    scope: Location | Warehouse
    if from_warehouse is not None:
        scope = get_warehouse(session, from_warehouse)
        src_wh = scope.id
    else:
        scope = get_location(session, cast(LocationRef, from_location))
        if scope.usage != "internal" or scope.warehouse_id is None:
            raise InventoryError(f"a transfer starts in a warehouse location, not {scope.path}")
        src_wh = scope.warehouse_id
    dst = (
        warehouse_stock_location(session, to_warehouse)
        if to_warehouse is not None
        else get_location(session, cast(LocationRef, to_location))
    )
    if dst.usage != "internal" or dst.warehouse_id is None:
        raise InventoryError(f"a transfer ends in a warehouse location, not {dst.path}")
    _check_destination(dst)
    key = _key(idempotency_key)
    stype, sid = _source(source)
    ref = _text(reference, "reference", 200, required=False)
    lot_ids = _lot_filter(op, s, qty, lot, serials, allow_expired=False)
    before = _existing(op, key)
    if before:
        _same_call(before, s, "transfer")
        return TransferResult(
            outgoing=tuple(r.id for r in before if r.origin_move_id is None),
            incoming=tuple(r.id for r in before if r.origin_move_id is not None),
        )
    with op.atomic():
        result = _transfer(
            op, s, qty, scope, src_wh, dst, lot_ids, strategy, receive_now, key, stype, sid, ref
        )
        _finish(op)
    return result


def _transfer(
    op: _Op,
    s: Sku,
    qty: Decimal,
    scope: Location | Warehouse,
    src_wh: int,
    dst: Location,
    lot_ids: list[int] | None,
    strategy: Strategy,
    receive_now: bool,
    key: str | None,
    stype: str | None,
    sid: str | None,
    ref: str,
) -> TransferResult:
    session = op.session
    taken = _take(op, s, qty, scope, strategy=strategy, lot_ids=lot_ids, exclude_location=dst.id)
    same_wh = dst.warehouse_id == src_wh
    mid = dst if same_wh else virtual_location(session, "transit")
    keys = _keys(key, len(taken) * (1 if same_wh else 2))
    common: dict[str, Any] = {
        "sku_id": s.id,
        "source_type": stype,
        "source_id": sid,
        "reference": ref,
    }
    out_values = [
        common
        | {
            "quantity": t.quantity,
            "reserved": t.quantity,
            "from_location_id": t.location_id,
            "to_location_id": mid.id,
            "lot_id": t.lot_id,
            "state": "reserved",
            "idempotency_key": keys[i],
        }
        for i, t in enumerate(taken)
    ]
    out_ids = _insert_moves(op, out_values)
    out_rows = [
        _Row(
            id=i,
            sku=s,
            quantity=t.quantity,
            reserved=t.quantity,
            src=op.location(t.location_id),
            dst=mid,
            lot_id=t.lot_id,
            state="reserved",
            source_type=stype,
            source_id=sid,
        )
        for i, t in zip(out_ids, taken, strict=True)
    ]
    _apply_done(op, out_rows)
    in_ids: list[int] = []
    if not same_wh:
        in_values = [
            common
            | {
                "quantity": r.quantity,
                "reserved": Decimal(0),
                "from_location_id": mid.id,
                "to_location_id": dst.id,
                "lot_id": r.lot_id,
                "state": "draft",
                "origin_move_id": r.id,
                "idempotency_key": keys[len(taken) + i],
            }
            for i, r in enumerate(out_rows)
        ]
        in_ids = _insert_moves(op, in_values)
        in_rows = [
            _Row(
                id=i,
                sku=s,
                quantity=r.quantity,
                reserved=Decimal(0),
                src=mid,
                dst=dst,
                lot_id=r.lot_id,
                state="draft",
                source_type=stype,
                source_id=sid,
            )
            for i, r in zip(in_ids, out_rows, strict=True)
        ]
        for r in in_rows:  # hold the goods in transit for their destination
            _reserve_exact(op, r)
        if receive_now:
            _apply_done(op, in_rows)
    return TransferResult(outgoing=tuple(out_ids), incoming=tuple(in_ids))


def _reserve_exact(op: _Op, row: _Row) -> None:
    """Reserve a move's whole quantity on its exact quant (source location and lot)."""
    res = op.conn.execute(
        update(Q)
        .where(
            Q.c.tenant_id == op.tid,
            Q.c.sku_id == row.sku.id,
            Q.c.location_id == row.src.id,
            Q.c.lot_key == (row.lot_id or 0),
            q_available >= row.quantity,
        )
        .values(reserved=Q.c.reserved + row.quantity)
    )
    if res.rowcount != 1:  # pragma: no cover - the stock was put there in this call
        raise RuntimeError(f"could not hold move {row.id} on {row.src.path}")
    _set_moves(op, [row.id], state="reserved", reserved=row.quantity)
    row.state, row.reserved = "reserved", row.quantity


def scrap(
    session: Session,
    sku: SkuRef,
    quantity: Number,
    *,
    location: LocationRef,
    lot: str | int | None = None,
    serials: Sequence[str] | None = None,
    source: Source | None = None,
    idempotency_key: str | None = None,
    reference: str = "",
    hooks: Any = None,
) -> list[Move]:
    """Write off ``quantity`` of unreserved stock at ``location`` (exactly there) to the scrap
    location: done moves valued at the average cost (``scrap``). Expired lots can be
    scrapped. Returns the moves."""
    op = _Op(session, hooks)
    s = get_sku(session, sku)
    qty = _quantity(quantity, s)
    loc = get_location(session, location)
    if loc.usage != "internal" or loc.warehouse_id is None or loc.kind != "stock":
        raise InventoryError(f"stock is scrapped from a warehouse stock location, not {loc.path}")
    if s.tracking != "none" and lot is None and serials is None:
        what = "serial numbers" if s.tracking == "serial" else "lot"
        raise InventoryError(f"SKU {s.code} is tracked: give the {what} to scrap")
    key = _key(idempotency_key)
    stype, sid = _source(source)
    ref = _text(reference, "reference", 200, required=False)
    lot_ids = _lot_filter(op, s, qty, lot, serials, allow_expired=True)
    before = _existing(op, key)
    if before:
        _same_call(before, s, "scrap")
        return _fresh_moves(session, [r.id for r in before])
    dst = virtual_location(session, "scrap")
    with op.atomic():
        taken = _take(op, s, qty, loc, lot_ids=lot_ids, allow_expired=True, exact=True)
        ids = _out_moves(op, s, taken, dst, key, stype, sid, ref)
        _finish(op)
    return _fresh_moves(session, list(ids))


def _out_moves(
    op: _Op,
    s: Sku,
    taken: Sequence[_Taken],
    dst: Location,
    key: str | None,
    stype: str | None,
    sid: str | None,
    ref: str,
) -> list[int]:
    """Done moves of taken (reserved) stock to ``dst``."""
    keys = _keys(key, len(taken))
    ids = _insert_moves(
        op,
        [
            {
                "sku_id": s.id,
                "quantity": t.quantity,
                "reserved": t.quantity,
                "from_location_id": t.location_id,
                "to_location_id": dst.id,
                "lot_id": t.lot_id,
                "state": "reserved",
                "source_type": stype,
                "source_id": sid,
                "idempotency_key": k,
                "reference": ref,
            }
            for t, k in zip(taken, keys, strict=True)
        ],
    )
    rows = [
        _Row(
            id=i,
            sku=s,
            quantity=t.quantity,
            reserved=t.quantity,
            src=op.location(t.location_id),
            dst=dst,
            lot_id=t.lot_id,
            state="reserved",
            source_type=stype,
            source_id=sid,
        )
        for i, t in zip(ids, taken, strict=True)
    ]
    _apply_done(op, rows)
    return ids


@dataclass
class _CountSpec:
    sku: Sku
    loc: Location
    lot: Lot | None
    counted: Decimal


def count(
    session: Session,
    warehouse: WarehouseRef,
    lines: Sequence[CountLine],
    *,
    reference: str = "",
    source: Source | None = None,
    hooks: Any = None,
) -> CountResult:
    """Apply an inventory count: for each line, the difference between what was counted and
    the quant's on hand is booked as a done move from (gain) or to (loss) the adjustment
    location, valued at the average cost (``adjustment_gain`` / ``adjustment_loss``).

    Only the (SKU, location, lot) combinations listed are counted; everything else is left
    as it is. Lot- and serial-tracked SKUs need the lot / serial number on each line (a
    serial number is counted 0 or 1). A loss that would leave less than what is reserved is
    refused (:class:`InventoryConflict`): release the reservations first. The whole count is
    validated before anything is booked.
    """
    op = _Op(session, hooks)
    wh = get_warehouse(session, warehouse)
    if not lines:
        raise InventoryError("a count needs at least one line")
    ref = _text(reference, "reference", 200, required=False)
    stype, sid = _source(source)
    specs: list[_CountSpec] = []
    seen: set[tuple[int, int, int]] = set()
    for n, line in enumerate(lines, start=1):
        try:
            spec = _count_spec(op, wh, line)
        except InventoryError as exc:
            cls = InventoryConflict if isinstance(exc, InventoryConflict) else InventoryError
            raise cls(f"count line {n}: {exc}") from None
        k = (spec.sku.id, spec.loc.id, spec.lot.id if spec.lot else 0)
        if k in seen:
            raise InventoryError(
                f"count line {n}: {spec.sku.code} at {spec.loc.path} is counted twice"
            )
        seen.add(k)
        specs.append(spec)
    adj = virtual_location(session, "adjustment")
    with op.atomic():
        out = _apply_count(op, specs, adj, stype, sid, ref)
        _finish(op)
    return CountResult(warehouse_code=wh.code, lines=tuple(out))


def _apply_count(
    op: _Op,
    specs: list[_CountSpec],
    adj: Location,
    stype: str | None,
    sid: str | None,
    ref: str,
) -> list[CountedLine]:
    keys = [(sp.sku.id, sp.loc.id, sp.lot.id if sp.lot else 0) for sp in specs]
    stmt = (
        select(Q.c.sku_id, Q.c.location_id, Q.c.lot_key, Q.c.quantity, Q.c.reserved)
        .where(
            Q.c.tenant_id == op.tid,
            Q.c.sku_id.in_({k[0] for k in keys}),
            Q.c.location_id.in_({k[1] for k in keys}),
        )
        .order_by(Q.c.id)
    )
    if op.is_pg:
        stmt = stmt.with_for_update()
    current = {
        (r.sku_id, r.location_id, r.lot_key): (r.quantity, r.reserved)
        for r in op.conn.execute(stmt)
    }
    plan: list[tuple[_CountSpec, Decimal, Decimal]] = []
    for n, (sp, k) in enumerate(zip(specs, keys, strict=True), start=1):
        on_hand, reserved = current.get(k, (Decimal(0).quantize(CENT), Decimal(0)))
        diff = sp.counted - on_hand
        if diff < 0 and sp.counted < reserved:
            raise InventoryConflict(
                f"count line {n}: {_fmt(sp.counted)} {sp.sku.code} counted at {sp.loc.path} but "
                f"{_fmt(reserved)} are reserved there; release those reservations first"
            )
        if diff > 0 and sp.sku.tracking == "serial":
            assert sp.lot is not None
            try:
                _check_serial_not_in_stock(op, sp.sku, [sp.lot])
            except InventoryError as exc:
                raise InventoryConflict(f"count line {n}: {exc}") from None
        plan.append((sp, on_hand, diff))
    out: list[CountedLine] = []
    for sp, on_hand, diff in plan:
        move_id: int | None = None
        lot_id = sp.lot.id if sp.lot else None
        if diff > 0:
            [move_id] = _insert_moves(
                op,
                [
                    {
                        "sku_id": sp.sku.id,
                        "quantity": diff,
                        "reserved": Decimal(0),
                        "from_location_id": adj.id,
                        "to_location_id": sp.loc.id,
                        "lot_id": lot_id,
                        "state": "done",
                        "done_at": op.now,
                        "source_type": stype,
                        "source_id": sid,
                        "reference": ref,
                    }
                ],
            )
            row = _Row(
                id=move_id,
                sku=sp.sku,
                quantity=diff,
                reserved=Decimal(0),
                src=adj,
                dst=sp.loc,
                lot_id=lot_id,
                state="done",
                source_type=stype,
                source_id=sid,
            )
            _apply_done(op, [row])
        elif diff < 0:
            taken = _take(
                op,
                sp.sku,
                -diff,
                sp.loc,
                lot_ids=[lot_id] if lot_id else None,
                allow_expired=True,
                exact=True,
            )
            [move_id] = _out_moves(op, sp.sku, taken, adj, None, stype, sid, ref)
        out.append(
            CountedLine(
                sku_code=sp.sku.code,
                location_path=sp.loc.path,
                lot_code=sp.lot.code if sp.lot else None,
                expected=on_hand,
                counted=sp.counted,
                difference=diff,
                move_id=move_id,
            )
        )
    return out


def _count_spec(op: _Op, wh: Warehouse, line: CountLine) -> _CountSpec:
    if not isinstance(line, CountLine):
        raise InventoryError("count lines must be CountLine values")
    s = get_sku(op.session, line.sku)
    counted = _quantity(line.counted, s, "counted quantity", zero=True)
    if line.location is None or line.location == "":
        loc = warehouse_stock_location(op.session, wh)
    elif isinstance(line.location, str) and not line.location.startswith(wh.code + "/"):
        # a path relative to the warehouse, else an absolute one (of another warehouse: refused)
        rel = line.location.strip().strip("/")
        found = op.session.scalar(select(Location).where(Location.path == f"{wh.code}/{rel}"))
        loc = found if found is not None else get_location(op.session, line.location)
    else:
        loc = get_location(op.session, line.location)
    if loc.warehouse_id != wh.id:
        raise InventoryError(f"location {loc.path} is not in warehouse {wh.code}")
    if loc.kind != "stock":
        raise InventoryError(f"{loc.path} is a view location and holds no stock")
    lot: Lot | None = None
    if s.tracking == "none":
        if line.lot:
            raise InventoryError(f"SKU {s.code} is not tracked by lot")
    else:
        if not line.lot:
            what = "serial number" if s.tracking == "serial" else "lot"
            raise InventoryError(f"SKU {s.code} is tracked by {what}: give the {what} counted")
        lot = get_lot(op.session, s, line.lot)
        if s.tracking == "serial" and counted > 1:
            raise InventoryError(f"serial number {lot.code} is one unit: count 0 or 1")
    return _CountSpec(s, loc, lot, counted)


# --- reading ---------------------------------------------------------------------------------


GroupBy = Literal["sku", "warehouse", "location", "lot"]


def stock_levels(
    session: Session,
    *,
    sku: SkuRef | None = None,
    warehouse: WarehouseRef | None = None,
    location: LocationRef | None = None,
    lot: str | int | None = None,
    group_by: GroupBy = "warehouse",
    include_empty: bool = False,
) -> list[StockLevel]:
    """On hand, reserved and available stock, summed per ``group_by``: ``sku`` (all
    warehouses), ``warehouse`` (per SKU and warehouse), ``location`` (per SKU and location) or
    ``lot`` (per SKU, location and lot). Filters narrow it to one SKU, warehouse, location
    (and those below it) or lot. Warehouse stock only; stock in transit between warehouses
    shows when ``location`` is ``@transit``."""
    tid = _tenant_id(session)
    if group_by not in ("sku", "warehouse", "location", "lot"):
        raise InventoryError(f"group_by must be sku, warehouse, location or lot, not {group_by!r}")
    SK = cast(Table, Sku.__table__)
    WH = cast(Table, Warehouse.__table__)
    groups: list[tuple[str, Any]] = [("sku_id", Q.c.sku_id), ("sku_code", SK.c.code)]
    if group_by in ("warehouse", "location", "lot"):
        groups += [("warehouse_id", Q.c.warehouse_id), ("warehouse_code", WH.c.code)]
    if group_by in ("location", "lot"):
        groups += [("location_id", Q.c.location_id), ("location_path", LOC.c.path)]
    if group_by == "lot":
        groups += [("lot_id", Q.c.lot_id), ("lot_code", LOT.c.code), ("expiry", LOT.c.expiry)]
    frm = (
        Q.join(SK, SK.c.id == Q.c.sku_id)
        .join(LOC, LOC.c.id == Q.c.location_id)
        .outerjoin(WH, WH.c.id == Q.c.warehouse_id)
        .outerjoin(LOT, LOT.c.id == Q.c.lot_id)
    )
    where: list[Any] = [Q.c.tenant_id == tid]
    s: Sku | None = None
    if sku is not None:
        s = get_sku(session, sku)
        where.append(Q.c.sku_id == s.id)
    if warehouse is not None:
        where.append(Q.c.warehouse_id == get_warehouse(session, warehouse).id)
    if location is not None:
        loc = get_location(session, location)
        where.append(
            or_(LOC.c.id == loc.id, LOC.c.path.startswith(loc.path + "/", autoescape=True))
        )
    else:
        where.append(Q.c.warehouse_id.is_not(None))
    if lot is not None:
        if s is None:
            raise InventoryError("filtering by lot needs the SKU too")
        where.append(Q.c.lot_id == get_lot(session, s, lot).id)
    cols = [c.label(name) for name, c in groups]
    stmt = (
        select(
            *cols,
            func.sum(Q.c.quantity).label("on_hand"),
            func.sum(Q.c.reserved).label("reserved"),
        )
        .select_from(frm)
        .where(*where)
        .group_by(*[c for _, c in groups])
    )
    if not include_empty:
        stmt = stmt.having(func.sum(Q.c.quantity) > 0)
    order = {"sku_code", "warehouse_code", "location_path", "lot_code"}
    stmt = stmt.order_by(*[c for name, c in groups if name in order])
    out = []
    for r in session.connection().execute(stmt):
        m = r._mapping
        oh = _dec(m["on_hand"])
        rs = _dec(m["reserved"])
        out.append(
            StockLevel(
                sku_id=m["sku_id"],
                sku_code=m["sku_code"],
                warehouse_id=m.get("warehouse_id"),
                warehouse_code=m.get("warehouse_code"),
                location_id=m.get("location_id"),
                location_path=m.get("location_path"),
                lot_id=m.get("lot_id"),
                lot_code=m.get("lot_code"),
                expiry=m.get("expiry"),
                on_hand=oh,
                reserved=rs,
                available=oh - rs,
            )
        )
    return out


def _dec(v: Any) -> Decimal:
    return (v if isinstance(v, Decimal) else Decimal(v or 0)).quantize(CENT)


def lot_history(session: Session, lot: Lot | int) -> list[Move]:
    """Every move of a lot or serial number, oldest first (its trace)."""
    _tenant_id(session)
    lot_id = lot.id if isinstance(lot, Lot) else lot
    return list(
        session.scalars(
            select(Move)
            .where(Move.lot_id == lot_id)
            .order_by(Move.done_at.is_(None), Move.done_at, Move.id)
            .execution_options(populate_existing=True)
        )
    )


def serial_history(session: Session, sku: SkuRef, serial: str) -> list[Move]:
    """Every move of serial number ``serial`` of ``sku``, oldest first."""
    s = get_sku(session, sku)
    if s.tracking != "serial":
        raise InventoryError(f"SKU {s.code} is not tracked by serial number")
    return lot_history(session, get_lot(session, s, serial))


def valuation_of(session: Session, sku: SkuRef) -> tuple[Decimal, Decimal, Decimal]:
    """(quantity, value, average cost) of the SKU's own stock."""
    s = get_sku(session, sku)
    row = session.execute(
        select(Valuation.quantity, Valuation.value, Valuation.average_cost).where(
            Valuation.sku_id == s.id
        )
    ).first()
    if row is None:
        return Decimal(0).quantize(CENT), Decimal(0).quantize(CENT), Decimal(0).quantize(CENT)
    return row[0], row[1], row[2]


__all__ += ["to_decimal", "valuation_of", "warehouse_stock_location"]
