"""The inventory pages under ``/inventory``: SKUs, warehouses and their location trees, stock
levels, stock moves and the stock count form.

Every route names its permission with ``require`` (``core.inventory.read`` to look,
``core.inventory.manage`` to create and change SKUs, warehouses and locations,
``core.inventory.count`` to apply a count); every form carries the session's CSRF token; every
change goes through :mod:`erp_core.inventory.service`, the only writer of the ``inv_`` tables,
and nothing is written on a GET. Lists are the list component (:mod:`erp_core.web.listing`):
server-side search, filters, sort, keyset pages, exports, and never a row count.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import func, or_, select, type_coerce
from sqlalchemy.orm import Session, aliased

from erp_core.api.params import Id
from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.db.types import Quantity
from erp_core.i18n import N_, Message
from erp_core.inventory import service
from erp_core.inventory.errors import InventoryConflict, InventoryError
from erp_core.inventory.models import Location, Lot, Move, Quant, Sku, Warehouse
from erp_core.inventory.types import CountLine
from erp_core.tenancy.models import Tenant
from erp_core.web.flash import redirect
from erp_core.web.listing import (
    Column,
    Edit,
    FieldError,
    Filter,
    ListView,
    list_context,
    mount_list,
)
from erp_core.web.templating import render

router = APIRouter(prefix="/inventory", include_in_schema=False)

READ = "core.inventory.read"
MANAGE = "core.inventory.manage"
COUNT = "core.inventory.count"

Reader = Annotated[Principal, Depends(require(READ))]
Manager = Annotated[Principal, Depends(require(MANAGE))]
Counter = Annotated[Principal, Depends(require(COUNT))]

#: How the pages name the service's codes (the codes stay in URLs, exports use the labels).
TRACKING: dict[str, Message] = {
    "none": N_("Not tracked"),
    "lot": N_("By lot"),
    "serial": N_("By serial number"),
}
STATES: dict[str, Message] = {
    "draft": N_("Draft"),
    "reserved": N_("Reserved"),
    "done": N_("Done"),
    "cancelled": N_("Cancelled"),
}
KINDS: dict[str, Message] = {
    "stock": N_("Holds stock"),
    "view": N_("Groups other locations"),
}
USAGES: dict[str, Message] = {
    "internal": N_("Warehouse"),
    "supplier": N_("Suppliers"),
    "customer": N_("Customers"),
    "adjustment": N_("Inventory adjustment"),
    "scrap": N_("Scrap"),
    "transit": N_("Transit between warehouses"),
}
BOOL_CHOICES: tuple[tuple[str, Message], ...] = (("True", N_("Yes")), ("False", N_("No")))
DECIMALS_CHOICES: tuple[tuple[str, str], ...] = tuple((str(n), str(n)) for n in range(5))
#: Source type of the moves a count from these pages books (its id names the count).
COUNT_SOURCE = "inventory.count"
COUNT_ID_RE = re.compile(r"^CNT-[0-9A-Za-z-]{1,60}$")
#: Rows of current stock the count form lists at most (narrow it down by location beyond).
COUNT_FORM_ROWS = 300
MAX_COUNT_ROWS = 2000


# --- small helpers -------------------------------------------------------------------------


def qty(value: Decimal | None) -> Decimal | None:
    """A quantity without the trailing zeros of its 4 stored places (``12.5000`` -> ``12.5``)."""
    if value is None:
        return None
    n = value.normalize()
    return n.quantize(Decimal(1)) if n == n.to_integral_value() else n


def money(value: Decimal | None) -> str:
    """An amount with at least 2 decimal places (``35.5000`` -> ``35.50``)."""
    if value is None:
        return ""
    n = value.normalize()
    if -n.as_tuple().exponent < 2:  # type: ignore[operator]
        n = n.quantize(Decimal("0.01"))
    return format(n, "f")


def _not_found() -> HTTPException:
    return HTTPException(404, "Not Found")


def _message(exc: Exception) -> object:
    return exc.args[0] if exc.args else type(exc).__name__


#: Which form field a message of the service is about, by the words it starts with.
_SERVICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("SKU code", "code"),
    ("SKU name", "name"),
    ("unit", "unit"),
    ("decimals", "decimals"),
    ("a serial-tracked", "decimals"),
    ("tracking", "tracking"),
    ("shelf_life_days", "shelf_life_days"),
    ("warehouse code", "code"),
    ("warehouse name", "name"),
    ("location code", "code"),
    ("location name", "name"),
    ("kind", "kind"),
)


def _service_errors(exc: Exception) -> dict[str, object]:
    """An error of the service as ``{field: message}`` (``""``: the whole form)."""
    text = str(_message(exc))
    name = getattr(exc, "field", None) or ""
    if not name:
        for prefix, fld in _SERVICE_FIELDS:
            if text.startswith(prefix):
                name = fld
                break
        else:
            if "already exists" in text:
                name = "code"
    return {name: _message(exc)}


# --- validation of SKU fields (translated messages; the service checks again) -----------


def _clean_code(raw: str, what: str = "code") -> str:
    v = raw.strip()
    if not v:
        raise FieldError(N_("enter a code"), what)
    if len(v) > 64:
        raise FieldError(N_("at most %(n)s characters", n=64), what)
    if not service.CODE_RE.match(v):
        raise FieldError(
            N_("use letters, digits, '.', '_' and '-' only, starting with a letter or digit"),
            what,
        )
    return v


def _clean_name(raw: str, max_len: int = 200) -> str:
    v = raw.strip()
    if not v:
        raise FieldError(N_("enter a name"), "name")
    if len(v) > max_len:
        raise FieldError(N_("at most %(n)s characters", n=max_len), "name")
    return v


def _clean_unit(raw: str) -> str:
    v = raw.strip()
    if not v:
        raise FieldError(N_("enter a unit, e.g. pcs or kg"), "unit")
    if len(v) > 16:
        raise FieldError(N_("at most %(n)s characters", n=16), "unit")
    return v


def _clean_decimals(raw: str) -> int:
    try:
        n = int(raw.strip())
    except ValueError:
        n = -1
    if not 0 <= n <= 4:
        raise FieldError(N_("choose a whole number from 0 to 4"), "decimals")
    return n


def _clean_tracking(raw: str) -> str:
    if raw not in TRACKING:
        raise FieldError(N_("choose how the SKU is tracked"), "tracking")
    return raw


def _clean_shelf_life(raw: str) -> int | None:
    v = raw.strip()
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        n = 0
    if not 1 <= n <= 36500:
        raise FieldError(N_("enter a whole number of days from 1 to 36500"), "shelf_life_days")
    return n


def _clean_active(raw: str) -> bool:
    if raw not in ("True", "False"):
        raise FieldError(N_("choose yes or no"), "active")
    return raw == "True"


def _check_change(db: Session, sku: Sku, decimals: int, tracking: str) -> None:
    """What the service refuses about a change, with messages people can read."""
    if decimals < sku.decimals:
        raise FieldError(N_("the number of decimal places can only grow"), "decimals")
    if tracking == "serial" and decimals != 0:
        raise FieldError(N_("serial numbers are counted in whole units (0 places)"), "decimals")
    if tracking != sku.tracking and db.scalar(
        select(Move.id).where(Move.sku_id == sku.id).limit(1)
    ):
        raise FieldError(N_("the tracking cannot change: the SKU already has moves"), "tracking")


# --- SKUs ----------------------------------------------------------------------------------


def _sku_of(db: Session, sku_id: int) -> Sku:
    sku = db.get(Sku, sku_id)
    if sku is None:
        raise _not_found()
    return sku


def _saver(
    field_name: str, clean: Callable[[str], Any]
) -> Callable[[Session, Principal, int, str], object]:
    def save(db: Session, principal: Principal, sku_id: int, value: str) -> object:
        sku = _sku_of(db, sku_id)
        cleaned = clean(value)
        if field_name == "decimals":
            _check_change(db, sku, cleaned, sku.tracking)
        return service.update_sku(db, sku, **{field_name: cleaned})

    return save


_ON_HAND = (
    select(func.coalesce(func.sum(Quant.quantity), 0))
    .where(Quant.sku_id == Sku.id, Quant.warehouse_id.is_not(None))
    .correlate(Sku)
    .scalar_subquery()
)

SKUS = mount_list(
    router,
    "/skus",
    ListView(
        name="skus",
        title=N_("SKUs"),
        query=select(
            Sku.id.label("id"),
            Sku.code.label("code"),
            Sku.name.label("name"),
            Sku.unit.label("unit"),
            Sku.decimals.label("decimals"),
            Sku.tracking.label("tracking"),
            Sku.shelf_life_days.label("shelf_life_days"),
            Sku.active.label("active"),
            Sku.created_at.label("created_at"),
            type_coerce(_ON_HAND, Quantity).label("on_hand"),
        ),
        id_expr=Sku.id,
        columns=(
            Column(
                key="code",
                title=N_("Code"),
                expr=Sku.code,
                sortable=True,
                link=lambda r: f"/inventory/skus/{r.id}",
            ),
            Column(
                key="name",
                title=N_("Name"),
                expr=Sku.name,
                sortable=True,
                edit=Edit(save=_saver("name", _clean_name), permission=MANAGE),
            ),
            Column(
                key="unit",
                title=N_("Unit"),
                expr=Sku.unit,
                edit=Edit(save=_saver("unit", _clean_unit), permission=MANAGE),
            ),
            Column(
                key="decimals",
                title=N_("Decimal places"),
                expr=Sku.decimals,
                edit=Edit(
                    save=_saver("decimals", _clean_decimals),
                    permission=MANAGE,
                    kind="select",
                    choices=DECIMALS_CHOICES,
                ),
            ),
            Column(
                key="tracking",
                title=N_("Tracking"),
                expr=Sku.tracking,
                value=lambda r: TRACKING.get(r.tracking, r.tracking),
            ),
            Column(
                key="shelf_life_days",
                title=N_("Shelf life (days)"),
                expr=Sku.shelf_life_days,
                visible=False,
                edit=Edit(save=_saver("shelf_life_days", _clean_shelf_life), permission=MANAGE),
            ),
            Column(
                key="on_hand",
                title=N_("On hand"),
                value=lambda r: qty(r.on_hand),
            ),
            Column(
                key="active",
                title=N_("Active"),
                expr=Sku.active,
                edit=Edit(
                    save=_saver("active", _clean_active),
                    permission=MANAGE,
                    kind="select",
                    choices=BOOL_CHOICES,
                ),
            ),
            Column(
                key="created_at",
                title=N_("Created"),
                expr=Sku.id,
                sortable=True,
                visible=False,
                value=lambda r: r.created_at,
            ),
        ),
        search=(Sku.code, Sku.name),
        filters=(
            Filter(
                key="tracking_is",
                title=N_("Tracking"),
                expr=Sku.tracking,
                choices=list(TRACKING.items()),
            ),
            Filter(key="active_is", title=N_("Active"), expr=Sku.active, kind="bool"),
        ),
        sort="code",
    ),
    read=READ,
    template="inventory/skus.html",
    context=lambda request, db: _sku_form_ctx(request.state.principal),
)


def _sku_form_ctx(
    principal: Principal,
    form: dict[str, str] | None = None,
    errors: dict[str, object] | None = None,
    *,
    dialog_open: bool = False,
) -> dict[str, Any]:
    return {
        "can_manage": principal.can(MANAGE),
        "form": form
        or {
            "code": "",
            "name": "",
            "unit": "pcs",
            "decimals": "0",
            "tracking": "none",
            "shelf_life_days": "",
        },
        "errors": errors or {},
        "dialog_open": dialog_open,
        "tracking_choices": list(TRACKING.items()),
        "decimals_choices": DECIMALS_CHOICES,
    }


@dataclass
class _SkuForm:
    values: dict[str, str]
    errors: dict[str, object] = field(default_factory=dict)
    cleaned: dict[str, Any] = field(default_factory=dict)

    def clean(self, name: str, fn: Callable[[str], Any]) -> None:
        try:
            self.cleaned[name] = fn(self.values.get(name, ""))
        except FieldError as exc:
            self.errors.setdefault(exc.field or name, _message(exc))


def _read_sku_form(values: dict[str, str], *, new: bool) -> _SkuForm:
    f = _SkuForm(values)
    if new:
        f.clean("code", _clean_code)
    f.clean("name", _clean_name)
    f.clean("unit", _clean_unit)
    f.clean("decimals", _clean_decimals)
    f.clean("tracking", _clean_tracking)
    f.clean("shelf_life_days", _clean_shelf_life)
    if not new:
        f.clean("active", _clean_active)
    if not f.errors and f.cleaned.get("tracking") == "serial" and f.cleaned.get("decimals") != 0:
        f.errors["decimals"] = N_("serial numbers are counted in whole units (0 places)")
    return f


@router.post("/skus")
def sku_create(
    request: Request,
    db: DbSession,
    principal: Manager,
    code: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=400)] = "",
    unit: Annotated[str, Form(max_length=100)] = "",
    decimals: Annotated[str, Form(max_length=10)] = "0",
    tracking: Annotated[str, Form(max_length=10)] = "none",
    shelf_life_days: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    values = {
        "code": code,
        "name": name,
        "unit": unit,
        "decimals": decimals,
        "tracking": tracking,
        "shelf_life_days": shelf_life_days,
    }
    f = _read_sku_form(values, new=True)
    if not f.errors and db.scalar(select(Sku.id).where(Sku.code == f.cleaned["code"])):
        f.errors["code"] = N_("SKU %(code)s already exists", code=f.cleaned["code"])
    if not f.errors:
        try:
            sku = service.create_sku(db, **f.cleaned)
            db.commit()
        except InventoryError as exc:
            db.rollback()
            f.errors = _service_errors(exc)
        else:
            return redirect(
                request,
                f"/inventory/skus/{sku.id}",
                N_("SKU %(code)s created.", code=sku.code),
            )
    ctx = {
        **list_context(SKUS, request, db, principal),
        **_sku_form_ctx(principal, values, f.errors, dialog_open=True),
    }
    return render(request, "inventory/skus.html", ctx, block="sku_form", status_code=422)


def _sku_detail_ctx(
    db: Session,
    principal: Principal,
    sku: Sku,
    form: dict[str, str] | None = None,
    errors: dict[str, object] | None = None,
) -> dict[str, Any]:
    by_warehouse = service.stock_levels(db, sku=sku, group_by="warehouse")
    by_lot = service.stock_levels(db, sku=sku, group_by="lot")
    quantity, value, average = service.valuation_of(db, sku)
    tenant = db.get(Tenant, principal.tenant_id)
    src = aliased(Location)
    dst = aliased(Location)
    recent = db.execute(
        select(
            Move.id,
            Move.created_at,
            Move.state,
            Move.quantity,
            src.path.label("from_location"),
            dst.path.label("to_location"),
            Lot.code.label("lot"),
        )
        .outerjoin(src, src.id == Move.from_location_id)
        .outerjoin(dst, dst.id == Move.to_location_id)
        .outerjoin(Lot, Lot.id == Move.lot_id)
        .where(Move.sku_id == sku.id)
        .order_by(Move.created_at.desc(), Move.id.desc())
        .limit(10)
    ).all()
    return {
        "sku": sku,
        "by_warehouse": by_warehouse,
        "by_lot": by_lot,
        "valuation": {"quantity": quantity, "value": value, "average": average},
        "currency": tenant.currency if tenant else "",
        "recent": recent,
        "tracking": TRACKING,
        "states": STATES,
        "can_manage": principal.can(MANAGE),
        "form": form
        or {
            "name": sku.name,
            "unit": sku.unit,
            "decimals": str(sku.decimals),
            "tracking": sku.tracking,
            "shelf_life_days": "" if sku.shelf_life_days is None else str(sku.shelf_life_days),
            "active": str(sku.active),
        },
        "errors": errors or {},
        "tracking_choices": list(TRACKING.items()),
        "decimals_choices": DECIMALS_CHOICES,
        "bool_choices": BOOL_CHOICES,
        "qty": qty,
        "money": money,
    }


@router.get("/skus/{sku_id}")
def sku_page(sku_id: Id, request: Request, db: DbSession, principal: Reader) -> Response:
    sku = _sku_of(db, sku_id)
    return render(request, "inventory/sku.html", _sku_detail_ctx(db, principal, sku))


@router.post("/skus/{sku_id}")
def sku_update(
    sku_id: Id,
    request: Request,
    db: DbSession,
    principal: Manager,
    name: Annotated[str, Form(max_length=400)] = "",
    unit: Annotated[str, Form(max_length=100)] = "",
    decimals: Annotated[str, Form(max_length=10)] = "",
    tracking: Annotated[str, Form(max_length=10)] = "",
    shelf_life_days: Annotated[str, Form(max_length=10)] = "",
    active: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    sku = _sku_of(db, sku_id)
    values = {
        "name": name,
        "unit": unit,
        "decimals": decimals,
        "tracking": tracking,
        "shelf_life_days": shelf_life_days,
        "active": active,
    }
    f = _read_sku_form(values, new=False)
    if not f.errors:
        try:
            _check_change(db, sku, f.cleaned["decimals"], f.cleaned["tracking"])
        except FieldError as exc:
            f.errors[exc.field or ""] = _message(exc)
    if not f.errors:
        try:
            service.update_sku(db, sku, **f.cleaned)
            db.commit()
        except InventoryError as exc:
            db.rollback()
            f.errors = _service_errors(exc)
        else:
            return redirect(
                request, f"/inventory/skus/{sku.id}", N_("SKU %(code)s saved.", code=sku.code)
            )
    sku = _sku_of(db, sku_id)
    ctx = _sku_detail_ctx(db, principal, sku, values, f.errors)
    return render(request, "inventory/sku.html", ctx, block="sku_form", status_code=422)


# --- warehouses and locations --------------------------------------------------------------


def _virtual_locations(db: Session) -> list[Location]:
    """The tenant's virtual locations, as they are (created with the tenant; never here)."""
    return list(
        db.scalars(select(Location).where(Location.warehouse_id.is_(None)).order_by(Location.path))
    )


