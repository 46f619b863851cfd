"""JSON API of the inventory, under ``/api/v1/inventory``.

Quantities, costs and values are JSON strings (``"12.5"``); JSON numbers with a fraction are
refused with 422 because they are not exact (whole numbers are accepted). Errors are problem
documents: 422 for invalid input, 409 for a conflict with the stock (a shortage carries
``sku``, ``requested``, ``available`` and ``shortage``), 404 for ids of another tenant.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from erp_core.api.params import MAX_ID, Id
from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.inventory import service
from erp_core.inventory.errors import InventoryError, _fmt
from erp_core.inventory.models import Location, Lot, Move, Sku, Warehouse
from erp_core.inventory.types import CountLine

router = APIRouter(prefix="/inventory", tags=["inventory"])

READ = Depends(require("core.inventory.read"))
WRITE = Depends(require("core.inventory.write"))
MANAGE = Depends(require("core.inventory.manage"))
COUNT = Depends(require("core.inventory.count"))

_DECIMAL_RE = re.compile(r"^-?\d{1,15}(\.\d{1,12})?$")


def _exact(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError('a quantity or amount must be a decimal string such as "1.5"')
    if isinstance(value, float):
        raise ValueError(
            'give quantities and amounts as JSON strings such as "1.5": JSON numbers with a '
            "fraction are not exact"
        )
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str) or not _DECIMAL_RE.match(value.strip()):
        raise ValueError('a quantity or amount must be a decimal string such as "1.5"')
    return Decimal(value.strip())


#: A decimal given as a JSON string (or a whole JSON number); never a float.
DecimalStr = Annotated[
    Decimal,
    BeforeValidator(_exact),
    WithJsonSchema({"type": "string", "pattern": _DECIMAL_RE.pattern, "examples": ["1.5"]}),
]
#: A decimal in a response: a JSON string without trailing zeros ("12.5", "3").
DecimalOut = Annotated[
    Decimal,
    PlainSerializer(_fmt, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "examples": ["12.5"]}),
]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Path = Annotated[str, Field(min_length=1, max_length=500)]
Strategy = Literal["fifo", "fefo"]
Serials = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=10_000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Sourced(_In):
    source_type: str | None = Field(default=None, min_length=1, max_length=63)
    source_id: str | None = Field(default=None, min_length=1, max_length=128)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    reference: str = Field(default="", max_length=200)

    def source(self) -> tuple[str, str] | None:
        if self.source_type is None and self.source_id is None:
            return None
        if self.source_type is None or self.source_id is None:
            raise InventoryError("give both source_type and source_id, or neither")
        return (self.source_type, self.source_id)


# --- SKUs ------------------------------------------------------------------------------------


class SkuIn(_In):
    code: Code
    name: str = Field(min_length=1, max_length=200)
    unit: str = Field(default="pcs", min_length=1, max_length=16)
    decimals: int = Field(default=0, ge=0, le=4)
    tracking: Literal["none", "lot", "serial"] = "none"
    shelf_life_days: int | None = Field(default=None, ge=1, le=36500)


class SkuPatch(_In):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    unit: str | None = Field(default=None, min_length=1, max_length=16)
    decimals: int | None = Field(default=None, ge=0, le=4)
    tracking: Literal["none", "lot", "serial"] | None = None
    shelf_life_days: int | None = Field(default=None, ge=1, le=36500)
    active: bool | None = None


class SkuOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    unit: str
    decimals: int
    tracking: str
    shelf_life_days: int | None
    active: bool
    created_at: datetime


class SkuPage(BaseModel):
    items: list[SkuOut]
    next_after_id: int | None


@router.get("/skus", response_model=SkuPage)
def list_skus(
    db: DbSession,
    p: Principal = READ,
    q: str | None = Query(default=None, max_length=64, description="part of the code or name"),
    active: bool | None = None,
    after_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> SkuPage:
    """SKUs in id order, ``limit`` at a time: pass ``next_after_id`` as ``after_id``."""
    stmt = select(Sku).order_by(Sku.id).limit(limit + 1)
    if q:
        stmt = stmt.where(
            Sku.code.icontains(q, autoescape=True) | Sku.name.icontains(q, autoescape=True)
        )
    if active is not None:
        stmt = stmt.where(Sku.active.is_(active))
    if after_id:
        stmt = stmt.where(Sku.id > after_id)
    rows = list(db.scalars(stmt))
    more = len(rows) > limit
    rows = rows[:limit]
    return SkuPage(
        items=[SkuOut.model_validate(r) for r in rows],
        next_after_id=rows[-1].id if more and rows else None,
    )


@router.post("/skus", response_model=SkuOut, status_code=201)
def create_sku(body: SkuIn, db: DbSession, p: Principal = MANAGE) -> Sku:
    sku = service.create_sku(db, **body.model_dump())
    db.commit()
    return sku


def _sku_or_404(db: Session, sku_id: int) -> Sku:
    sku = db.get(Sku, sku_id)
    if sku is None:
        raise HTTPException(404, f"no SKU {sku_id} in this tenant")
    return sku


@router.get("/skus/{sku_id}", response_model=SkuOut)
def get_sku(sku_id: Id, db: DbSession, p: Principal = READ) -> Sku:
    return _sku_or_404(db, sku_id)


@router.patch("/skus/{sku_id}", response_model=SkuOut)
def patch_sku(sku_id: Id, body: SkuPatch, db: DbSession, p: Principal = MANAGE) -> Sku:
    sku = _sku_or_404(db, sku_id)
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for key in ("name", "unit", "decimals", "tracking", "active"):
        if key in changes and changes[key] is None:
            raise InventoryError(f"{key} cannot be null")
    service.update_sku(db, sku, **changes)
    db.commit()
    return sku


class LotOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    sku_id: int
    code: str
    expiry: date | None
    created_at: datetime


@router.get("/skus/{sku_id}/lots", response_model=list[LotOut])
def list_lots(
    sku_id: Id,
    db: DbSession,
    p: Principal = READ,
    limit: int = Query(default=500, ge=1, le=5000),
) -> list[Lot]:
    """Lots (or serial numbers) of the SKU, newest first."""
    sku = _sku_or_404(db, sku_id)
    return list(
        db.scalars(select(Lot).where(Lot.sku_id == sku.id).order_by(Lot.id.desc()).limit(limit))
    )


# --- warehouses and locations ----------------------------------------------------------------


class WarehouseIn(_In):
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)


class WarehouseOut(BaseModel):
    id: int
    code: str
    name: str
    active: bool
    stock_location: str
    created_at: datetime


def _warehouse_out(wh: Warehouse) -> WarehouseOut:
    return WarehouseOut(
        id=wh.id,
        code=wh.code,
        name=wh.name,
        active=wh.active,
        stock_location=f"{wh.code}/STOCK",
        created_at=wh.created_at,
    )


def _warehouse_or_404(db: Session, warehouse_id: int) -> Warehouse:
    wh = db.get(Warehouse, warehouse_id)
    if wh is None:
        raise HTTPException(404, f"no warehouse {warehouse_id} in this tenant")
    return wh


@router.get("/warehouses", response_model=list[WarehouseOut])
def list_warehouses(db: DbSession, p: Principal = READ) -> list[WarehouseOut]:
    return [_warehouse_out(w) for w in db.scalars(select(Warehouse).order_by(Warehouse.code))]


@router.post("/warehouses", response_model=WarehouseOut, status_code=201)
def create_warehouse(body: WarehouseIn, db: DbSession, p: Principal = MANAGE) -> WarehouseOut:
    """Create a warehouse with its root location and its ``<code>/STOCK`` location."""
    wh = service.create_warehouse(db, code=body.code, name=body.name)
    db.commit()
    return _warehouse_out(wh)


@router.get("/warehouses/{warehouse_id}", response_model=WarehouseOut)
def get_warehouse(warehouse_id: Id, db: DbSession, p: Principal = READ) -> WarehouseOut:
    return _warehouse_out(_warehouse_or_404(db, warehouse_id))


class LocationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    warehouse_id: int | None
    parent_id: int | None
    code: str
    path: str
    name: str
    kind: str
    usage: str
    active: bool


class LocationNode(LocationOut):
    children: list[LocationNode] = Field(default_factory=list)


class LocationIn(_In):
    code: Code
    name: str = Field(default="", max_length=200)
    kind: Literal["view", "stock"] = "stock"
    parent_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="default: the warehouse's root"
    )


@router.get("/warehouses/{warehouse_id}/locations", response_model=list[LocationNode])
def location_tree(warehouse_id: Id, db: DbSession, p: Principal = READ) -> list[LocationNode]:
    """The warehouse's locations as a tree (its root first)."""
    wh = _warehouse_or_404(db, warehouse_id)
    nodes: dict[int, LocationNode] = {}
    roots: list[LocationNode] = []
    for loc in service.location_tree(db, wh):
        node = LocationNode.model_validate(loc, from_attributes=True)
        nodes[loc.id] = node
        parent = nodes.get(loc.parent_id) if loc.parent_id is not None else None
        (parent.children if parent is not None else roots).append(node)
    return roots


