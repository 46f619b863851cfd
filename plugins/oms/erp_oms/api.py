"""JSON API of the OMS, under ``/api/v1/oms``.

Lists page by keyset (``after_id``, newest first). Refusals are problem documents: 422 for
invalid input or a step the order's state does not allow, 404 for ids of another tenant.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.api.params import MAX_ID, Id
from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.inventory.models import Sku, Warehouse
from erp_oms import review as rv
from erp_oms import service as svc
from erp_oms.models import (
    Blacklist,
    CourierRate,
    Event,
    Order,
    OrderLine,
    Parcel,
    ParcelLine,
    ReviewRule,
    WarehouseRoute,
)
from erp_oms.queries import order_page

router = APIRouter(tags=["oms"])

READ = Depends(require("oms.order.read"))
WRITE = Depends(require("oms.order.write"))
MANAGE = Depends(require("oms.settings.manage"))


def _actor(p: Principal) -> str:
    return p.email if p.via != "token" else f"{p.email} via {p.label}"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- views ---------------------------------------------------------------------------------------


class LineOut(BaseModel):
    id: int
    line_id: str
    merchant_sku: str
    sku_id: int | None
    title: str
    quantity: Decimal
    unit_price: Decimal
    platform_discount: Decimal
    merchant_discount: Decimal
    paid: Decimal
    refund_status: str


class ParcelOut(BaseModel):
    id: int
    warehouse_id: int
    courier_code: str
    tracking_no: str
    state: str
    weight_kg: Decimal
    shipping_cost: Decimal | None
    writeback: str
    writeback_attempts: int
    writeback_error: str
    #: The courier's trail, oldest step first (``at``, ``text``, ``action``).
    trail: list[dict[str, str]] = []
    trail_courier: str = ""
    trail_checked_at: datetime | None = None
    delivered_at: datetime | None = None
    lines: list[dict[str, Any]]


class EventOut(BaseModel):
    id: int
    kind: str
    message: str
    actor: str
    at: datetime
    data: dict[str, Any]


class OrderOut(BaseModel):
    id: int
    channel_account_id: int | None
    connector: str
    platform_order_id: str
    source: str
    status: str
    platform_status: str
    raw_status: str
    hold_code: str
    hold_reason: str
    tags: list[str]
    buyer_nick: str
    receiver_name: str
    receiver_phone: str
    province: str
    city: str
    district: str
    address: str
    buyer_note: str
    seller_memo: str
    currency: str
    goods_total: Decimal
    shipping_fee: Decimal
    platform_discount: Decimal
    merchant_discount: Decimal
    total_paid: Decimal
    ordered_at: datetime
    shipped_at: datetime | None
    merged_into_id: int | None
    refund_state: str


class OrderDetail(OrderOut):
    lines: list[LineOut]
    parcels: list[ParcelOut]
    events: list[EventOut]


class OrderPage(BaseModel):
    items: list[OrderOut]
    next_after_id: int | None


def order_out(o: Order) -> OrderOut:
    return OrderOut.model_validate(o, from_attributes=True)


def _get(db: Session, order_id: int) -> Order:
    row = db.get(Order, order_id)
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    return row


def _detail(db: Session, o: Order) -> OrderDetail:
    lines = list(db.scalars(select(OrderLine).where(OrderLine.order_id == o.id)))
    parcels = []
    for p in db.scalars(
        select(Parcel)
        .where(Parcel.order_id == o.id if o.merged_into_id is None else Parcel.order_id == -1)
        .order_by(Parcel.id)
    ):
        pls = [
            {"order_line_id": pl.order_line_id, "quantity": pl.quantity}
            for pl in db.scalars(select(ParcelLine).where(ParcelLine.parcel_id == p.id))
        ]
        parcels.append(ParcelOut.model_validate({**_attrs(p), "lines": pls}, from_attributes=False))
    events = db.scalars(select(Event).where(Event.order_id == o.id).order_by(Event.id))
    return OrderDetail(
        **order_out(o).model_dump(),
        lines=[LineOut.model_validate(ln, from_attributes=True) for ln in lines],
        parcels=parcels,
        events=[EventOut.model_validate(e, from_attributes=True) for e in events],
    )


def _attrs(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


# --- orders --------------------------------------------------------------------------------------


@router.get("/orders", response_model=OrderPage)
def list_orders(
    db: DbSession,
    p: Principal = READ,
    status: str | None = Query(default=None, max_length=16),
    channel_account_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    hold_code: str | None = Query(default=None, max_length=32),
    tag: str | None = Query(default=None, max_length=64),
    q: str | None = Query(default=None, max_length=128, description="order id, buyer, phone"),
    after_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=500),
) -> OrderPage:
    """Orders newest first; page with ``next_after_id``."""
    rows, nxt = order_page(
        db,
        status=status,
        channel_account_id=channel_account_id,
        hold_code=hold_code,
        tag=tag,
        text=q,
        after_id=after_id,
        limit=limit,
    )
    return OrderPage(items=[order_out(o) for o in rows], next_after_id=nxt)


@router.get("/orders/{order_id}", response_model=OrderDetail)
def get_order(order_id: Id, db: DbSession, p: Principal = READ) -> OrderDetail:
    return _detail(db, _get(db, order_id))


class ManualLineIn(_In):
    sku: str = Field(min_length=1, max_length=64, description="kernel SKU code")
    quantity: Decimal = Field(gt=0, max_digits=14, decimal_places=4)
    unit_price: Decimal = Field(ge=0, max_digits=16, decimal_places=2)


class ManualOrderIn(_In):
    number: str = Field(min_length=1, max_length=64, description="your order number")
    buyer: str = Field(default="", max_length=128)
    receiver_name: str = Field(min_length=1, max_length=128)
    receiver_phone: str = Field(min_length=1, max_length=64)
    province: str = Field(min_length=1, max_length=64)
    city: str = Field(min_length=1, max_length=64)
    district: str = Field(min_length=1, max_length=64)
    address: str = Field(min_length=1, max_length=400)
    note: str = Field(default="", max_length=2000)
    shipping_fee: Decimal = Field(default=Decimal(0), ge=0, max_digits=16, decimal_places=2)
    lines: list[ManualLineIn] = Field(min_length=1, max_length=200)


@router.post("/orders", response_model=OrderDetail, status_code=201)
def create_order(body: ManualOrderIn, db: DbSession, p: Principal = WRITE) -> OrderDetail:
    """A manual order (phone, WeChat, a shop without a connector): reviewed like the rest."""
    from erp_oms.manual import create_manual

    try:
        o = create_manual(db, body.model_dump(), actor=_actor(p))
    except svc.OmsError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return _detail(db, o)


@router.post("/orders/import", response_model=list[OrderOut], status_code=201)
async def import_orders(request: Request, db: DbSession, p: Principal = WRITE) -> list[OrderOut]:
    """Import orders from a CSV file (the request body; UTF-8 or GBK, a header row, one row per
    line, rows of one order share its ``number``). All or nothing: any problem is a 422 that
    lists them by row, and nothing is stored."""
    from starlette.concurrency import run_in_threadpool

    from erp_oms.manual import import_orders as run

    data = await request.body()
    if len(data) > 5_000_000:
        raise HTTPException(413, "the file is larger than 5 MB: split it")
    try:
        rows = await run_in_threadpool(run, db, data, actor=_actor(p))
    except svc.OmsError as exc:
        db.rollback()
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return [order_out(o) for o in rows]


class IdsIn(_In):
    order_ids: list[int] = Field(min_length=1, max_length=500)


class ProcessOut(BaseModel):
    reviewed: int
    held: int
    merged: int
    routed: int
    reserved: int
    shipped: int


@router.post("/orders/process", response_model=ProcessOut)
def process_orders(
    db: DbSession, hooks: Hooks, body: IdsIn | None = None, p: Principal = WRITE
) -> ProcessOut:
    """Run the pipeline now, for the named orders or for every waiting one."""
    res = svc.process(db, order_ids=body.order_ids if body else None, hooks=hooks, actor=_actor(p))
    db.commit()
    return ProcessOut(**{k: getattr(res, k) for k in ProcessOut.model_fields})


class BulkOut(BaseModel):
    done: list[int]
    problems: list[str]


@router.post("/orders/release", response_model=BulkOut)
def release_orders(body: IdsIn, db: DbSession, p: Principal = WRITE) -> BulkOut:
    """Release held orders a person checked (they skip the review and go on to routing)."""
    orders = list(db.scalars(select(Order).where(Order.id.in_(body.order_ids))))
    missing = sorted(set(body.order_ids) - {o.id for o in orders})
    problems = [f"no order {i}" for i in missing]
    problems += svc.release(db, orders, actor=_actor(p))
    db.commit()
    done = [o.id for o in orders if o.status == "reviewed"]
    return BulkOut(done=done, problems=problems)


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=400)


@router.post("/orders/{order_id}/hold", response_model=OrderOut)
def hold_order(order_id: Id, body: ReasonIn, db: DbSession, p: Principal = WRITE) -> OrderOut:
    o = _get(db, order_id)
    if o.status not in ("new", "reviewed", "routed", "reserved"):
        raise HTTPException(422, f"order {o.id} is {o.status}; it cannot be held")
    svc._drop_parcels(db, o)
    svc.hold(db, o, "manual", body.reason, actor=_actor(p))
    db.commit()
    return order_out(o)


@router.post("/orders/{order_id}/cancel", response_model=OrderOut)
def cancel_order(order_id: Id, body: ReasonIn, db: DbSession, p: Principal = WRITE) -> OrderOut:
    o = _get(db, order_id)
    try:
        svc.cancel(db, o, body.reason, actor=_actor(p))
    except svc.OmsError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return order_out(o)


class AddressIn(_In):
    receiver_name: str | None = Field(default=None, min_length=1, max_length=128)
    receiver_phone: str | None = Field(default=None, min_length=1, max_length=64)
    province: str | None = Field(default=None, min_length=1, max_length=64)
    city: str | None = Field(default=None, min_length=1, max_length=64)
    district: str | None = Field(default=None, min_length=1, max_length=64)
    address: str | None = Field(default=None, min_length=1, max_length=400)


@router.patch("/orders/{order_id}/address", response_model=OrderOut)
def fix_address(order_id: Id, body: AddressIn, db: DbSession, p: Principal = WRITE) -> OrderOut:
    """Correct the receiver of an unshipped order; a held order goes back to review."""
    from erp_oms.manual import fix_address as fix

    o = _get(db, order_id)
    try:
        fix(db, o, body.model_dump(exclude_none=True), actor=_actor(p))
    except svc.OmsError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return order_out(o)


class ShipIn(_In):
    tracking_no: str = Field(min_length=1, max_length=64)
    courier_code: str | None = Field(default=None, min_length=1, max_length=32)


@router.post("/parcels/{parcel_id}/ship", response_model=OrderOut)
def ship_parcel(
    parcel_id: Id, body: ShipIn, db: DbSession, hooks: Hooks, p: Principal = WRITE
) -> OrderOut:
    """The parcel left with this tracking number: stock out, write-back queued."""
    parcel = db.get(Parcel, parcel_id)
    if parcel is None:
        raise HTTPException(404, f"no parcel {parcel_id}")
    try:
        svc.ship(
            db,
            parcel,
            tracking_no=body.tracking_no,
            courier_code=body.courier_code,
            hooks=hooks,
            actor=_actor(p),
        )
    except svc.OmsError as exc:
        raise HTTPException(422, str(exc)) from None
    db.commit()
    return order_out(_get(db, parcel.order_id))


class SkuMapIn(_In):
    merchant_sku: str = Field(min_length=1, max_length=128)
    sku: str = Field(min_length=1, max_length=64, description="kernel SKU code")
    channel_account_id: int | None = Field(default=None, ge=1, le=MAX_ID)


@router.post("/sku-map", response_model=dict[str, int])
def map_sku(body: SkuMapIn, db: DbSession, p: Principal = WRITE) -> dict[str, int]:
    """Map a merchant SKU code to a SKU; unmapped lines with that code are filled."""
    sku = db.scalar(select(Sku).where(Sku.code == body.sku))
    if sku is None:
        raise HTTPException(422, f"no SKU with code {body.sku}")
    if body.channel_account_id is not None:
        from erp_core.channels.models import ChannelAccount

        if db.get(ChannelAccount, body.channel_account_id) is None:
            raise HTTPException(422, f"no channel account {body.channel_account_id}")
    filled = svc.map_sku(
        db, body.merchant_sku, sku.id, account_id=body.channel_account_id, actor=_actor(p)
    )
    db.commit()
    return {"lines_filled": filled}


# --- review rules --------------------------------------------------------------------------------


class RuleIn(_In):
    name: str = Field(default="", max_length=200)
    kind: str = Field(min_length=1, max_length=40)
    params: dict[str, Any] = Field(default_factory=dict)
    action: Literal["pass", "hold", "tag"] = "hold"
    reason: str = Field(default="", max_length=400)
    tag: str = Field(default="", max_length=64)
    active: bool = True
    position: int | None = Field(default=None, ge=0, le=1_000_000)


class RuleOut(BaseModel):
    id: int
    position: int
    name: str
    kind: str
    params: dict[str, Any]
    action: str
    reason: str
    tag: str
    active: bool


def _check_rule(body: RuleIn, hooks: Any) -> None:
    types = {**rv.BUILTIN_TYPES, **svc.extra_rule_types(hooks)}
    errors = rv.validate_rule(body.kind, body.params, body.action, body.reason, body.tag, types)
    if errors:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise HTTPException(422, detail)


@router.get("/rules", response_model=list[RuleOut])
def list_rules(db: DbSession, p: Principal = READ) -> list[RuleOut]:
    rows = db.scalars(select(ReviewRule).order_by(ReviewRule.position, ReviewRule.id))
    return [RuleOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/rule-types", response_model=list[dict[str, Any]])
def rule_types(hooks: Hooks, p: Principal = READ) -> list[dict[str, Any]]:
    types = {**rv.BUILTIN_TYPES, **svc.extra_rule_types(hooks)}
    return [
        {
            "kind": t.kind,
            "title_zh": t.title_zh,
            "title_en": t.title_en,
            "params": [
                {
                    "name": f.name,
                    "type": f.type,
                    "title_zh": f.title_zh,
                    "title_en": f.title_en,
                    "required": f.required,
                    "choices": list(f.choices),
                    "integer": f.integer,
                }
                for f in t.params
            ],
        }
        for t in types.values()
    ]


@router.post("/rules", response_model=RuleOut, status_code=201)
def create_rule(body: RuleIn, db: DbSession, hooks: Hooks, p: Principal = MANAGE) -> RuleOut:
    _check_rule(body, hooks)
    last = db.scalar(select(ReviewRule.position).order_by(ReviewRule.position.desc()).limit(1))
    data = body.model_dump()
    if data["position"] is None:
        data["position"] = (last or 0) + 10
    row = ReviewRule(**data)
    db.add(row)
    db.commit()
    return RuleOut.model_validate(row, from_attributes=True)


@router.put("/rules/{rule_id}", response_model=RuleOut)
def replace_rule(
    rule_id: Id, body: RuleIn, db: DbSession, hooks: Hooks, p: Principal = MANAGE
) -> RuleOut:
    row = db.get(ReviewRule, rule_id)
    if row is None:
        raise HTTPException(404, f"no rule {rule_id}")
    _check_rule(body, hooks)
    for k, v in body.model_dump().items():
        if k != "position" or v is not None:
            setattr(row, k, v)
    db.commit()
    return RuleOut.model_validate(row, from_attributes=True)


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: Id, db: DbSession, p: Principal = MANAGE) -> None:
    row = db.get(ReviewRule, rule_id)
    if row is None:
        raise HTTPException(404, f"no rule {rule_id}")
    db.delete(row)
    db.commit()


# --- routing and settings ------------------------------------------------------------------------


class SettingsIO(_In):
    auto_process: bool | None = None
    routing_strategy: str | None = Field(default=None, min_length=1, max_length=40)
    allow_split: bool | None = None
    merge_orders: bool | None = None
    auto_ship: bool | None = None
    default_weight_kg: Decimal | None = Field(default=None, gt=0, max_digits=10, decimal_places=3)


@router.get("/settings", response_model=SettingsIO)
def get_settings(db: DbSession, p: Principal = READ) -> SettingsIO:
    row = svc.settings_of(db)
    return SettingsIO(**{k: getattr(row, k) for k in SettingsIO.model_fields})


@router.patch("/settings", response_model=SettingsIO)
def change_settings(
    body: SettingsIO, db: DbSession, hooks: Hooks, p: Principal = MANAGE
) -> SettingsIO:
    from erp_oms import routing as rt

    row = svc.settings_of(db)
    changes = body.model_dump(exclude_none=True)
    strategy = changes.get("routing_strategy")
    known = {**rt.BUILTIN_STRATEGIES, **svc.extra_strategies(hooks)}
    if strategy is not None and strategy not in known:
        raise HTTPException(
            422, f"routing_strategy: one of {', '.join(sorted(known))}, not {strategy!r}"
        )
    for k, v in changes.items():
        setattr(row, k, v)
    db.commit()
    return SettingsIO(**{k: getattr(row, k) for k in SettingsIO.model_fields})


class WarehouseRouteIn(_In):
    warehouse: str = Field(min_length=1, max_length=32, description="warehouse code")
    priority: int = Field(default=100, ge=0, le=1_000_000)
    regions: list[str] = Field(default_factory=list, max_length=40)
    active: bool = True


@router.put("/warehouse-routes", response_model=dict[str, Any])
def set_warehouse_route(body: WarehouseRouteIn, db: DbSession, p: Principal = MANAGE) -> Any:
    from erp_oms.regions import normalize_province

    wh = db.scalar(select(Warehouse).where(Warehouse.code == body.warehouse))
    if wh is None:
        raise HTTPException(422, f"no warehouse with code {body.warehouse}")
    regions = []
    for r in body.regions:
        name = normalize_province(r)
        if name is None:
            raise HTTPException(422, f"regions: {r!r} is not a province")
        regions.append(name)
    row = db.scalar(select(WarehouseRoute).where(WarehouseRoute.warehouse_id == wh.id))
    if row is None:
        row = WarehouseRoute(warehouse_id=wh.id)
        db.add(row)
    row.priority, row.regions, row.active = body.priority, sorted(set(regions)), body.active
    db.commit()
    return {"warehouse_id": wh.id, "priority": row.priority, "regions": row.regions}


class CourierRateIn(_In):
    warehouse: str = Field(min_length=1, max_length=32)
    courier_code: str = Field(min_length=1, max_length=32)
    region: str = Field(default="*", min_length=1, max_length=64)
    first_kg: Decimal = Field(default=Decimal(1), gt=0, max_digits=10, decimal_places=3)
    first_cost: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    extra_cost_per_kg: Decimal = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    priority: int = Field(default=0, ge=0, le=1000)


@router.put("/courier-rates", response_model=dict[str, Any])
def set_courier_rate(body: CourierRateIn, db: DbSession, p: Principal = MANAGE) -> Any:
    from erp_oms.regions import normalize_province

    wh = db.scalar(select(Warehouse).where(Warehouse.code == body.warehouse))
    if wh is None:
        raise HTTPException(422, f"no warehouse with code {body.warehouse}")
    region = body.region
    if region != "*":
        name = normalize_province(region)
        if name is None:
            raise HTTPException(422, f"region: {region!r} is not a province or *")
        region = name
    row = db.scalar(
        select(CourierRate).where(
            CourierRate.warehouse_id == wh.id,
            CourierRate.courier_code == body.courier_code,
            CourierRate.region == region,
        )
    )
    if row is None:
        row = CourierRate(warehouse_id=wh.id, courier_code=body.courier_code, region=region)
        db.add(row)
    row.first_kg, row.first_cost = body.first_kg, body.first_cost
    row.extra_cost_per_kg, row.priority = body.extra_cost_per_kg, body.priority
    db.commit()
    return {"id": row.id, "warehouse_id": wh.id, "courier_code": row.courier_code, "region": region}


class BlacklistIn(_In):
    kind: Literal["buyer", "phone", "address"]
    value: str = Field(
        default="", max_length=400, description="buyer id or nick, or phone (not for address)"
    )
    province: str = Field(default="", max_length=64)
    city: str = Field(default="", max_length=64)
    district: str = Field(default="", max_length=64)
    detail: str = Field(default="", max_length=400)
    note: str = Field(default="", max_length=400)


@router.post("/blacklist", response_model=dict[str, Any], status_code=201)
def add_blacklist(body: BlacklistIn, db: DbSession, p: Principal = MANAGE) -> Any:
    """Blacklist a buyer, a phone or an address; stored as the review compares them."""
    if body.kind == "address":
        value = rv.normalize_address(body.province, body.city, body.district, body.detail)
        if not value:
            raise HTTPException(422, "an address needs province, city, district and detail")
    elif body.kind == "phone":
        value = rv.normalize_phone(body.value)
    else:
        value = body.value.strip()
    if not value:
        raise HTTPException(422, "value: nothing to blacklist")
    row = db.scalar(select(Blacklist).where(Blacklist.kind == body.kind, Blacklist.value == value))
    if row is None:
        row = Blacklist(kind=body.kind, value=value, note=body.note)
        db.add(row)
        db.commit()
    return {"id": row.id, "kind": row.kind, "value": row.value}


@router.post("/writeback", response_model=dict[str, int])
def writeback_now(request: Request, db: DbSession, p: Principal = WRITE) -> dict[str, int]:
    """Send due tracking numbers to the platforms now (failed ones too, whatever their delay)."""
    from erp_oms.writeback import run_due

    for parcel in db.scalars(select(Parcel).where(Parcel.writeback == "failed")):
        parcel.writeback_next_at = None
    out = run_due(db, request.app.state.registry, request.app.state.settings)
    db.commit()
    return out