def _warehouses_extra(request: Request, db: Session) -> dict[str, Any]:
    principal: Principal = request.state.principal
    return {
        "can_manage": principal.can(MANAGE),
        "form": {"code": "", "name": ""},
        "errors": {},
        "dialog_open": False,
        "virtual": _virtual_locations(db),
        "usages": USAGES,
    }


WAREHOUSES = mount_list(
    router,
    "/warehouses",
    ListView(
        name="warehouses",
        title=N_("Warehouses"),
        query=select(
            Warehouse.id.label("id"),
            Warehouse.code.label("code"),
            Warehouse.name.label("name"),
            Warehouse.active.label("active"),
            Warehouse.created_at.label("created_at"),
        ),
        id_expr=Warehouse.id,
        columns=(
            Column(
                key="code",
                title=N_("Code"),
                expr=Warehouse.code,
                sortable=True,
                link=lambda r: f"/inventory/warehouses/{r.id}",
            ),
            Column(key="name", title=N_("Name"), expr=Warehouse.name, sortable=True),
            Column(key="active", title=N_("Active"), expr=Warehouse.active),
            Column(
                key="created_at",
                title=N_("Created"),
                expr=Warehouse.id,
                sortable=True,
                value=lambda r: r.created_at,
            ),
        ),
        search=(Warehouse.code, Warehouse.name),
        filters=(Filter(key="active_is", title=N_("Active"), expr=Warehouse.active, kind="bool"),),
        sort="code",
    ),
    read=READ,
    template="inventory/warehouses.html",
    context=_warehouses_extra,
)