@router.post("/warehouses/{warehouse_id}/locations", response_model=LocationOut, status_code=201)
def create_location(
    warehouse_id: Id, body: LocationIn, db: DbSession, p: Principal = MANAGE
) -> Location:
    wh = _warehouse_or_404(db, warehouse_id)
    if body.parent_id is None:
        parent = service.get_location(db, wh.code)
    else:
        found = db.get(Location, body.parent_id)
        if found is None or found.warehouse_id != wh.id:
            raise InventoryError(f"location {body.parent_id} is not in warehouse {wh.code}")
        parent = found
    loc = service.create_location(db, parent=parent, code=body.code, name=body.name, kind=body.kind)
    db.commit()
    return loc


@router.get("/locations", response_model=list[LocationOut])
def list_locations(
    db: DbSession,
    p: Principal = READ,
    usage: Literal["internal", "supplier", "customer", "adjustment", "scrap", "transit"]
    | None = None,
    virtual: bool | None = Query(default=None, description="only the virtual locations"),
    limit: int = Query(default=1000, ge=1, le=10_000),
) -> list[Location]:
    """Locations of every warehouse and the virtual ones (``@supplier``, ``@customer`` ...)."""
    stmt = select(Location).order_by(Location.path).limit(limit)
    if usage is not None:
        stmt = stmt.where(Location.usage == usage)
    if virtual is not None:
        stmt = stmt.where(
            Location.warehouse_id.is_(None) if virtual else Location.warehouse_id.is_not(None)
        )
    return list(db.scalars(stmt))