@router.post("/warehouses")
def warehouse_create(
    request: Request,
    db: DbSession,
    principal: Manager,
    code: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    form = {"code": code, "name": name}
    errors: dict[str, object] = {}
    cleaned: dict[str, str] = {}
    for key, clean in (("code", _clean_code), ("name", _clean_name)):
        try:
            cleaned[key] = clean(form[key])
        except FieldError as exc:
            errors[key] = _message(exc)
    if not errors and len(cleaned["code"]) > 32:
        errors["code"] = N_("at most %(n)s characters", n=32)
    if not errors and (
        db.scalar(select(Warehouse.id).where(Warehouse.code == cleaned["code"]))
        or db.scalar(select(Location.id).where(Location.path == cleaned["code"]))
    ):
        errors["code"] = N_("warehouse %(code)s already exists", code=cleaned["code"])
    if not errors:
        try:
            wh = service.create_warehouse(db, code=cleaned["code"], name=cleaned["name"])
            db.commit()
        except InventoryError as exc:
            db.rollback()
            errors = _service_errors(exc)
        else:
            return redirect(
                request,
                f"/inventory/warehouses/{wh.id}",
                N_("Warehouse %(code)s created.", code=wh.code),
            )
    ctx = {
        **list_context(WAREHOUSES, request, db, principal),
        **_warehouses_extra(request, db),
        "form": form,
        "errors": errors,
        "dialog_open": True,
    }
    return render(
        request, "inventory/warehouses.html", ctx, block="warehouse_form", status_code=422
    )


@dataclass
class LocationNode:
    location: Location
    children: list[LocationNode] = field(default_factory=list)


def _tree(locations: Sequence[Location]) -> list[LocationNode]:
    """Locations (parents before children) as a tree."""
    nodes: dict[int, LocationNode] = {}
    roots: list[LocationNode] = []
    for loc in locations:
        node = nodes[loc.id] = LocationNode(loc)
        parent = nodes.get(loc.parent_id) if loc.parent_id is not None else None
        (parent.children if parent is not None else roots).append(node)
    return roots


def _warehouse_of(db: Session, warehouse_id: int) -> Warehouse:
    wh = db.get(Warehouse, warehouse_id)
    if wh is None:
        raise _not_found()
    return wh


def _warehouse_ctx(
    db: Session,
    principal: Principal,
    wh: Warehouse,
    form: dict[str, str] | None = None,
    errors: dict[str, object] | None = None,
) -> dict[str, Any]:
    locations = service.location_tree(db, wh)
    root = next((loc for loc in locations if loc.parent_id is None), None)
    return {
        "warehouse": wh,
        "tree": _tree(locations),
        "skus_at": _skus_per_location(db, wh),
        "parents": [(str(loc.id), loc.path) for loc in locations],
        "kinds": KINDS,
        "kind_choices": list(KINDS.items()),
        "can_manage": principal.can(MANAGE),
        "can_count": principal.can(COUNT),
        "form": form
        or {"parent": str(root.id) if root else "", "code": "", "name": "", "kind": "stock"},
        "errors": errors or {},
    }


def _skus_per_location(db: Session, wh: Warehouse) -> dict[int, int]:
    """How many SKUs each location of the warehouse holds (one query)."""
    rows = db.execute(
        select(Quant.location_id, func.count())
        .where(Quant.warehouse_id == wh.id, Quant.quantity > 0)
        .group_by(Quant.location_id)
    )
    return {loc_id: n for loc_id, n in rows}


@router.get("/warehouses/{warehouse_id}")
def warehouse_page(
    warehouse_id: Id, request: Request, db: DbSession, principal: Reader
) -> Response:
    wh = _warehouse_of(db, warehouse_id)
    return render(request, "inventory/warehouse.html", _warehouse_ctx(db, principal, wh))


@router.post("/warehouses/{warehouse_id}/locations")
def location_create(
    warehouse_id: Id,
    request: Request,
    db: DbSession,
    principal: Manager,
    parent: Annotated[str, Form(max_length=20)] = "",
    code: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=400)] = "",
    kind: Annotated[str, Form(max_length=10)] = "stock",
) -> Response:
    wh = _warehouse_of(db, warehouse_id)
    form = {"parent": parent, "code": code, "name": name, "kind": kind}
    errors: dict[str, object] = {}
    parent_loc: Location | None = None
    if parent.isdigit():
        parent_loc = db.get(Location, int(parent))
    if parent_loc is None or parent_loc.warehouse_id != wh.id:
        errors["parent"] = N_("choose a location of this warehouse")
    try:
        clean_code = _clean_code(code)
    except FieldError as exc:
        errors["code"] = _message(exc)
    if len(name.strip()) > 200:
        errors["name"] = N_("at most %(n)s characters", n=200)
    if kind not in KINDS:
        errors["kind"] = N_("choose what the location is for")
    if not errors and parent_loc is not None:
        path = f"{parent_loc.path}/{clean_code}"
        if db.scalar(select(Location.id).where(Location.path == path)):
            errors["code"] = N_("location %(path)s already exists", path=path)
    if not errors and parent_loc is not None:
        try:
            loc = service.create_location(
                db, parent=parent_loc, code=clean_code, name=name, kind=kind
            )
            db.commit()
        except InventoryError as exc:
            db.rollback()
            errors = _service_errors(exc)
        else:
            return redirect(
                request,
                f"/inventory/warehouses/{wh.id}",
                N_("Location %(path)s added.", path=loc.path),
            )
    wh = _warehouse_of(db, warehouse_id)
    ctx = _warehouse_ctx(db, principal, wh, form, errors)
    return render(request, "inventory/warehouse.html", ctx, block="location_form", status_code=422)


# --- stock levels --------------------------------------------------------------------------


def _warehouse_choices(db: Session) -> list[tuple[str, str]]:
    return [
        (code, f"{code} · {name}")
        for code, name in db.execute(
            select(Warehouse.code, Warehouse.name).order_by(Warehouse.code)
        )
    ]


#: The ways the stock page groups quants: (key, path below /inventory, title of the tab).
STOCK_LEVELS: tuple[tuple[str, str, Message], ...] = (
    ("warehouse", "/stock", N_("By warehouse")),
    ("lot", "/stock/by-lot", N_("By lot")),
    ("location", "/stock/by-location", N_("By location")),
    ("sku", "/stock/by-sku", N_("By SKU")),
)


def _stock_view(level: str) -> ListView:
    """Stock levels grouped per ``level``: ``sku`` (every warehouse together), ``warehouse``
    (per SKU and warehouse), ``lot`` (per SKU, warehouse and lot) or ``location`` (per SKU,
    location and lot: the quants themselves). A group's row id is its smallest quant id."""
    groups: list[Any] = [Quant.sku_id]
    if level != "sku":
        groups.append(Quant.warehouse_id)
    if level in ("lot", "location"):
        groups.append(Quant.lot_id)
    if level == "location":
        groups.append(Quant.location_id)
    sub = (
        select(
            *groups,
            func.min(Quant.id).label("id"),
            func.sum(Quant.quantity).label("on_hand"),
            func.sum(Quant.reserved).label("reserved"),
        )
        .where(Quant.warehouse_id.is_not(None))
        .group_by(*groups)
        .having(func.sum(Quant.quantity) > 0)
        .subquery(f"stock_{level}")
    )
    available = type_coerce(sub.c.on_hand - sub.c.reserved, Quantity)
    cols: list[Any] = [
        sub.c.id,
        Sku.id.label("sku_id"),
        Sku.code.label("sku"),
        Sku.name.label("name"),
        Sku.unit.label("unit"),
        sub.c.on_hand,
        sub.c.reserved,
        available.label("available"),
    ]
    columns: list[Column] = [
        Column(
            key="sku",
            title=N_("SKU"),
            expr=Sku.code,
            sortable=True,
            link=lambda r: f"/inventory/skus/{r.sku_id}",
        ),
        Column(key="name", title=N_("Name"), expr=Sku.name),
    ]
    search: list[Any] = [Sku.code, Sku.name]
    filters: list[Filter] = [
        Filter(key="sku_is", title=N_("SKU code"), expr=Sku.code, kind="text"),
    ]
    if level != "sku":
        cols += [Warehouse.id.label("warehouse_id"), Warehouse.code.label("warehouse")]
        columns.append(
            Column(
                key="warehouse",
                title=N_("Warehouse"),
                expr=Warehouse.code,
                sortable=True,
                link=lambda r: f"/inventory/warehouses/{r.warehouse_id}",
            )
        )
        filters.append(
            Filter(
                key="warehouse_is",
                title=N_("Warehouse"),
                expr=Warehouse.code,
                choices=_warehouse_choices,
            )
        )
    if level == "location":
        cols.append(Location.path.label("location"))
        columns.append(
            Column(key="location", title=N_("Location"), expr=Location.path, sortable=True)
        )
        search.append(Location.path)
        filters.append(
            Filter(
                key="location_in",
                title=N_("Location and below"),
                kind="text",
                where=lambda raw: or_(
                    Location.path == raw.strip("/"),
                    Location.path.startswith(raw.strip("/") + "/", autoescape=True),
                ),
            )
        )
    if level in ("lot", "location"):
        cols += [Lot.code.label("lot"), Lot.expiry.label("expiry")]
        columns += [
            Column(key="lot", title=N_("Lot or serial number"), expr=Lot.code),
            Column(key="expiry", title=N_("Expiry"), expr=Lot.expiry),
        ]
        search.append(Lot.code)
        filters.append(Filter(key="lot_is", title=N_("Lot"), expr=Lot.code, kind="text"))
    columns += [
        Column(key="unit", title=N_("Unit"), expr=Sku.unit, visible=False),
        Column(
            key="on_hand",
            title=N_("On hand"),
            expr=sub.c.on_hand,
            sortable=True,
            value=lambda r: qty(r.on_hand),
        ),
        Column(
            key="reserved",
            title=N_("Reserved"),
            expr=sub.c.reserved,
            value=lambda r: qty(r.reserved),
        ),
        Column(
            key="available",
            title=N_("Available"),
            expr=available,
            sortable=True,
            value=lambda r: qty(r.available),
        ),
    ]
    # outer joins: every group has its SKU, warehouse and location (see the moves list)
    query: Any = select(*cols).select_from(sub).outerjoin(Sku, Sku.id == sub.c.sku_id)
    if level != "sku":
        query = query.outerjoin(Warehouse, Warehouse.id == sub.c.warehouse_id)
    if level == "location":
        query = query.outerjoin(Location, Location.id == sub.c.location_id)
    if level in ("lot", "location"):
        query = query.outerjoin(Lot, Lot.id == sub.c.lot_id)
    title = {
        "sku": N_("Stock levels by SKU"),
        "warehouse": N_("Stock levels"),
        "lot": N_("Stock levels by lot"),
        "location": N_("Stock levels by location"),
    }[level]
    return ListView(
        name=f"stock-{level}",
        title=title,
        query=query,
        id_expr=sub.c.id,
        columns=tuple(columns),
        search=tuple(search),
        filters=tuple(filters),
        sort="sku",
    )