# --- moves -----------------------------------------------------------------------------------


class MoveOut(BaseModel):
    id: int
    sku_id: int
    sku: str
    quantity: DecimalOut
    reserved: DecimalOut
    from_location_id: int
    from_location: str
    to_location_id: int
    to_location: str
    lot_id: int | None
    lot: str | None
    state: str
    unit_cost: DecimalOut | None
    value: DecimalOut | None
    created_at: datetime
    done_at: datetime | None
    source_type: str | None
    source_id: str | None
    idempotency_key: str | None
    origin_move_id: int | None
    reference: str


def _moves_out(db: Session, ids: list[int] | None = None, stmt: Any = None) -> list[MoveOut]:
    src = aliased(Location)
    dst = aliased(Location)
    q = stmt if stmt is not None else select(Move).where(Move.id.in_(ids or [])).order_by(Move.id)
    q = (
        q.add_columns(Sku.code, src.path, dst.path, Lot.code)
        .join(Sku, Sku.id == Move.sku_id)
        .join(src, src.id == Move.from_location_id)
        .join(dst, dst.id == Move.to_location_id)
        .outerjoin(Lot, Lot.id == Move.lot_id)
        .execution_options(populate_existing=True)
    )
    out = []
    for m, sku_code, src_path, dst_path, lot_code in db.execute(q):
        out.append(
            MoveOut(
                id=m.id,
                sku_id=m.sku_id,
                sku=sku_code,
                quantity=m.quantity,
                reserved=m.reserved,
                from_location_id=m.from_location_id,
                from_location=src_path,
                to_location_id=m.to_location_id,
                to_location=dst_path,
                lot_id=m.lot_id,
                lot=lot_code,
                state=m.state,
                unit_cost=m.unit_cost,
                value=m.value,
                created_at=m.created_at,
                done_at=m.done_at,
                source_type=m.source_type,
                source_id=m.source_id,
                idempotency_key=m.idempotency_key,
                origin_move_id=m.origin_move_id,
                reference=m.reference,
            )
        )
    return out


def _move_or_404(db: Session, move_id: int) -> Move:
    move = db.get(Move, move_id)
    if move is None:
        raise HTTPException(404, f"no move {move_id} in this tenant")
    return move


class MovePage(BaseModel):
    items: list[MoveOut]
    next_before_id: int | None