def _stock_extra(level: str) -> Callable[[Request, Session], dict[str, Any]]:
    def extra(request: Request, db: Session) -> dict[str, Any]:
        return {"levels": STOCK_LEVELS, "level": level}

    return extra


STOCK_VIEWS: dict[str, ListView] = {
    key: mount_list(
        router,
        path,
        _stock_view(key),
        read=READ,
        template="inventory/stock.html",
        context=_stock_extra(key),
    )
    for key, path, _ in STOCK_LEVELS
}


# --- moves ---------------------------------------------------------------------------------

_SRC = aliased(Location, name="src")
_DST = aliased(Location, name="dst")


def _location_choices(db: Session) -> list[tuple[str, str]]:
    return [
        (path, path)
        for (path,) in db.execute(select(Location.path).order_by(Location.path).limit(2000))
    ]


def _within(raw: str) -> Any:
    """Ids of the location ``raw`` (a path) and of every location below it."""
    path = raw.strip().strip("/")
    return select(Location.id).where(
        or_(Location.path == path, Location.path.startswith(path + "/", autoescape=True))
    )


def _source(row: Any) -> str:
    if not row.source_type:
        return ""
    return f"{row.source_type}: {row.source_id}" if row.source_id else str(row.source_type)


MOVES = mount_list(
    router,
    "/moves",
    ListView(
        name="moves",
        title=N_("Stock moves"),
        query=select(
            Move.id.label("id"),
            Move.created_at.label("created_at"),
            Move.done_at.label("done_at"),
            Move.state.label("state"),
            Move.sku_id.label("sku_id"),
            Sku.code.label("sku"),
            Move.quantity.label("quantity"),
            Sku.unit.label("unit"),
            _SRC.path.label("from_location"),
            _DST.path.label("to_location"),
            Lot.code.label("lot"),
            Move.source_type.label("source_type"),
            Move.source_id.label("source_id"),
            Move.reference.label("reference"),
            Move.value.label("value"),
        )
        # outer joins, though every move has its SKU and locations (NOT NULL foreign keys):
        # they tell the planner that joining never drops a move, so that PostgreSQL walks
        # the (tenant_id, created_at, id) index and stops after one page instead of joining
        # every move first (with inner joins and the tenant conditions on each table it
        # estimates one row and sorts them all)
        .outerjoin(Sku, Sku.id == Move.sku_id)
        .outerjoin(_SRC, _SRC.id == Move.from_location_id)
        .outerjoin(_DST, _DST.id == Move.to_location_id)
        .outerjoin(Lot, Lot.id == Move.lot_id),
        id_expr=Move.id,
        columns=(
            Column(
                key="id",
                title=N_("No."),
                expr=Move.id,
                link=lambda r: f"/inventory/moves/{r.id}",
            ),
            Column(key="created_at", title=N_("Date"), expr=Move.created_at, sortable=True),
            Column(
                key="sku",
                title=N_("SKU"),
                expr=Sku.code,
                link=lambda r: f"/inventory/skus/{r.sku_id}",
            ),
            Column(
                key="quantity",
                title=N_("Quantity"),
                expr=Move.quantity,
                value=lambda r: qty(r.quantity),
            ),
            Column(key="unit", title=N_("Unit"), expr=Sku.unit, visible=False),
            Column(key="from_location", title=N_("From location"), expr=_SRC.path),
            Column(key="to_location", title=N_("To location"), expr=_DST.path),
            Column(key="lot", title=N_("Lot or serial number"), expr=Lot.code),
            Column(
                key="state",
                title=N_("State"),
                expr=Move.state,
                value=lambda r: STATES.get(r.state, r.state),
            ),
            Column(key="source", title=N_("Source"), value=_source),
            Column(key="reference", title=N_("Reference"), expr=Move.reference, visible=False),
            Column(key="done_at", title=N_("Done at"), expr=Move.done_at, visible=False),
            Column(
                key="value",
                title=N_("Value"),
                expr=Move.value,
                visible=False,
                value=lambda r: money(r.value) if r.value is not None else None,
            ),
        ),
        search=(Move.reference, Move.source_id),
        filters=(
            Filter(
                key="state_is", title=N_("State"), expr=Move.state, choices=list(STATES.items())
            ),
            Filter(
                key="sku_is",
                title=N_("SKU code"),
                kind="text",
                where=lambda raw: Move.sku_id.in_(select(Sku.id).where(Sku.code == raw)),
            ),
            Filter(
                key="location",
                title=N_("Location and below"),
                choices=_location_choices,
                where=lambda raw: or_(
                    Move.from_location_id.in_(_within(raw)),
                    Move.to_location_id.in_(_within(raw)),
                ),
            ),
            Filter(key="source_type", title=N_("Source type"), expr=Move.source_type, kind="text"),
            Filter(key="source_id", title=N_("Source document"), expr=Move.source_id, kind="text"),
            Filter(key="since", title=N_("From"), expr=Move.created_at, kind="date_from"),
            Filter(key="until", title=N_("To"), expr=Move.created_at, kind="date_to"),
        ),
        sort="-created_at",
    ),
    read=READ,
    template="inventory/moves.html",
)


def _move_rows(db: Session, *where: Any, limit: int = 200) -> list[Any]:
    """Moves with their SKU, locations and lot (one query)."""
    src = aliased(Location)
    dst = aliased(Location)
    return list(
        db.execute(
            select(
                Move,
                Sku.code.label("sku_code"),
                Sku.unit.label("unit"),
                src.path.label("from_path"),
                src.warehouse_id.label("from_warehouse_id"),
                src.usage.label("from_usage"),
                dst.path.label("to_path"),
                dst.warehouse_id.label("to_warehouse_id"),
                dst.usage.label("to_usage"),
                Lot.code.label("lot_code"),
                Lot.expiry.label("lot_expiry"),
            )
            .outerjoin(Sku, Sku.id == Move.sku_id)
            .outerjoin(src, src.id == Move.from_location_id)
            .outerjoin(dst, dst.id == Move.to_location_id)
            .outerjoin(Lot, Lot.id == Move.lot_id)
            .where(*where)
            .order_by(Move.id)
            .limit(limit)
        ).all()
    )


@router.get("/moves/{move_id}")
def move_page(move_id: Id, request: Request, db: DbSession, principal: Reader) -> Response:
    rows = _move_rows(db, Move.id == move_id)
    if not rows:
        raise _not_found()
    row = rows[0]
    follow_ups = _move_rows(db, Move.origin_move_id == move_id, limit=50)
    tenant = db.get(Tenant, principal.tenant_id)
    return render(
        request,
        "inventory/move.html",
        {
            "row": row,
            "move": row.Move,
            "follow_ups": follow_ups,
            "states": STATES,
            "usages": USAGES,
            "currency": tenant.currency if tenant else "",
            "qty": qty,
            "money": money,
        },
    )