@router.get("/moves", response_model=MovePage)
def list_moves(
    db: DbSession,
    p: Principal = READ,
    sku: str | None = Query(default=None, max_length=64, description="SKU code"),
    state: Literal["draft", "reserved", "done", "cancelled"] | None = None,
    location: str | None = Query(default=None, max_length=500, description="from or to path"),
    source_type: str | None = Query(default=None, max_length=63),
    source_id: str | None = Query(default=None, max_length=128),
    before_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> MovePage:
    """Moves, newest first; page with ``before_id`` = ``next_before_id``."""
    stmt = select(Move).order_by(Move.id.desc()).limit(limit + 1)
    if sku is not None:
        s = db.scalar(select(Sku).where(Sku.code == sku))
        if s is None:
            return MovePage(items=[], next_before_id=None)
        stmt = stmt.where(Move.sku_id == s.id)
    if state is not None:
        stmt = stmt.where(Move.state == state)
    if location is not None:
        loc = db.scalar(select(Location).where(Location.path == location.strip("/")))
        if loc is None:
            return MovePage(items=[], next_before_id=None)
        stmt = stmt.where((Move.from_location_id == loc.id) | (Move.to_location_id == loc.id))
    if source_type is not None:
        stmt = stmt.where(Move.source_type == source_type)
    if source_id is not None:
        stmt = stmt.where(Move.source_id == source_id)
    if before_id:
        stmt = stmt.where(Move.id < before_id)
    items = _moves_out(db, stmt=stmt)
    more = len(items) > limit
    items = items[:limit]
    return MovePage(items=items, next_before_id=items[-1].id if more and items else None)


class MoveIn(_Sourced):
    sku: Code
    quantity: DecimalStr
    from_location: Path
    to_location: Path
    lot: Code | None = None
    unit_cost: DecimalStr | None = None


@router.post("/moves", response_model=MoveOut, status_code=201)
def create_move(body: MoveIn, db: DbSession, p: Principal = WRITE) -> MoveOut:
    """Create a draft move; reserve it, complete it (``done``) or cancel it afterwards."""
    move = service.create_move(
        db,
        body.sku,
        body.quantity,
        from_location=body.from_location,
        to_location=body.to_location,
        lot=body.lot,
        unit_cost=body.unit_cost,
        source=body.source(),
        idempotency_key=body.idempotency_key,
        reference=body.reference,
    )
    db.commit()
    return _moves_out(db, [move.id])[0]


@router.get("/moves/{move_id}", response_model=MoveOut)
def get_move(move_id: Id, db: DbSession, p: Principal = READ) -> MoveOut:
    _move_or_404(db, move_id)
    return _moves_out(db, [move_id])[0]


class ReserveMoveIn(_In):
    strategy: Strategy = "fifo"
    allow_partial: bool = False


@router.post("/moves/{move_id}/reserve", response_model=list[MoveOut])
def reserve_move(
    move_id: Id,
    db: DbSession,
    hooks: Hooks,
    body: ReserveMoveIn = Body(default_factory=ReserveMoveIn),
    p: Principal = WRITE,
) -> list[MoveOut]:
    """Reserve a draft move's stock (the body is optional); answers the reserved moves (split
    per lot and location)."""
    move = _move_or_404(db, move_id)
    opts = body
    moves = service.reserve_move(
        db, move, strategy=opts.strategy, allow_partial=opts.allow_partial, hooks=hooks
    )
    db.commit()
    return _moves_out(db, [m.id for m in moves])


@router.post("/moves/{move_id}/done", response_model=list[MoveOut])
def complete_move(move_id: Id, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> list[MoveOut]:
    """Complete a move (a draft is reserved first); answers the done moves."""
    move = _move_or_404(db, move_id)
    moves = service.complete(db, move, hooks=hooks)
    db.commit()
    return _moves_out(db, [m.id for m in moves])


@router.post("/moves/{move_id}/cancel", response_model=MoveOut)
def cancel_move(move_id: Id, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> MoveOut:
    move = _move_or_404(db, move_id)
    service.cancel(db, move, hooks=hooks)
    db.commit()
    return _moves_out(db, [move_id])[0]


# --- receipts, reservations, transfers, scrap, counts ----------------------------------------


class ReceiptIn(_Sourced):
    sku: Code
    quantity: DecimalStr
    warehouse: str | None = Field(default=None, max_length=32)
    location: Path | None = None
    unit_cost: DecimalStr | None = None
    lot: Code | None = None
    expiry: date | None = None
    serials: Serials | None = None
    from_location: Path | None = Field(default=None, description="default: @supplier")


@router.post("/receipts", response_model=list[MoveOut], status_code=201)
def receive(body: ReceiptIn, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> list[MoveOut]:
    """Receive goods into a warehouse (its STOCK) or a location; answers the done moves."""
    moves = service.receive(
        db,
        body.sku,
        body.quantity,
        warehouse=body.warehouse,
        to_location=body.location,
        unit_cost=body.unit_cost,
        lot=body.lot,
        expiry=body.expiry,
        serials=body.serials,
        from_location=body.from_location,
        source=body.source(),
        idempotency_key=body.idempotency_key,
        reference=body.reference,
        hooks=hooks,
    )
    db.commit()
    return _moves_out(db, [m.id for m in moves])


class ReservationIn(_Sourced):
    sku: Code
    quantity: DecimalStr
    warehouse: str | None = Field(default=None, max_length=32)
    location: Path | None = None
    to_location: Path | None = Field(default=None, description="default: @customer")
    strategy: Strategy = "fifo"
    allow_partial: bool = False
    lot: Code | None = None
    serials: Serials | None = None


class ReservationOut(BaseModel):
    sku: str
    requested: DecimalOut
    reserved: DecimalOut
    shortage: DecimalOut
    moves: list[MoveOut]


@router.post(
    "/reservations",
    response_model=ReservationOut,
    status_code=201,
    responses={409: {"description": "not enough stock (the problem names the shortage)"}},
)
def reserve(body: ReservationIn, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> Any:
    """Reserve stock. Without ``allow_partial`` a shortage answers 409 and reserves nothing;
    with it, what is available is reserved and ``shortage`` says what is missing."""
    res = service.reserve(
        db,
        body.sku,
        body.quantity,
        warehouse=body.warehouse,
        location=body.location,
        to_location=body.to_location,
        strategy=body.strategy,
        allow_partial=body.allow_partial,
        lot=body.lot,
        serials=body.serials,
        source=body.source(),
        idempotency_key=body.idempotency_key,
        reference=body.reference,
        hooks=hooks,
    )
    db.commit()
    return ReservationOut(
        sku=res.sku_code,
        requested=res.requested,
        reserved=res.reserved,
        shortage=res.shortage,
        moves=_moves_out(db, res.move_ids),
    )


@router.post("/reservations/{move_id}/release", response_model=MoveOut)
def release(move_id: Id, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> MoveOut:
    """Release a reservation: its stock is available again and its move is cancelled."""
    move = _move_or_404(db, move_id)
    service.release(db, move, hooks=hooks)
    db.commit()
    return _moves_out(db, [move_id])[0]


class TransferIn(_Sourced):
    sku: Code
    quantity: DecimalStr
    from_warehouse: str | None = Field(default=None, max_length=32)
    from_location: Path | None = None
    to_warehouse: str | None = Field(default=None, max_length=32)
    to_location: Path | None = None
    lot: Code | None = None
    serials: Serials | None = None
    strategy: Strategy = "fifo"
    receive_now: bool = False


class TransferOut(BaseModel):
    outgoing: list[MoveOut]
    incoming: list[MoveOut]


@router.post("/transfers", response_model=TransferOut, status_code=201)
def transfer(body: TransferIn, db: DbSession, hooks: Hooks, p: Principal = WRITE) -> TransferOut:
    """Transfer stock between warehouses (through ``@transit``) or within one."""
    res = service.transfer(
        db,
        body.sku,
        body.quantity,
        from_warehouse=body.from_warehouse,
        from_location=body.from_location,
        to_warehouse=body.to_warehouse,
        to_location=body.to_location,
        lot=body.lot,
        serials=body.serials,
        strategy=body.strategy,
        receive_now=body.receive_now,
        source=body.source(),
        idempotency_key=body.idempotency_key,
        reference=body.reference,
        hooks=hooks,
    )
    db.commit()
    return TransferOut(
        outgoing=_moves_out(db, list(res.outgoing)), incoming=_moves_out(db, list(res.incoming))
    )


class ScrapIn(_Sourced):
    sku: Code
    quantity: DecimalStr
    location: Path
    lot: Code | None = None
    serials: Serials | None = None


@router.post("/scrap", response_model=list[MoveOut], status_code=201)
def scrap(body: ScrapIn, db: DbSession, hooks: Hooks, p: Principal = COUNT) -> list[MoveOut]:
    """Scrap unreserved stock at a location (valued at the average cost)."""
    moves = service.scrap(
        db,
        body.sku,
        body.quantity,
        location=body.location,
        lot=body.lot,
        serials=body.serials,
        source=body.source(),
        idempotency_key=body.idempotency_key,
        reference=body.reference,
        hooks=hooks,
    )
    db.commit()
    return _moves_out(db, [m.id for m in moves])


class CountLineIn(_In):
    sku: Code
    counted: DecimalStr
    location: Path | None = Field(default=None, description="path; default: <warehouse>/STOCK")
    lot: Code | None = None


class CountIn(_In):
    lines: list[CountLineIn] = Field(max_length=10_000)
    reference: str = Field(default="", max_length=200)


class CountedLineOut(BaseModel):
    sku: str
    location: str
    lot: str | None
    expected: DecimalOut
    counted: DecimalOut
    difference: DecimalOut
    move_id: int | None


class CountOut(BaseModel):
    warehouse: str
    lines: list[CountedLineOut]
    gains: DecimalOut
    losses: DecimalOut


@router.post("/warehouses/{warehouse_id}/counts", response_model=CountOut, status_code=201)
def count(
    warehouse_id: Id, body: CountIn, db: DbSession, hooks: Hooks, p: Principal = COUNT
) -> CountOut:
    """Apply an inventory count: differences are booked as adjustment moves (gain or loss)."""
    wh = _warehouse_or_404(db, warehouse_id)
    res = service.count(
        db,
        wh,
        [
            CountLine(sku=ln.sku, counted=ln.counted, location=ln.location, lot=ln.lot)
            for ln in body.lines
        ],
        reference=body.reference,
        hooks=hooks,
    )
    db.commit()
    return CountOut(
        warehouse=res.warehouse_code,
        lines=[
            CountedLineOut(
                sku=c.sku_code,
                location=c.location_path,
                lot=c.lot_code,
                expected=c.expected,
                counted=c.counted,
                difference=c.difference,
                move_id=c.move_id,
            )
            for c in res.lines
        ],
        gains=res.gains,
        losses=res.losses,
    )


# --- stock levels and traces -----------------------------------------------------------------


class StockLevelOut(BaseModel):
    sku_id: int
    sku: str
    warehouse_id: int | None
    warehouse: str | None
    location_id: int | None
    location: str | None
    lot_id: int | None
    lot: str | None
    expiry: date | None
    on_hand: DecimalOut
    reserved: DecimalOut
    available: DecimalOut


@router.get("/stock", response_model=list[StockLevelOut])
def stock_levels(
    db: DbSession,
    p: Principal = READ,
    sku: str | None = Query(default=None, max_length=64, description="SKU code"),
    warehouse: str | None = Query(default=None, max_length=32, description="warehouse code"),
    location: str | None = Query(default=None, max_length=500, description="location path"),
    lot: str | None = Query(default=None, max_length=64, description="lot (needs sku)"),
    group_by: Literal["sku", "warehouse", "location", "lot"] = "warehouse",
) -> list[StockLevelOut]:
    """On hand, reserved and available stock per SKU / warehouse / location / lot."""
    levels = service.stock_levels(
        db, sku=sku, warehouse=warehouse, location=location, lot=lot, group_by=group_by
    )
    return [
        StockLevelOut(
            sku_id=lv.sku_id,
            sku=lv.sku_code,
            warehouse_id=lv.warehouse_id,
            warehouse=lv.warehouse_code,
            location_id=lv.location_id,
            location=lv.location_path,
            lot_id=lv.lot_id,
            lot=lv.lot_code,
            expiry=lv.expiry,
            on_hand=lv.on_hand,
            reserved=lv.reserved,
            available=lv.available,
        )
        for lv in levels
    ]


class LotTraceOut(LotOut):
    sku: str
    moves: list[MoveOut]


@router.get("/lots/{lot_id}", response_model=LotTraceOut)
def get_lot(lot_id: Id, db: DbSession, p: Principal = READ) -> LotTraceOut:
    """A lot or serial number with every move it went through (oldest first)."""
    lot = db.get(Lot, lot_id)
    if lot is None:
        raise HTTPException(404, f"no lot {lot_id} in this tenant")
    sku = db.get(Sku, lot.sku_id)
    assert sku is not None
    moves = service.lot_history(db, lot)
    by_id = {m.id: m for m in _moves_out(db, [m.id for m in moves])}
    return LotTraceOut(
        id=lot.id,
        sku_id=lot.sku_id,
        code=lot.code,
        expiry=lot.expiry,
        created_at=lot.created_at,
        sku=sku.code,
        moves=[by_id[m.id] for m in moves],
    )