# --- stock count ---------------------------------------------------------------------------


@dataclass
class CountRow:
    """One line of the count form: a place on the books (``fixed``) or a free line."""

    index: int
    sku: str = ""
    location: str = ""  # the location's id
    location_path: str = ""
    lot: str = ""
    book: Decimal | None = None
    counted: str = ""
    fixed: bool = False
    errors: dict[str, object] = field(default_factory=dict)

    def counted_errors(self) -> list[object]:
        """The errors shown under the counted quantity (a listed place shows every error of
        its line there: its SKU, location and lot cannot be changed)."""
        keys = ("sku", "location", "lot", "counted") if self.fixed else ("counted",)
        return [self.errors[k] for k in keys if k in self.errors]

    def first_error(self) -> str | None:
        """The id of the input to focus for this line's first error."""
        if self.fixed:
            return f"count-{self.index}-counted" if self.errors else None
        for k in ("sku", "location", "lot", "counted"):
            if k in self.errors:
                return f"count-{self.index}-{k}"
        return None


def _stock_locations(db: Session, wh: Warehouse) -> list[Location]:
    return [loc for loc in service.location_tree(db, wh) if loc.kind == "stock"]


def _book_rows(db: Session, wh: Warehouse, under: Location | None) -> tuple[list[CountRow], bool]:
    """The warehouse's stock on the books (SKU, location, lot), one row each."""
    stmt = (
        select(Sku.code, Location.id, Location.path, Lot.code, Quant.quantity)
        .select_from(Quant)
        .join(Sku, Sku.id == Quant.sku_id)
        .join(Location, Location.id == Quant.location_id)
        .outerjoin(Lot, Lot.id == Quant.lot_id)
        .where(Quant.warehouse_id == wh.id, Quant.quantity > 0)
        .order_by(Location.path, Sku.code, Lot.code)
        .limit(COUNT_FORM_ROWS + 1)
    )
    if under is not None:
        stmt = stmt.where(
            or_(
                Location.id == under.id, Location.path.startswith(under.path + "/", autoescape=True)
            )
        )
    found = db.execute(stmt).all()
    rows = [
        CountRow(
            index=i,
            sku=code,
            location=str(loc_id),
            location_path=path,
            lot=lot or "",
            book=qty(on_hand),
            fixed=True,
        )
        for i, (code, loc_id, path, lot, on_hand) in enumerate(found[:COUNT_FORM_ROWS])
    ]
    return rows, len(found) > COUNT_FORM_ROWS


def _count_ctx(
    db: Session,
    principal: Principal,
    wh: Warehouse | None,
    *,
    under: Location | None = None,
    rows: list[CountRow] | None = None,
    extra: int = 5,
    reference: str = "",
    errors: dict[str, object] | None = None,
) -> dict[str, Any]:
    warehouses = db.execute(
        select(Warehouse.id, Warehouse.code, Warehouse.name)
        .where(Warehouse.active.is_(True))
        .order_by(Warehouse.code)
    ).all()
    ctx: dict[str, Any] = {
        "warehouses": [(str(i), f"{c} · {n}") for i, c, n in warehouses],
        "warehouse": wh,
        "under": under,
        "rows": [],
        "truncated": False,
        "locations": [],
        "sku_codes": [],
        "reference": reference,
        "errors": errors or {},
        "extra": extra,
        "qty": qty,
    }
    if wh is None:
        return ctx
    stock_locations = _stock_locations(db, wh)
    if rows is None:
        rows, truncated = _book_rows(db, wh, under)
        default_loc = next(
            (str(loc.id) for loc in stock_locations if loc.path == f"{wh.code}/STOCK"), ""
        )
        for _ in range(extra):
            rows.append(CountRow(index=len(rows), location=default_loc))
        ctx["truncated"] = truncated
    ctx["rows"] = rows
    ctx["locations"] = [(str(loc.id), loc.path) for loc in stock_locations]
    ctx["all_locations"] = [(str(loc.id), loc.path) for loc in service.location_tree(db, wh)]
    ctx["sku_codes"] = list(
        db.scalars(select(Sku.code).where(Sku.active.is_(True)).order_by(Sku.code).limit(1000))
    )
    ctx["first_error"] = next((e for r in rows if (e := r.first_error())), None)
    return ctx


def _int(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() and len(raw) < 19 else None


@router.get("/count")
def count_page(
    request: Request,
    db: DbSession,
    principal: Counter,
    warehouse: str = "",
    location: str = "",
    extra: str = "",
) -> Response:
    wh_id = _int(warehouse)
    wh = db.get(Warehouse, wh_id) if wh_id else None
    under: Location | None = None
    loc_id = _int(location)
    if wh is not None and loc_id:
        found = db.get(Location, loc_id)
        under = found if found is not None and found.warehouse_id == wh.id else None
    n_extra = min(max(_int(extra) or 5, 1), 50)
    ctx = _count_ctx(db, principal, wh, under=under, extra=n_extra)
    return render(request, "inventory/count.html", ctx, block="count_area")


def _parse_count(
    db: Session, wh: Warehouse, form: Any
) -> tuple[list[CountRow], list[tuple[CountRow, CountLine]]]:
    """The rows of a submitted count form, each checked, and the lines to count."""
    n = min(_int(str(form.get("rows") or "")) or 0, MAX_COUNT_ROWS)
    rows: list[CountRow] = []
    for i in range(n):

        def val(name: str, i: int = i) -> str:
            return str(form.get(f"{name}-{i}") or "").strip()[:200]

        rows.append(
            CountRow(
                index=i,
                sku=val("sku"),
                location=val("location"),
                location_path=val("path"),
                lot=val("lot"),
                book=_decimal(val("book")),
                counted=val("counted"),
                fixed=val("fixed") == "1",
            )
        )
    locations = {str(loc.id): loc for loc in _stock_locations(db, wh)}
    codes = {r.sku for r in rows if r.sku and r.counted}
    skus = {s.code: s for s in db.scalars(select(Sku).where(Sku.code.in_(codes)))} if codes else {}
    lines: list[tuple[CountRow, CountLine]] = []
    seen: set[tuple[str, str, str]] = set()
    for r in rows:
        if not r.counted:
            if r.sku and not r.fixed:
                r.errors["counted"] = N_("enter the quantity counted")
            continue
        counted = _decimal(r.counted)
        if counted is None:
            r.errors["counted"] = N_("enter a number, e.g. 12 or 1.5")
        elif counted < 0:
            r.errors["counted"] = N_("a counted quantity cannot be negative")
        if not r.sku:
            r.errors["sku"] = N_("enter a SKU code")
        sku = skus.get(r.sku)
        if r.sku and sku is None:
            r.errors["sku"] = N_("unknown SKU %(code)s", code=r.sku)
        loc = locations.get(r.location)
        if loc is None:
            r.errors["location"] = N_("choose a location of this warehouse that holds stock")
        if sku is not None:
            if sku.tracking != "none" and not r.lot:
                r.errors["lot"] = (
                    N_("enter the serial number counted")
                    if sku.tracking == "serial"
                    else N_("enter the lot counted")
                )
            elif sku.tracking == "none" and r.lot:
                r.errors["lot"] = N_("%(code)s is not tracked by lot", code=sku.code)
            if counted is not None and counted >= 0:
                places = max(0, -int(counted.normalize().as_tuple().exponent))
                if places > sku.decimals:
                    r.errors["counted"] = (
                        N_("%(code)s is counted in whole units", code=sku.code)
                        if sku.decimals == 0
                        else N_(
                            "%(code)s is counted with at most %(n)s decimal places",
                            code=sku.code,
                            n=sku.decimals,
                        )
                    )
                elif sku.tracking == "serial" and counted > 1:
                    r.errors["counted"] = N_("a serial number is counted 0 or 1")
        if not r.errors and (r.sku, r.location, r.lot) in seen:
            r.errors["counted"] = N_("this place is counted on another line already")
        seen.add((r.sku, r.location, r.lot))
        if not r.errors and sku is not None and loc is not None and counted is not None:
            lines.append(
                (r, CountLine(sku=sku.code, counted=counted, location=loc.id, lot=r.lot or None))
            )
    return rows, lines


def _decimal(raw: str) -> Decimal | None:
    if not raw or len(raw) > 30:
        return None
    try:
        d = Decimal(raw)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


_LINE_RE = re.compile(r"^count line (\d+): (.*)$", re.S)


@router.post("/count")
async def count_submit(
    request: Request, db: DbSession, hooks: Hooks, principal: Counter
) -> Response:
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    return await run_in_threadpool(_count_submit, request, db, hooks, principal, form)


def _count_submit(
    request: Request, db: Session, hooks: Any, principal: Principal, form: Any
) -> Response:
    wh_id = _int(str(form.get("warehouse") or ""))
    wh = db.get(Warehouse, wh_id) if wh_id else None
    if wh is None:
        raise _not_found()
    reference = str(form.get("reference") or "").strip()
    rows, lines = _parse_count(db, wh, form)
    errors: dict[str, object] = {}
    if len(reference) > 200:
        errors["reference"] = N_("at most %(n)s characters", n=200)
    bad = any(r.errors for r in rows)
    if not bad and not lines:
        errors[""] = N_("enter at least one counted quantity")
    status = 422
    if not bad and not errors:
        count_id = f"CNT-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        try:
            result = service.count(
                db,
                wh,
                [line for _, line in lines],
                reference=reference,
                source=(COUNT_SOURCE, count_id),
                hooks=hooks,
            )
            db.commit()
        except InventoryError as exc:
            db.rollback()
            status = 409 if isinstance(exc, InventoryConflict) else 422
            text = str(_message(exc))
            m = _LINE_RE.match(text)
            if m and 0 < int(m.group(1)) <= len(lines):
                lines[int(m.group(1)) - 1][0].errors["counted"] = m.group(2)
            else:
                errors[""] = _message(exc)
        else:
            changed = [c for c in result.lines if c.move_id is not None]
            if not changed:
                return redirect(
                    request,
                    f"/inventory/count?warehouse={wh.id}",
                    N_("Every counted quantity matched the books; nothing was booked."),
                )
            return redirect(
                request,
                f"/inventory/counts/{count_id}",
                N_(
                    "Count booked: %(lines)s lines counted, %(changed)s differences.",
                    lines=len(result.lines),
                    changed=len(changed),
                ),
            )
    wh = db.get(Warehouse, wh.id)
    assert wh is not None
    ctx = _count_ctx(db, principal, wh, rows=rows, reference=reference, errors=errors)
    return render(request, "inventory/count.html", ctx, block="count_form", status_code=status)


@router.get("/counts/{count_id}")
def count_result(count_id: str, request: Request, db: DbSession, principal: Reader) -> Response:
    if not COUNT_ID_RE.match(count_id):
        raise _not_found()
    rows = _move_rows(
        db,
        Move.source_type == COUNT_SOURCE,
        Move.source_id == count_id,
        limit=MAX_COUNT_ROWS,
    )
    if not rows:
        raise _not_found()
    tenant = db.get(Tenant, principal.tenant_id)
    lines = []
    gains = losses = gain_value = loss_value = Decimal(0)
    warehouse_id: int | None = None
    for r in rows:
        m: Move = r.Move
        gain = r.from_usage == "adjustment"
        value = m.value or Decimal(0)
        if gain:
            gains += m.quantity
            gain_value += value
            warehouse_id = warehouse_id or r.to_warehouse_id
        else:
            losses += m.quantity
            loss_value += value
            warehouse_id = warehouse_id or r.from_warehouse_id
        lines.append({"row": r, "move": m, "gain": gain})
    wh = db.get(Warehouse, warehouse_id) if warehouse_id else None
    return render(
        request,
        "inventory/count_result.html",
        {
            "count_id": count_id,
            "lines": lines,
            "warehouse": wh,
            "done_at": rows[0].Move.done_at,
            "reference": rows[0].Move.reference,
            "gains": gains,
            "losses": losses,
            "gain_value": gain_value,
            "loss_value": loss_value,
            "currency": tenant.currency if tenant else "",
            "qty": qty,
            "money": money,
            "can_count": principal.can(COUNT),
        },
    )
