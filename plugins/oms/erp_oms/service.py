"""The order pipeline: ingest → review → route (split, merge) → reserve → ship → write back.

Every function works in the caller's session, bound to one tenant, and never commits; each
step is idempotent and leaves the order in a state the next step (or a person) picks up, so a
crash between steps loses nothing and a retried step does nothing twice. Stock goes through the
kernel inventory (reservations that never oversell), money through the kernel ledger
(idempotent entries), platforms through the connectors.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Table,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.orm.util import identity_key

from erp_core.channels.types import LineRefundStatus, OrderStatus, Refund, RefundStatus
from erp_core.channels.types import Order as ChannelOrder
from erp_core.db.base import beside_key, utcnow
from erp_core.db.bulk import FEW_ROWS, RowInsert, RowStatement
from erp_core.db.cache import cached, kept_copy, kept_row
from erp_core.db.direct import Direct, flushed_connection, loaded, loaded_columns, written
from erp_core.db.session import TenantValue, session_tenant
from erp_core.db.types import Quantity
from erp_core.i18n import N_, Message
from erp_core.inventory import service as inv
from erp_core.inventory.errors import ShortageError
from erp_core.inventory.models import Quant, Sku, Warehouse
from erp_core.ledger.types import EntryDraft, PostingDraft
from erp_oms import review as rv
from erp_oms import routing as rt
from erp_oms.models import (
    OPEN_STATES,
    Blacklist,
    CourierRate,
    Event,
    Order,
    OrderLine,
    Parcel,
    ParcelLine,
    ReviewRule,
    Setting,
    SkuMap,
    SkuProfile,
    WarehouseRoute,
)

log = logging.getLogger(__name__)

ZERO = Decimal(0)
CENT = Decimal("0.01")
#: Orders the pipeline takes from "new": paid at the platform (or manual).
PROCESSABLE = frozenset({OrderStatus.PAID.value, ""})
#: Platform states that close an order that has not shipped.
CLOSING = frozenset({OrderStatus.CLOSED.value, OrderStatus.CANCELLED.value})
#: Refund states that stop an unshipped order, and those that end the stop.
REFUND_OPEN = frozenset(
    {RefundStatus.REQUESTED, RefundStatus.WAITING_RETURN, RefundStatus.RETURNED}
)
REFUND_OVER = frozenset({RefundStatus.REFUSED, RefundStatus.CLOSED})
#: Write-back retry delays (seconds) by attempt; the last one repeats.
WRITEBACK_DELAYS = (30, 120, 600, 1800, 3600)


class OmsError(ValueError):
    """A request the OMS refuses (wrong state, unknown order ...); the message says why."""


# --- helpers -------------------------------------------------------------------------------------


class ParcelLike(Protocol):
    """What shipping and the write-back read of a parcel: a :class:`Parcel`, or its row from
    :func:`parcel_rows` or :func:`due_writeback_rows`."""

    @property
    def id(self) -> int: ...
    @property
    def order_id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def courier_code(self) -> str: ...
    @property
    def tracking_no(self) -> str: ...
    @property
    def writeback_attempts(self) -> int: ...


def _tid(session: Session) -> int:
    tid = session_tenant(session)
    if tid is None:
        raise OmsError("no tenant bound to the session")
    return tid


def event(
    session: Session,
    order: Order,
    kind: str,
    message: str = "",
    *,
    actor: str = "",
    **data: Any,
) -> None:
    """A step on the order's timeline. A ``Message`` (``N_(...)``) is kept translatable too
    (``data["_msg"]``), so that the page shows it in the reader's language."""
    _event_of(session, order.id, kind, message, actor=actor, **data)


def _event_of(
    session: Session,
    order_id: int,
    kind: str,
    message: str = "",
    *,
    actor: str = "",
    **data: Any,
) -> None:
    """:func:`event` of an order known by its id."""
    row = _event_row(_tid(session), order_id, kind, message, utcnow(), data, actor)
    gathered = session.info.get(_GATHERED_EVENTS)
    if gathered is not None:
        gathered.append(row)
    else:
        session.add(Event(**row))


def _event_row(
    tid: int,
    order_id: int,
    kind: str,
    message: str | Message,
    at: datetime,
    data: dict[str, Any],
    actor: str = "",
) -> dict[str, Any]:
    """:func:`event`'s row."""
    stored = dump_message(message)
    return {
        "tenant_id": tid,
        "order_id": order_id,
        "kind": kind,
        "message": str(message)[:2000],
        "data": {**data, "_msg": stored} if stored is not None else data,
        "actor": actor,
        "at": at,
    }


#: ``Session.info`` key: the timeline steps gathered by :func:`_events_together`
_GATHERED_EVENTS = "oms_gathered_events"


@contextmanager
def _events_together(session: Session) -> Iterator[None]:
    """The timeline steps added meanwhile are written with one INSERT when the block ends
    (none if it raises), not as ORM objects: for bulk work that does not read the timeline it
    writes. Nested blocks leave the writing to the outermost."""
    if session.info.get(_GATHERED_EVENTS) is not None:
        yield
        return
    gathered: list[dict[str, Any]] = []
    session.info[_GATHERED_EVENTS] = gathered
    try:
        yield
    finally:
        del session.info[_GATHERED_EVENTS]
    if gathered:
        if session.new:  # (an order made in this transaction, say, goes in first)
            session.flush()
        _INSERT_EVENTS(session.connection(), gathered)


def dump_message(message: object) -> dict[str, Any] | None:
    """A ``Message`` as JSON (msgid and parameters, nested messages too); None for plain
    text."""
    if not isinstance(message, Message):
        return None
    params: dict[str, Any] = {}
    for key, value in message.params.items():
        nested = dump_message(value)
        if nested is not None:
            params[key] = nested
        elif value is None or isinstance(value, (str, int, float, bool)):
            params[key] = value
        else:
            params[key] = str(value)
    return {"id": message.msgid, "params": params}


def load_message(stored: Any, fallback: str) -> str:
    """The message :func:`dump_message` kept (to be translated with ``|t``), or ``fallback``
    when there is none or it no longer fits its parameters."""
    msgid = stored.get("id") if isinstance(stored, dict) else None
    if not isinstance(msgid, str):
        return fallback
    raw = stored.get("params")
    params = {
        k: load_message(v, "") if isinstance(v, dict) else v
        for k, v in (raw.items() if isinstance(raw, dict) else ())
    }
    try:
        return Message(msgid, **params)
    except (KeyError, TypeError, ValueError):
        return fallback


def settings_of(session: Session) -> Setting:
    """The tenant's settings row (created with the defaults if missing), to read or change."""
    row = session.scalar(select(Setting))
    if row is None:
        row = Setting()
        session.add(row)
        session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Config:
    """The settings as the pipeline reads them, kept across transactions (they change when
    the merchant edits them: ``erp_core.db.cache``)."""

    auto_process: bool
    routing_strategy: str
    allow_split: bool
    merge_orders: bool
    auto_ship: bool
    default_weight_kg: Decimal


def config_of(session: Session) -> Config:
    def load() -> Config:
        row = settings_of(session)
        return Config(
            auto_process=row.auto_process,
            routing_strategy=row.routing_strategy,
            allow_split=row.allow_split,
            merge_orders=row.merge_orders,
            auto_ship=row.auto_ship,
            default_weight_kg=row.default_weight_kg,
        )

    return cached(session, "oms.settings", load)


def hooks_of(session: Session, hooks: Any = None) -> Any:
    """The tenant's hooks (inventory and ledger calls must get them: the cost of goods sold
    is posted and the stock push triggered through them)."""
    if hooks is not None:
        return hooks
    from erp_core.tenancy.service import tenant_hooks

    return tenant_hooks(session)


def buyer_key(buyer_id: str, buyer_nick: str) -> str:
    return (buyer_id or buyer_nick).strip().casefold()[:160]


def _money(value: Decimal) -> Decimal:
    return Decimal(value).quantize(CENT)


# --- ingest --------------------------------------------------------------------------------------


def _sku_ids(session: Session, account_id: int | None, codes: Iterable[str]) -> dict[str, int]:
    """Merchant SKU code -> kernel SKU id: the shop's mapping, the tenant's, then the code."""
    codes = {c for c in codes if c}
    if not codes:
        return {}
    # (shop, code) -> SKU id, or None for "not mapped"; filled as codes are asked for
    known: dict[tuple[int | None, str], int | None] = cached(session, "oms.sku_ids", dict)
    missing = {c for c in codes if (account_id, c) not in known}
    if missing:
        found: dict[str, int] = {}
        maps = session.execute(
            select(SkuMap.merchant_sku, SkuMap.sku_id, SkuMap.channel_account_id).where(
                SkuMap.merchant_sku.in_(missing)
            )
        ).all()
        for code, sku_id, acc in sorted(maps, key=lambda r: r[2] is None):  # shop's first
            if acc in (None, account_id):
                found.setdefault(code, sku_id)
        rest = missing - set(found)
        if rest:
            for code, sku_id in session.execute(
                select(Sku.code, Sku.id).where(Sku.code.in_(rest), Sku.active.is_(True))
            ):
                found[code] = sku_id
        for code in missing:
            known[(account_id, code)] = found.get(code)
    out = {c: known[(account_id, c)] for c in codes}
    return {c: i for c, i in out.items() if i is not None}


def _address_key(o: Order) -> str:
    return rt.address_key(
        o.province, o.city, o.district, o.address, o.receiver_name, o.receiver_phone
    )[:400]


def ingest(session: Session, account_id: int | None, connector: str, order: ChannelOrder) -> Order:
    """Store a platform order, or bring the stored one up to date (never a second record)."""
    row = session.scalar(
        select(Order).where(
            Order.channel_account_id == account_id, Order.platform_order_id == order.order_id
        )
    )
    if row is None:
        return _create(session, account_id, connector, order)
    if row.platform_modified_at is not None and order.modified_at < _aware(
        row.platform_modified_at
    ):
        return row  # an older version: the stored one is newer
    _update(session, row, order)
    return row


def _aware(when: datetime) -> datetime:
    from datetime import UTC

    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _platform_values(order: ChannelOrder) -> dict[str, Any]:
    """What the platform says of an order, as the order's column values (the receiver apart:
    see :func:`_receiver_values`)."""
    return {
        "platform_status": order.status.value,
        "raw_status": order.raw_status[:64],
        "platform_modified_at": order.modified_at,
        "buyer_id": order.buyer_id[:128],
        "buyer_nick": order.buyer_nick[:128],
        "buyer_key": buyer_key(order.buyer_id, order.buyer_nick),
        "buyer_note": order.buyer_note,
        "seller_memo": order.seller_memo,
        "currency": order.currency,
        "shipping_fee": order.shipping_fee,
        "platform_discount": order.platform_discount,
        "merchant_discount": order.merchant_discount,
        "total_paid": order.total_paid,
        "goods_total": sum((ln.unit_price * ln.quantity for ln in order.lines), ZERO),
        "ordered_at": order.created_at,
        "paid_at": order.paid_at,
    }


def _receiver_values(order: ChannelOrder) -> dict[str, str]:
    rcv = order.receiver
    if rcv is None:
        return {}
    return {
        "receiver_name": rcv.name[:128],
        "receiver_phone": rcv.phone[:64],
        "province": rcv.province[:64],
        "city": rcv.city[:64],
        "district": rcv.district[:64],
        "address": rcv.detail[:400],
        "postcode": rcv.postcode[:16],
    }


def _fill(row: Order, order: ChannelOrder) -> None:
    """A stored order brought up to date with the platform's version (the receiver only while
    the order has not shipped)."""
    values = _platform_values(order)
    if row.status in OPEN_STATES:
        values.update(_receiver_values(order))
    for key, value in values.items():
        setattr(row, key, value)
    row.address_key = _address_key(row)
    row.updated_at = utcnow()


def _create(session: Session, account_id: int | None, connector: str, order: ChannelOrder) -> Order:
    (new_id,) = _insert_orders(session, account_id, connector, [order])
    row = session.get(Order, new_id)
    assert row is not None
    return row


def ingest_many(
    session: Session, account_id: int | None, connector: str, orders: Sequence[ChannelOrder]
) -> list[Order]:
    """:func:`ingest` each of ``orders`` in turn (the stored rows, in the same order; a repeated
    platform order gives its one row each time). See :func:`store_orders`, which this reads
    the rows of."""
    ids = store_orders(session, account_id, connector, orders)
    rows = {o.id: o for o in session.scalars(_ORDERS, {"ids": sorted(set(ids))})}
    return [rows[i] for i in ids]


def store_orders(
    session: Session, account_id: int | None, connector: str, orders: Sequence[ChannelOrder]
) -> list[int]:
    """:func:`ingest` each of ``orders`` in turn; the stored orders' ids, in the same order (a
    repeated platform order gives its one id each time). A page of new orders takes one read,
    one SKU lookup and one INSERT per table, whatever its length, and no ORM objects are
    made for them; an order stored already is brought up to date as :func:`ingest` does."""
    if not orders:
        return []
    platform_ids = list(dict.fromkeys(o.order_id for o in orders))
    known: set[str] = set()
    conn, tid = flushed_connection(session), _tid(session)
    for n in range(0, len(platform_ids), 500):
        known.update(
            (_KNOWN_ORDERS_D if account_id is not None else _KNOWN_MANUAL_ORDERS_D).scalars(
                conn, {"account": account_id, "pids": platform_ids[n : n + 500], "tid": tid}
            )
        )
    out: list[int] = [0] * len(orders)
    fresh: list[int] = []
    later: list[int] = []  # stored already, or a second version in this list: one at a time
    for i, o in enumerate(orders):
        if o.order_id in known:
            later.append(i)
        else:
            known.add(o.order_id)
            fresh.append(i)
    if fresh:
        new_ids = _insert_orders(session, account_id, connector, [orders[i] for i in fresh])
        for i, new_id in zip(fresh, new_ids, strict=True):
            out[i] = new_id
    for i in later:
        out[i] = ingest(session, account_id, connector, orders[i]).id
    return out


#: The creation of new orders, their lines and their first events, with Core statements built
#: once (the new orders' ids come back with their platform ids).
_INSERT_ORDERS = insert(cast(Table, Order.__table__)).returning(
    Order.__table__.c.platform_order_id, Order.__table__.c.id
)
#: a few orders, their ids back (erp_core.db.bulk)
_ORDER_ROWS = RowInsert(cast(Table, Order.__table__))
#: order lines and timeline steps, many at a time (erp_core.db.bulk)
_INSERT_LINES = RowInsert(cast(Table, OrderLine.__table__))
_INSERT_EVENTS = RowInsert(cast(Table, Event.__table__))
_PARCELS = cast(Table, Parcel.__table__)
_PARCEL_LINE_TABLE = cast(Table, ParcelLine.__table__)
#: new parcels and their lines, ids back in the order of the rows
_INSERT_PARCELS = insert(_PARCELS).returning(_PARCELS.c.id, sort_by_parameter_order=True)
_PARCEL_ROWS = RowInsert(_PARCELS)
_INSERT_PARCEL_LINES = insert(_PARCEL_LINE_TABLE).returning(
    _PARCEL_LINE_TABLE.c.id, sort_by_parameter_order=True
)
_PARCEL_LINE_ROWS = RowInsert(_PARCEL_LINE_TABLE)
#: the stock moves reserving parcel lines (``b_id``: the line, ``b_moves``: the move ids),
#: many lines at once (erp_core.db.bulk)
_SET_LINE_MOVES = RowStatement(
    update(_PARCEL_LINE_TABLE)
    .where(
        _PARCEL_LINE_TABLE.c.id == bindparam("b_id"),
        beside_key(_PARCEL_LINE_TABLE.c.tenant_id) == bindparam("b_tid"),
    )
    .values(move_ids=bindparam("b_moves"))
)
_ORDER_TABLE = cast(Table, Order.__table__)


def _row_update(table: Table, *columns: str) -> RowStatement:
    """``UPDATE table SET column = :b_column, ... WHERE id = :b_id`` (of the tenant ``b_tid``),
    many rows in one ``executemany``: the writes of objects the run then marks as
    :func:`~erp_core.db.direct.written` (no flush of one object, about half a millisecond)."""
    return RowStatement(
        update(table)
        .where(table.c.id == bindparam("b_id"), beside_key(table.c.tenant_id) == bindparam("b_tid"))
        .values({c: bindparam(f"b_{c}") for c in columns})
    )


_SHIP_PARCELS = _row_update(
    _PARCELS,
    "tracking_no",
    "courier_code",
    "state",
    "shipped_at",
    "writeback",
    "writeback_next_at",
)
_SHIP_ORDERS = _row_update(_ORDER_TABLE, "status", "shipped_at", "updated_at")
_RESERVE_ORDERS = _row_update(_ORDER_TABLE, "status", "updated_at")
_ROUTE_ORDERS = _row_update(_ORDER_TABLE, "status", "tags", "updated_at")
_NO_WRITEBACK = _row_update(_PARCELS, "writeback")
_WRITEBACK_FAILED = _row_update(
    _PARCELS, "writeback", "writeback_attempts", "writeback_error", "writeback_next_at"
)
_WRITEBACK_DONE = _row_update(
    _PARCELS,
    "writeback",
    "writeback_attempts",
    "writeback_error",
    "writeback_next_at",
    "written_back_at",
)


def _write_rows(
    session: Session, statement: RowStatement, changes: Sequence[tuple[Any, dict[str, Any]]]
) -> None:
    """Write each object's new ``values`` to its row with ``statement``, and set them on the
    object as its database state (a pending change of them is dropped: the row now has the
    newer value; the session's other pending changes are flushed later, as they would be)."""
    if not changes:
        return
    _write_ids(session, statement, type(changes[0][0]), [(o.id, v) for o, v in changes])
    for obj, values in changes:
        written(session, obj, values)


def _write_ids(
    session: Session,
    statement: RowStatement,
    cls: type[Any],
    changes: Sequence[tuple[int, dict[str, Any]]],
    *,
    held: bool = False,
) -> None:
    """:func:`_write_rows` by the rows' ids (``cls`` their model). With ``held``, an object
    of one of the rows that the session holds is marked written too."""
    if not changes:
        return
    tid = _tid(session)
    rows = [
        {"b_id": ident, "b_tid": tid, **{f"b_{k}": v for k, v in values.items()}}
        for ident, values in changes
    ]
    changed = statement(session.connection(), rows).rowcount
    if changed != len(rows):  # as a flush would find: a row gone, or of another tenant
        raise StaleDataError(f"{cls.__name__}: {len(rows)} row(s) to update, {changed} found")
    if held:
        idmap = session.identity_map
        for ident, values in changes:
            obj = idmap.get(identity_key(cls, ident))
            if obj is not None:
                written(session, obj, values)


#: parcels (``ids``) reserved
_PARCELS_RESERVED = Direct(
    update(_PARCELS)
    .where(
        _PARCELS.c.id.in_(bindparam("ids", expanding=True)),
        beside_key(_PARCELS.c.tenant_id) == bindparam("b_tid"),
    )
    .values(state="reserved")
)


def _insert_orders(
    session: Session, account_id: int | None, connector: str, orders: Sequence[ChannelOrder]
) -> list[int]:
    """Store platform orders none of which is stored yet (distinct platform ids): their rows,
    lines and first events, one INSERT per table. Their ids, in the same order."""
    tid = _tid(session)
    now = utcnow()
    skus = _sku_ids(session, account_id, (ln.merchant_sku for o in orders for ln in o.lines))
    source = "channel" if account_id is not None else "manual"
    rows: list[dict[str, Any]] = []
    firsts: list[list[tuple[str, str | Message, dict[str, Any]]]] = []
    blank = dict.fromkeys(
        ("receiver_name", "receiver_phone", "province", "city", "district", "address"), ""
    )
    for o in orders:
        status = "new"
        steps: list[tuple[str, str | Message, dict[str, Any]]] = [
            (
                "received",
                f"{o.raw_status} ({o.status.value})",
                {"platform_status": o.status.value},
            )
        ]
        if o.status.value in CLOSING:
            status = "cancelled"
            steps.append(("cancelled", N_("closed at the platform before it reached us"), {}))
        elif o.status in (OrderStatus.SHIPPED, OrderStatus.COMPLETED):
            status = "completed" if o.status is OrderStatus.COMPLETED else "shipped"
            steps.append(
                ("shipped", N_("shipped outside the ERP (as the platform reports it)"), {})
            )
        row = {
            "tenant_id": tid,
            "channel_account_id": account_id,
            "connector": connector,
            "platform_order_id": o.order_id,
            "source": source,
            "status": status,
            "tags": [],
            "postcode": "",
            **blank,
            **_platform_values(o),
            **_receiver_values(o),
            "created_at": now,
            "updated_at": now,
        }
        row["address_key"] = rt.address_key(
            row["province"],
            row["city"],
            row["district"],
            row["address"],
            row["receiver_name"],
            row["receiver_phone"],
        )[:400]
        rows.append(row)
        firsts.append(steps)
    if len(rows) <= FEW_ROWS:  # (the platform ids are distinct)
        new_ids = _ORDER_ROWS.ids(session.connection(), rows)
    else:
        ids: dict[str, int] = {pid: i for pid, i in session.execute(_INSERT_ORDERS, rows)}
        new_ids = [ids[o.order_id] for o in orders]
    lines = [
        {
            "tenant_id": tid,
            "order_id": new_id,
            "line_id": ln.line_id,
            "platform_sku_id": ln.platform_sku_id,
            "merchant_sku": ln.merchant_sku,
            "sku_id": skus.get(ln.merchant_sku),
            "title": ln.title[:400],
            "quantity": Decimal(ln.quantity),
            "unit_price": ln.unit_price,
            "platform_discount": ln.platform_discount,
            "merchant_discount": ln.merchant_discount,
            "paid": ln.paid,
            "refund_status": ln.refund_status.value,
        }
        for o, new_id in zip(orders, new_ids, strict=True)
        for ln in o.lines
    ]
    conn = session.connection()
    _INSERT_LINES(conn, lines)
    _INSERT_EVENTS(
        conn,
        [
            _event_row(tid, new_id, kind, message, now, data)
            for new_id, steps in zip(new_ids, firsts, strict=True)
            for kind, message, data in steps
        ],
    )
    return new_ids


def _update(session: Session, row: Order, order: ChannelOrder) -> None:
    before = row.platform_status
    address_before = row.address_key
    _fill(row, order)
    if row.status == "held" and row.hold_code == "address" and row.address_key != address_before:
        # the buyer corrected the address at the platform: review it again
        row.status, row.hold_code, row.hold_reason = "new", "", ""
        event(session, row, "address", N_("changed at the platform: reviewed again"))
    lines = {
        ln.line_id: ln
        for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == row.id))
    }
    for ln in order.lines:
        mine = lines.get(ln.line_id)
        if mine is not None:
            mine.refund_status = ln.refund_status.value
    if before != row.platform_status:
        event(
            session,
            row,
            "platform",
            f"{before or '-'} → {row.platform_status} ({order.raw_status})",
            platform_status=row.platform_status,
        )
    if row.platform_status in CLOSING and row.status in OPEN_STATES:
        cancel(session, row, "closed at the platform")
    elif row.platform_status == OrderStatus.COMPLETED.value and row.status == "shipped":
        row.status = "completed"
        event(session, row, "completed", N_("the buyer received it"))
    refunding = any(
        LineRefundStatus(ln.refund_status)
        in (LineRefundStatus.REQUESTED, LineRefundStatus.WAITING_RETURN)
        for ln in order.lines
    )
    if refunding and row.status in OPEN_STATES and row.hold_code != "refund":
        intercept(session, row, "a refund was requested on a line before shipping")


# --- refunds -------------------------------------------------------------------------------------


def on_refund(session: Session, account_id: int, refund: Refund) -> Order | None:
    """A refund from the platform: stop the order if it has not shipped, hand it to
    after-sales if it has. Returns the order (None: not in the pool)."""
    row = session.scalar(
        select(Order).where(
            Order.channel_account_id == account_id, Order.platform_order_id == refund.order_id
        )
    )
    if row is None:
        return None
    row.refund_state = refund.status.value
    if row.status in OPEN_STATES:
        if refund.status in REFUND_OPEN and row.hold_code != "refund":
            why = N_("refund %(refund)s requested before shipping", refund=refund.refund_id)
            intercept(session, row, why)
        elif refund.status is RefundStatus.REFUNDED:
            cancel(
                session,
                row,
                N_("refund %(refund)s paid before shipping", refund=refund.refund_id),
            )
        elif refund.status in REFUND_OVER and row.hold_code == "refund":
            row.status, row.hold_code, row.hold_reason = "new", "", ""
            event(session, row, "released", f"refund {refund.refund_id} {refund.status.value}")
    else:
        event(
            session,
            row,
            "refund",
            f"refund {refund.refund_id} {refund.status.value} after shipping: after-sales",
            refund_id=refund.refund_id,
        )
        caller = getattr(hooks_of(session), "oms_refund_after_shipment", None)
        if caller is not None:
            caller(session=session, tenant_id=_tid(session), order_id=row.id, refund=refund)
    return row


def _drop_parcels(session: Session, row: Order) -> None:
    """Cancel the order's unshipped parcels and give their reserved stock back."""
    parcels = list(
        session.scalars(
            select(Parcel).where(
                Parcel.order_id == row.id, Parcel.state.in_(("planned", "reserved"))
            )
        )
    )
    for p in parcels:
        moves = [
            m
            for pl in session.scalars(select(ParcelLine).where(ParcelLine.parcel_id == p.id))
            for m in pl.move_ids
        ]
        if moves:
            inv.cancel(session, moves, hooks=hooks_of(session))
        p.state = "cancelled"


def intercept(session: Session, row: Order, why: str) -> None:
    """Stop an unshipped order for a refund: release its stock, cancel its pick, hold it."""
    _drop_parcels(session, row)
    row.status, row.hold_code, row.hold_reason = "held", "refund", str(why)[:2000]
    row.hold_detail = dump_message(why)
    row.updated_at = utcnow()
    event(session, row, "intercepted", why)


def cancel(session: Session, row: Order, why: str, *, actor: str = "") -> None:
    if row.status not in OPEN_STATES:
        raise OmsError(f"order {row.id} is {row.status}; only unshipped orders can be cancelled")
    _drop_parcels(session, row)
    row.status = "cancelled"
    row.updated_at = utcnow()
    event(session, row, "cancelled", why, actor=actor)


# --- review --------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """What review and routing ask about stock, blacklists and other orders (loaded in bulk)."""

    stock: dict[tuple[int, int], Decimal] = field(default_factory=dict)  # (sku, wh) -> avail
    black: frozenset[tuple[str, str]] = frozenset()
    similar: dict[int, list[int]] = field(default_factory=dict)

    def available(self, sku_id: int) -> Decimal:
        return sum((q for (s, _), q in self.stock.items() if s == sku_id), ZERO)

    def blacklisted(self, kind: str, value: str) -> bool:
        return (kind, value) in self.black

    def similar_orders(self, order: rv.ReviewOrder) -> Sequence[int]:
        return self.similar.get(order.order_id, [])


def stock_by_warehouse(session: Session, sku_ids: Iterable[int]) -> dict[tuple[int, int], Decimal]:
    ids = sorted(set(sku_ids))
    if not ids:
        return {}
    rows = _AVAILABLE_BY_WAREHOUSE_D.rows(
        flushed_connection(session), {"ids": ids, "tid": _tid(session)}
    )
    return {(s, w): Decimal(q or 0) for s, w, q in rows if w is not None}


def _context(
    session: Session, orders: Sequence[Order], lines: Mapping[int, list[_LineRow]]
) -> _Ctx:
    ctx = _Ctx()
    ctx.stock = stock_by_warehouse(
        session, (ln.sku_id for ls in lines.values() for ln in ls if ln.sku_id is not None)
    )
    ctx.black = cached(
        session,
        "oms.blacklist",
        lambda: frozenset(
            (k, v) for k, v in session.execute(select(Blacklist.kind, Blacklist.value))
        ),
    )
    keys = {(o.channel_account_id, o.buyer_key, o.address_key) for o in orders if o.buyer_key}
    if keys:
        buyers = {k[1] for k in keys}
        others = _OPEN_ORDERS_OF_BUYERS_D.rows(
            flushed_connection(session), {"ids": sorted(buyers), "tid": _tid(session)}
        )
        by_key: dict[tuple[Any, str, str], list[int]] = defaultdict(list)
        for oid, acc, bk, ak in others:
            by_key[(acc, bk, ak)].append(oid)
        for o in orders:
            ctx.similar[o.id] = [
                x
                for x in by_key.get((o.channel_account_id, o.buyer_key, o.address_key), [])
                if x != o.id
            ]
    return ctx


def rules_of(session: Session) -> list[rv.Rule]:
    def load() -> tuple[rv.Rule, ...]:
        return tuple(
            rv.Rule(
                id=r.id,
                kind=r.kind,
                params=dict(r.params or {}),
                action=r.action,  # type: ignore[arg-type]
                reason=r.reason,
                tag=r.tag,
                active=r.active,
            )
            for r in session.scalars(
                select(ReviewRule).order_by(ReviewRule.position, ReviewRule.id)
            )
        )

    return list(cached(session, "oms.rules", load))


def extra_rule_types(hooks: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    caller = getattr(hooks, "oms_review_rule_types", None)
    if caller is None:
        return out
    for group in caller():
        for t in group or ():
            if t.kind in rv.BUILTIN_TYPES or t.kind in out:
                log.warning("review rule type %r is already defined; ignored", t.kind)
                continue
            out[t.kind] = t
    return out


def extra_strategies(hooks: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    caller = getattr(hooks, "oms_routing_strategies", None)
    if caller is None:
        return out
    for group in caller():
        for s in group or ():
            if s.name not in rt.BUILTIN_STRATEGIES:
                out.setdefault(s.name, s)
    return out


def _review_order(o: Order, lines: list[_LineRow]) -> rv.ReviewOrder:
    return rv.ReviewOrder(
        order_id=o.id,
        connector=o.connector,
        channel_account_id=o.channel_account_id,
        total_paid=o.total_paid,
        buyer_id=o.buyer_id,
        buyer_nick=o.buyer_nick,
        receiver_name=o.receiver_name,
        receiver_phone=o.receiver_phone,
        province=o.province,
        city=o.city,
        district=o.district,
        detail=o.address,
        buyer_note=o.buyer_note,
        seller_memo=o.seller_memo,
        lines=tuple(
            rv.ReviewLine(
                line_id=ln.id, sku_id=ln.sku_id, merchant_sku=ln.merchant_sku, quantity=ln.quantity
            )
            for ln in lines
        ),
        created_at=o.ordered_at,
    )


# --- the pipeline --------------------------------------------------------------------------------


@dataclass
class Result:
    """What one :func:`process` call did, by outcome."""

    reviewed: int = 0
    held: int = 0
    merged: int = 0
    routed: int = 0
    reserved: int = 0
    shipped: int = 0
    failed: list[str] = field(default_factory=list)


# Statements of the hot paths, built once (building one costs about as much as running it).
_IDS: BindParameter[Any] = bindparam("ids", expanding=True)
#: an order line as a row of ``oms_order_line``'s columns (read by name, as an OrderLine's)
_LineRow = Any
#: the lines of orders as rows of their columns (no ORM objects: the processing reads them only)
_LINES_OF_ORDERS = (
    select(*cast(Table, OrderLine.__table__).c)
    .where(OrderLine.order_id.in_(_IDS))
    .order_by(OrderLine.id)
)
_ORDERS = select(Order).where(Order.id.in_(_IDS))
#: (id, platform order id) of orders
_PLATFORM_IDS = select(Order.id, Order.platform_order_id).where(Order.id.in_(_IDS))
_KNOWN_ORDERS = select(Order.platform_order_id).where(
    Order.channel_account_id == bindparam("account"),
    Order.platform_order_id.in_(bindparam("pids", expanding=True)),
)
#: (orders of no account: ``= NULL`` would match none of them)
_KNOWN_MANUAL_ORDERS = select(Order.platform_order_id).where(
    Order.channel_account_id.is_(None),
    Order.platform_order_id.in_(bindparam("pids", expanding=True)),
)
_PLANNED_PARCELS = (
    select(Parcel).where(Parcel.order_id.in_(_IDS), Parcel.state == "planned").order_by(Parcel.id)
)
_PARCEL_LINES = select(ParcelLine).where(ParcelLine.parcel_id.in_(_IDS)).order_by(ParcelLine.id)
#: the stock moves of parcels' lines, (parcel id, move ids) by line
_PARCEL_MOVES = (
    select(ParcelLine.parcel_id, ParcelLine.move_ids)
    .where(ParcelLine.parcel_id.in_(_IDS))
    .order_by(ParcelLine.id)
)
#: orders (of ``ids``) with a parcel still to ship
_WAITING_PARCELS = select(Parcel.order_id).where(
    Parcel.order_id.in_(_IDS), Parcel.state.in_(("planned", "reserved"))
)
#: what the revenue entry needs of the lines of orders, with their SKUs' codes, by order (no
#: ORM rows: the entry reads them only)
_LINES_WITH_SKU_CODES = (
    select(
        OrderLine.order_id,
        OrderLine.title,
        OrderLine.quantity,
        OrderLine.unit_price,
        OrderLine.merchant_discount,
        Sku.code,
    )
    .outerjoin(Sku, Sku.id == OrderLine.sku_id)
    .where(OrderLine.order_id.in_(_IDS))
    .order_by(OrderLine.order_id, OrderLine.id)
)
_LINE_COUNTS = (
    select(OrderLine.order_id, func.count())
    .where(OrderLine.order_id.in_(_IDS))
    .group_by(OrderLine.order_id)
)
_LINE_SKUS = select(OrderLine.id, OrderLine.sku_id).where(OrderLine.id.in_(_IDS))
#: open orders of some buyers (``ids``: buyer keys), for the duplicate-order suspicion
_OPEN_ORDERS_OF_BUYERS = select(
    Order.id, Order.channel_account_id, Order.buyer_key, Order.address_key
).where(Order.buyer_key.in_(_IDS), Order.status.in_(sorted(OPEN_STATES)))
#: the orders merged into some orders
_MERGED_INTO = select(Order).where(Order.merged_into_id.in_(_IDS)).order_by(Order.id)
#: (parcel, order, platform line id) of what parcels carry, scoped by the parcels (see
#: _through_parcels)
_CARRIED = (
    select(ParcelLine.parcel_id, OrderLine.order_id, OrderLine.line_id)
    .select_from(Parcel)
    .join(ParcelLine, ParcelLine.parcel_id == Parcel.id)
    .join(OrderLine, OrderLine.id == ParcelLine.order_line_id)
    .where(Parcel.id.in_(_IDS), Parcel.tenant_id == bindparam("tid"))
    .execution_options(erp_all_tenants=True)
)
#: stock available per SKU and warehouse
_AVAILABLE_BY_WAREHOUSE = (
    select(
        Quant.sku_id, Quant.warehouse_id, func.sum(Quant.quantity - Quant.reserved, type_=Quantity)
    )
    .where(Quant.sku_id.in_(_IDS), Quant.warehouse_id.is_not(None))
    .group_by(Quant.sku_id, Quant.warehouse_id)
)


#: ``tid``: the tenant each Core statement below names for each of its tables, compared as the
#: session's own filter compares it (``TenantValue``: see erp_core.db.session)
_TID = TenantValue(bindparam("tid", type_=BigInteger()))


def _direct(stmt: Any, *models: Any) -> Direct:
    """``stmt`` on the driver's cursor (:class:`Direct`), with the rows of each of ``models``
    those of the tenant ``tid``: the filter the session adds to its ORM statements."""
    return Direct(stmt.where(*(m.tenant_id == _TID for m in models)))


# The statements above, for the driver's cursor: called once or more per order, SQLAlchemy's
# work per execution costs more than the database's.
_LINES_OF_ORDERS_D = _direct(_LINES_OF_ORDERS, OrderLine)
_KNOWN_ORDERS_D = _direct(_KNOWN_ORDERS, Order)
_KNOWN_MANUAL_ORDERS_D = _direct(_KNOWN_MANUAL_ORDERS, Order)
_PARCEL_MOVES_D = _direct(_PARCEL_MOVES, ParcelLine)
_WAITING_PARCELS_D = _direct(_WAITING_PARCELS, Parcel)
_LINES_WITH_SKU_CODES_D = Direct(
    select(*_LINES_WITH_SKU_CODES.selected_columns)
    .select_from(OrderLine)
    # the SKU's tenant in the join's condition, as the session puts it: the line stays
    .outerjoin(Sku, and_(Sku.id == OrderLine.sku_id, Sku.tenant_id == _TID))
    .where(OrderLine.order_id.in_(_IDS), OrderLine.tenant_id == _TID)
    .order_by(OrderLine.order_id, OrderLine.id)
)
_LINE_COUNTS_D = _direct(_LINE_COUNTS, OrderLine)
_LINE_SKUS_D = _direct(_LINE_SKUS, OrderLine)
_PLATFORM_IDS_D = _direct(_PLATFORM_IDS, Order)
_OPEN_ORDERS_OF_BUYERS_D = _direct(_OPEN_ORDERS_OF_BUYERS, Order)
#: orders as rows with every column (what shipping reads of them: no ORM load)
_ORDER_ROWS_D = _direct(select(*cast(Table, Order.__table__).c).where(Order.id.in_(_IDS)), Order)
#: the same, of the orders merged into some orders
_MERGED_ROWS_D = _direct(
    select(*cast(Table, Order.__table__).c).where(Order.merged_into_id.in_(_IDS)), Order
)
#: the parcels due for write-back at ``now``, oldest first, up to ``limit``
_DUE = (
    Parcel.writeback.in_(("pending", "failed")),
    (Parcel.writeback_next_at.is_(None)) | (Parcel.writeback_next_at <= bindparam("now")),
)
_DUE_WRITEBACKS = select(Parcel).where(*_DUE).order_by(Parcel.id).limit(bindparam("limit"))
#: the parcels (every column) of some orders in a state, by id
_PARCEL_ROWS_IN_STATE_D = _direct(
    select(*_PARCELS.c)
    .where(Parcel.order_id.in_(_IDS), Parcel.state == bindparam("state"))
    .order_by(Parcel.id),
    Parcel,
)
#: the parcels (every column) due for write-back at ``now``, oldest first, up to ``limit``;
#: all those of some orders (no order and no limit: the planner then goes through the
#: orders' index, never through every parcel in the order of their ids)
_DUE_WRITEBACK_ROWS_D = _direct(_DUE_WRITEBACKS.with_only_columns(*_PARCELS.c), Parcel)
_DUE_WRITEBACK_ROWS_OF_D = _direct(
    select(*_PARCELS.c).where(*_DUE, Parcel.order_id.in_(_IDS)), Parcel
)
_CARRIED_D = Direct(_CARRIED)  # scoped by the parcels, as the ORM statement is
#: the shops of some orders (None: a manual order's)
_ORDER_SHOPS_D = _direct(
    select(Order.id, Order.channel_account_id).where(Order.id.in_(_IDS)), Order
)
_AVAILABLE_BY_WAREHOUSE_D = _direct(_AVAILABLE_BY_WAREHOUSE, Quant)


#: orders :func:`process` takes on: ``limit`` of them, oldest first (of ``ids`` with
#: ``_TO_PROCESS_OF_D``), as rows with every column (made objects with ``loaded``: no ORM
#: query's work)
_WAITING = (Order.merged_into_id.is_(None), Order.status.in_(("new", "reviewed", "routed")))
_TO_PROCESS_ROWS = (
    select(*loaded_columns(Order)).where(*_WAITING).order_by(Order.id).limit(bindparam("limit"))
)
_TO_PROCESS_D = _direct(_TO_PROCESS_ROWS, Order)
_TO_PROCESS_OF_D = _direct(_TO_PROCESS_ROWS.where(Order.id.in_(_IDS)), Order)
#: of one order (as a push brings it): no ``IN`` list, no limit
_TO_PROCESS_ONE_D = _direct(
    select(*loaded_columns(Order)).where(*_WAITING, Order.id == bindparam("id")), Order
)


def _lines_of(session: Session, order_ids: Sequence[int]) -> dict[int, list[_LineRow]]:
    out: dict[int, list[_LineRow]] = defaultdict(list)
    if order_ids:
        rows = _LINES_OF_ORDERS_D.rows(
            flushed_connection(session), {"ids": list(order_ids), "tid": _tid(session)}
        )
        for ln in rows:
            out[ln.order_id].append(ln)
    return out


def hold(session: Session, row: Order, code: str, reason: str, *, actor: str = "") -> None:
    """Hold the order for a person, with ``reason`` (a ``Message`` stays translatable)."""
    row.status, row.hold_code, row.hold_reason = "held", code, str(reason)[:2000]
    row.hold_detail = dump_message(reason)
    row.updated_at = utcnow()
    event(session, row, "held", reason, actor=actor, code=code)


def _join(reasons: Sequence[str]) -> str:
    """Several reasons as one (translatable when they are)."""
    if len(reasons) == 1:
        return reasons[0]
    out = reasons[0]
    for r in reasons[1:]:
        out = N_("%(first)s; %(next)s", first=out, next=r)
    return out


def process(
    session: Session,
    *,
    order_ids: Sequence[int] | None = None,
    hooks: Any = None,
    limit: int = 500,
    actor: str = "system",
) -> Result:
    """Take orders as far through the pipeline as they go: new → reviewed (or held) →
    routed → reserved (→ shipped with ``auto_ship``). Orders named in ``order_ids`` are
    taken whatever their state allows; otherwise up to ``limit`` waiting orders. The orders'
    timeline steps are written together at the end."""
    with _events_together(session):
        return _process(session, order_ids, hooks, limit, actor)


def _process(
    session: Session, order_ids: Sequence[int] | None, hooks: Any, limit: int, actor: str
) -> Result:
    hooks = hooks_of(session, hooks)
    cfg = config_of(session)
    res = Result()
    # read as rows, made the session's objects (as a query would, at a fraction of its cost)
    conn, tid = flushed_connection(session), _tid(session)
    if order_ids is not None and len(order_ids) == 1:
        rows = _TO_PROCESS_ONE_D.rows(conn, {"id": order_ids[0], "tid": tid})
    elif order_ids is not None:
        rows = _TO_PROCESS_OF_D.rows(conn, {"ids": list(order_ids), "limit": limit, "tid": tid})
    else:
        rows = _TO_PROCESS_D.rows(conn, {"limit": limit, "tid": tid})
    orders: list[Order] = loaded(session, Order, rows)
    if not orders:
        return res
    lines = _lines_of(session, [o.id for o in orders])
    ctx = _context(session, orders, lines)
    rules = rules_of(session)
    types = extra_rule_types(hooks)

    for o in orders:
        if o.status != "new" or o.platform_status not in PROCESSABLE:
            continue
        out = rv.review(_review_order(o, lines[o.id]), rules, ctx, extra=types)
        if out.tags:
            o.tags = sorted(set(o.tags or []) | set(out.tags))
        if out.action == "hold":
            code = _hold_code(out, rules, lines[o.id])
            hold(session, o, code, _join(out.reasons), actor=actor)
            res.held += 1
            continue
        o.status = "reviewed"
        event(session, o, "reviewed", ", ".join(out.tags) or N_("passed"), actor=actor)
        res.reviewed += 1

    ready = [o for o in orders if o.status == "reviewed"]
    if cfg.merge_orders:
        res.merged += _merge(session, ready, lines, actor)
        ready = [o for o in ready if o.merged_into_id is None]
    plan_input = _routing_input(session, ctx, lines)
    strategies = extra_strategies(hooks)
    planned: list[tuple[dict[str, Any], tuple[tuple[int, Decimal], ...]]] = []
    for o in ready:
        if _route(session, o, lines, plan_input, cfg, strategies, actor, planned):
            res.routed += 1
    # what was planned here, handed to the reservation, which need not read it back
    known = _store_planned(session, planned)
    # the routed orders' review and routing, written with their parcels: the reservation's
    # savepoint then has nothing of theirs to flush
    routed = [o for o in ready if o.status == "routed"]
    _write_rows(
        session,
        _ROUTE_ORDERS,
        [(o, {"status": o.status, "tags": o.tags, "updated_at": o.updated_at}) for o in routed],
    )
    known.skus = {ln.id: ln.sku_id for page in lines.values() for ln in page}
    with inv.stock_change_batch(session):  # one stock report (and push mark) per run
        _reserve_and_ship(session, orders, cfg, res, hooks, actor, known)
    session.flush()
    return res


@dataclass(slots=True)
class _NewParcel:
    """A parcel planned and stored in this transaction, with no ORM object: what the
    reservation needs of it."""

    id: int
    order_id: int
    warehouse_id: int


@dataclass(slots=True)
class _NewParcelLine:
    """A line of a :class:`_NewParcel`."""

    id: int
    parcel_id: int
    order_line_id: int
    quantity: Decimal


@dataclass
class _Planned:
    """Parcels planned in this transaction (order id -> parcels, parcel id -> lines) and the
    SKUs of the order lines read (order line id -> SKU id): what :func:`reserve_orders` would
    otherwise read back."""

    parcels: dict[int, list[_NewParcel]] = field(default_factory=dict)
    lines: dict[int, list[_NewParcelLine]] = field(default_factory=dict)
    skus: dict[int, int | None] = field(default_factory=dict)


def _store_planned(
    session: Session, planned: Sequence[tuple[dict[str, Any], tuple[tuple[int, Decimal], ...]]]
) -> _Planned:
    """Insert the parcels :func:`_route` planned (their rows, each with its lines as (order
    line id, quantity)) with one INSERT per table, no ORM objects; what was stored."""
    known = _Planned()
    if not planned:
        return known
    tid = _tid(session)
    # on the connection: rows with no ORM objects need no ORM execution (nor its autoflush)
    conn = session.connection()
    parcel_rows = [row for row, _ in planned]
    if len(parcel_rows) <= FEW_ROWS:
        parcel_ids = _PARCEL_ROWS.ids(conn, parcel_rows)
    else:
        parcel_ids = list(conn.execute(_INSERT_PARCELS, parcel_rows).scalars())
    line_rows: list[dict[str, Any]] = []
    for pid, (row, parcel_lines) in zip(parcel_ids, planned, strict=True):
        known.parcels.setdefault(row["order_id"], []).append(
            _NewParcel(pid, row["order_id"], row["warehouse_id"])
        )
        line_rows.extend(
            {
                "tenant_id": tid,
                "parcel_id": pid,
                "order_line_id": line_id,
                "quantity": qty,
                "move_ids": [],
            }
            for line_id, qty in parcel_lines
        )
    if len(line_rows) <= FEW_ROWS:
        line_ids = _PARCEL_LINE_ROWS.ids(conn, line_rows)
    else:
        line_ids = list(conn.execute(_INSERT_PARCEL_LINES, line_rows).scalars())
    for lid, r in zip(line_ids, line_rows, strict=True):
        known.lines.setdefault(r["parcel_id"], []).append(
            _NewParcelLine(lid, r["parcel_id"], r["order_line_id"], r["quantity"])
        )
    return known


def _reserve_and_ship(
    session: Session,
    orders: list[Order],
    cfg: Config,
    res: Result,
    hooks: Any,
    actor: str,
    known: _Planned,
) -> None:
    routed = [o for o in orders if o.status == "routed"]
    short = _reserve_orders(session, routed, hooks, known)
    for o in routed:
        exc = short.get(o.id)
        if exc is None:
            res.reserved += 1
            continue
        _drop_parcels(session, o)
        why = N_("stock ran short while reserving: %(shortage)s", shortage=exc)
        hold(session, o, "stock", why, actor=actor)
        res.held += 1
    if cfg.auto_ship:
        for o in [o for o in orders if o.status == "reserved"]:
            parcels = list(
                session.scalars(
                    select(Parcel).where(Parcel.order_id == o.id, Parcel.state == "reserved")
                )
            )
            if any(not p.courier_code for p in parcels):
                event(session, o, "waiting", N_("no courier rate matched: ship it by hand"))
                continue
            for p in parcels:
                ship(session, p, tracking_no=_auto_tracking(p), hooks=hooks, actor=actor)
            res.shipped += 1


def _parcel_sku_ids(session: Session, *where: Any) -> list[int]:
    """The SKUs of the lines of the parcels ``where`` selects (merged orders' lines too)."""
    rows = session.scalars(
        _through_parcels(
            session,
            select(OrderLine.sku_id)
            .select_from(Parcel)
            .join(ParcelLine, ParcelLine.parcel_id == Parcel.id)
            .join(OrderLine, OrderLine.id == ParcelLine.order_line_id)
            .where(*where, OrderLine.sku_id.is_not(None))
            .distinct(),
        )
    )
    return [i for i in rows if i is not None]


def _through_parcels(session: Session, stmt: Any) -> Any:
    """``stmt``, a join from parcels to their lines and order lines, scoped to the tenant by the
    parcels alone: a parcel's lines and their order lines are the parcel's tenant's (written so
    by this module; on PostgreSQL row-level security holds for every table all the same).

    With the tenant's condition on every table, PostgreSQL, whose statistics lag behind a
    tenant that grows fast (a new shop's first backfill), took each table's condition as the
    cheapest way in and joined the three scans of the tenant's rows in nested loops: a page's
    lookup cost 1.8 s at 1,000 orders and grew with the square of the tenant's parcels. Scoped
    by the parcels, the planner goes from the parcels through the lines' indexes."""
    return stmt.where(Parcel.tenant_id == _tid(session)).execution_options(erp_all_tenants=True)


#: The exception queue's groups, by the kind of the rule that held an order.
HOLD_CODES = {"address_invalid": "address", "stock_short": "stock"}


def _hold_code(out: rv.Outcome, rules: Sequence[rv.Rule], lines: Sequence[_LineRow]) -> str:
    if any(ln.sku_id is None for ln in lines):
        return "sku_unmapped"
    kinds = {r.id: r.kind for r in rules}
    for rule_id in out.matched:
        code = HOLD_CODES.get(kinds.get(rule_id, ""))
        if code:
            return code
    return "review"


def _auto_tracking(p: Parcel) -> str:
    return f"{(p.courier_code or 'EXP')[:4]}{p.id:010d}"


def _merge(
    session: Session, ready: list[Order], lines: dict[int, list[_LineRow]], actor: str
) -> int:
    """Merge reviewed orders of the same shop, buyer and address into the oldest one: they
    then ship together, in that order's parcels."""
    if len(ready) < 2:
        return 0
    cands = [
        rt.MergeCandidate(
            order_id=o.id,
            channel_account_id=o.channel_account_id,
            buyer_key=o.buyer_key,
            address_key=o.address_key,
            status=o.status,
            created_at=o.ordered_at,
        )
        for o in ready
        if o.buyer_key and o.address_key
    ]
    by_id = {o.id: o for o in ready}
    merged = 0
    for group in rt.merge_groups(cands, mergeable_statuses=frozenset({"reviewed"})):
        head = by_id[group[0]]
        for oid in group[1:]:
            other = by_id[oid]
            other.merged_into_id = head.id
            event(
                session,
                other,
                "merged",
                N_("merged into order %(order)s", order=head.id),
                actor=actor,
                into=head.id,
            )
            event(
                session,
                head,
                "merged",
                N_("order %(order)s merged into this one", order=other.id),
                actor=actor,
                merged=other.id,
            )
            lines[head.id] = lines[head.id] + lines[oid]
            merged += 1
    return merged


@dataclass
class _RoutingInput:
    warehouses: tuple[tuple[_RouteView | None, _WarehouseView], ...]
    rates: Sequence[rt.CourierRate]
    weights: dict[int, Decimal]
    default_weight: Decimal
    #: available stock by (SKU, warehouse), less what the page's orders routed so far take
    stock: dict[tuple[int, int], Decimal]


@dataclass(frozen=True, slots=True)
class _RouteView:
    priority: int
    regions: tuple[str, ...]
    active: bool


@dataclass(frozen=True, slots=True)
class _WarehouseView:
    id: int
    code: str


def _routing_tables(
    session: Session,
) -> tuple[tuple[tuple[_RouteView | None, _WarehouseView], ...], tuple[rt.CourierRate, ...]]:
    """The active warehouses with their routes, and the courier rates (kept across
    transactions)."""
    routes = {
        r.warehouse_id: _RouteView(r.priority, tuple(r.regions or ()), r.active)
        for r in session.scalars(select(WarehouseRoute))
    }
    whs = tuple(
        (routes.get(w.id), _WarehouseView(w.id, w.code))
        for w in session.scalars(select(Warehouse).where(Warehouse.active.is_(True)))
    )
    rates = tuple(
        rt.CourierRate(
            warehouse_id=r.warehouse_id,
            courier_code=r.courier_code,
            region=r.region,
            first_kg=r.first_kg,
            first_cost=r.first_cost,
            extra_cost_per_kg=r.extra_cost_per_kg,
            priority=r.priority,
        )
        for r in session.scalars(select(CourierRate))
    )
    return whs, rates


def _weights(session: Session, sku_ids: set[int]) -> dict[int, Decimal]:
    """The SKUs' weights where their profiles give one."""
    known: dict[int, Decimal | None] = cached(session, "oms.weights", dict)
    missing = {s for s in sku_ids if s not in known}
    if missing:
        found = dict(
            session.execute(
                select(SkuProfile.sku_id, SkuProfile.weight_kg).where(
                    SkuProfile.sku_id.in_(missing)
                )
            ).all()
        )
        for s in missing:
            known[s] = found.get(s)
    out = {s: known[s] for s in sku_ids}
    return {s: w for s, w in out.items() if w is not None}


def _routing_input(
    session: Session, ctx: _Ctx, lines: Mapping[int, list[_LineRow]]
) -> _RoutingInput:
    whs, rates = cached(session, "oms.routing", lambda: _routing_tables(session))
    sku_ids = {ln.sku_id for ls in lines.values() for ln in ls if ln.sku_id is not None}
    return _RoutingInput(
        whs,
        rates,
        _weights(session, sku_ids),
        config_of(session).default_weight_kg,
        dict(ctx.stock),
    )


def _route(
    session: Session,
    o: Order,
    lines: Mapping[int, list[_LineRow]],
    inp: _RoutingInput,
    cfg: Config,
    strategies: Mapping[str, Any],
    actor: str,
    planned: list[tuple[dict[str, Any], tuple[tuple[int, Decimal], ...]]],
) -> bool:
    """Plan the order's parcels: their rows, each with its lines, are appended to
    ``planned`` for the caller to store together."""
    mine = [
        ln
        for ln in lines[o.id]
        if ln.sku_id is not None and ln.refund_status in ("none", "closed", "refused")
    ]
    if not mine:
        hold(session, o, "review", N_("nothing left to ship"), actor=actor)
        return False
    # the page's stock, read once: an order routed before this one in the page has taken its
    # part already (so that a hot SKU's orders spread over the warehouses that have it)
    wanted = {ln.sku_id for ln in mine}
    stock = {k: q for k, q in inp.stock.items() if k[0] in wanted}
    options = [
        rt.WarehouseOption(
            warehouse_id=w.id,
            code=w.code,
            priority=route.priority if route else 100,
            regions=frozenset(route.regions if route else ()),
            available={s: q for (s, wid), q in stock.items() if wid == w.id},
            active=route.active if route else True,
        )
        for route, w in inp.warehouses
    ]
    plan = rt.route(
        [
            rt.RouteLine(
                line_id=ln.id,
                sku_id=ln.sku_id,
                quantity=ln.quantity,
                weight_kg=inp.weights.get(ln.sku_id, inp.default_weight),
            )
            for ln in mine
        ],
        o.province,
        options,
        inp.rates,
        strategy=cfg.routing_strategy,
        allow_split=cfg.allow_split,
        strategies=strategies,
    )
    if isinstance(plan, rt.NoRoute):
        hold(session, o, plan.reason_code, plan.reason, actor=actor)
        return False
    sku_of = {ln.id: ln.sku_id for ln in mine}
    for parcel in plan.parcels:
        for line_id, qty in parcel.lines:
            key = (sku_of[line_id] or 0, parcel.warehouse_id)
            inp.stock[key] = inp.stock.get(key, ZERO) - qty
    now = utcnow()
    tid = o.tenant_id
    for parcel in plan.parcels:
        row = {
            "tenant_id": tid,
            "order_id": o.id,
            "warehouse_id": parcel.warehouse_id,
            "courier_code": parcel.courier_code or "",
            "weight_kg": parcel.weight_kg,
            "shipping_cost": parcel.cost,
            "state": "planned",
            "created_at": now,
        }
        planned.append((row, tuple(parcel.lines)))
    o.status = "routed"
    o.updated_at = now
    where = ", ".join(f"#{p.warehouse_id}/{p.courier_code or '-'}" for p in plan.parcels)
    event(
        session,
        o,
        "split" if plan.split else "routed",
        N_(
            "%(n)s parcel(s): %(where)s (%(strategy)s)",
            n=len(plan.parcels),
            where=where,
            strategy=plan.strategy,
        ),
        actor=actor,
        notes=list(plan.notes),
    )
    return True


def reserve(session: Session, o: Order, *, hooks: Any = None) -> None:
    """Reserve the stock of every planned parcel of the order (all or nothing: a shortage
    raises :class:`ShortageError` and nothing is reserved)."""
    short = reserve_orders(session, [o], hooks=hooks)
    if o.id in short:
        raise short[o.id]


def reserve_orders(
    session: Session, orders: Sequence[Order], *, hooks: Any = None
) -> dict[int, ShortageError]:
    """Reserve the planned parcels of ``orders`` (a page) with one kernel call: each order all
    or nothing, in the given order (the first come are served first). Returns the orders that
    were short (order id -> the shortage); those keep their planned parcels, nothing reserved."""
    return _reserve_orders(session, orders, hooks, _Planned())


def _reserve_orders(
    session: Session, orders: Sequence[Order], hooks: Any, known: _Planned
) -> dict[int, ShortageError]:
    """:func:`reserve_orders`; the parcels of the orders in ``known`` (planned in this
    transaction: all the planned parcels these orders have) are not read back."""
    if not orders:
        return {}
    of_order: dict[int, list[Parcel | _NewParcel]] = defaultdict(list)
    by_parcel: dict[int, list[ParcelLine | _NewParcelLine]] = defaultdict(list)
    p: Parcel | _NewParcel
    pl: ParcelLine | _NewParcelLine
    for o in orders:
        for p in known.parcels.get(o.id, ()):
            of_order[o.id].append(p)
            by_parcel[p.id].extend(known.lines[p.id])
    rest = [o.id for o in orders if o.id not in known.parcels]
    if rest:
        parcels = list(session.scalars(_PLANNED_PARCELS, {"ids": rest}))
        for pl in session.scalars(_PARCEL_LINES, {"ids": [p.id for p in parcels]}):
            by_parcel[pl.parcel_id].append(pl)
        for p in parcels:
            of_order[p.order_id].append(p)
    skus = dict(known.skus)
    unknown = [
        pl.order_line_id for pls in by_parcel.values() for pl in pls if pl.order_line_id not in skus
    ]
    if unknown:
        skus.update(
            _LINE_SKUS_D.rows(flushed_connection(session), {"ids": unknown, "tid": _tid(session)})
        )
    asks: list[ParcelLine | _NewParcelLine] = []
    requests: list[inv.ReserveRequest] = []
    for o in orders:  # in the caller's order: FIFO between orders
        for p in of_order[o.id]:
            for pl in by_parcel[p.id]:
                sku_id = skus.get(pl.order_line_id)
                assert sku_id is not None, f"parcel line {pl.id} has no SKU"
                asks.append(pl)
                requests.append(
                    inv.ReserveRequest(
                        sku_id,
                        pl.quantity,
                        p.warehouse_id,
                        group=o.id,
                        source=("oms_order", str(o.id)),
                        idempotency_key=f"oms:parcel-line:{pl.id}",
                        reference=o.platform_order_id,
                    )
                )
    got = inv.reserve_many(session, requests, hooks=hooks)
    tid = _tid(session)
    # the rows stored in this transaction are updated with Core statements, the rest as objects
    moved: list[dict[str, Any]] = []
    for pl, r in zip(asks, got.reservations, strict=True):
        if r is not None:
            move_ids = [x.move_id for x in r.lines]
            if isinstance(pl, ParcelLine):
                pl.move_ids = move_ids
            else:
                moved.append({"b_id": pl.id, "b_tid": tid, "b_moves": move_ids})
    if moved:
        _SET_LINE_MOVES(session.connection(), moved)
    now = utcnow()
    reserved: list[int] = []
    done: list[tuple[Order, dict[str, Any]]] = []
    for o in orders:
        if o.id in got.shortages:
            continue
        for p in of_order[o.id]:
            if isinstance(p, Parcel):
                p.state = "reserved"
            else:
                reserved.append(p.id)
        done.append((o, {"status": "reserved", "updated_at": now}))
        event(session, o, "reserved", N_("%(n)s parcel(s)", n=len(of_order[o.id])))
    _write_rows(session, _RESERVE_ORDERS, done)
    if reserved:
        _PARCELS_RESERVED.run(session.connection(), {"ids": reserved, "b_tid": tid})
    return dict(got.shortages)


# --- people's actions ----------------------------------------------------------------------------


def release(session: Session, orders: Sequence[Order], *, actor: str) -> list[str]:
    """Release held orders a person checked: they skip the review and go on to routing.
    Returns problems per order that could not be released (the rest are released)."""
    problems = []
    for o in orders:
        if o.status != "held":
            problems.append(f"order {o.id} is {o.status}, not held")
            continue
        unmapped = [
            ln.merchant_sku
            for ln in session.scalars(select(OrderLine).where(OrderLine.order_id == o.id))
            if ln.sku_id is None
        ]
        if unmapped:
            problems.append(f"order {o.id}: map SKU {', '.join(sorted(set(unmapped)))} first")
            continue
        o.status, o.hold_code, o.hold_reason = "reviewed", "", ""
        o.updated_at = utcnow()
        event(session, o, "released", N_("released by a person"), actor=actor)
    return problems


def map_sku(
    session: Session, merchant_sku: str, sku_id: int, *, account_id: int | None, actor: str
) -> int:
    """Map a merchant SKU code to a kernel SKU (for one shop, or every shop) and fill every
    unmapped line with that code. Returns the number of lines filled."""
    if session.get(Sku, sku_id) is None:
        raise OmsError(f"no SKU {sku_id}")
    code = merchant_sku.strip()
    if not code:
        raise OmsError("the merchant SKU code is empty")
    row = session.scalar(
        select(SkuMap).where(SkuMap.channel_account_id == account_id, SkuMap.merchant_sku == code)
    )
    if row is None:
        session.add(SkuMap(channel_account_id=account_id, merchant_sku=code, sku_id=sku_id))
    else:
        row.sku_id = sku_id
    q = (
        select(OrderLine, Order)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.merchant_sku == code, OrderLine.sku_id.is_(None))
    )
    if account_id is not None:
        q = q.where(Order.channel_account_id == account_id)
    filled = 0
    for line, order in session.execute(q):
        line.sku_id = sku_id
        filled += 1
        event(session, order, "mapped", f"{code} → SKU {sku_id}", actor=actor)
    session.flush()
    return filled


# --- shipping ------------------------------------------------------------------------------------


def ship(
    session: Session,
    parcel: Parcel,
    *,
    tracking_no: str,
    courier_code: str | None = None,
    hooks: Any = None,
    actor: str = "",
) -> None:
    """The parcel left the warehouse: its stock moves are done (the kernel posts the cost of
    goods sold), the tracking number is queued for write-back, and when the order's last
    parcel ships the order is shipped and its revenue posted. Shipping a shipped parcel again
    with the same tracking number changes nothing."""
    ship_many(session, [(parcel, tracking_no, courier_code)], hooks=hooks, actor=actor)


def _check_shipment(parcel: ParcelLike, tracking_no: str, courier_code: str | None) -> bool:
    """Whether the parcel is to ship (False: shipped already with this number); raises
    OmsError when it cannot."""
    if not tracking_no or len(tracking_no) > 64:
        raise OmsError("a tracking number of 1 to 64 characters is needed")
    if parcel.state == "shipped":
        if parcel.tracking_no == tracking_no:
            return False
        raise OmsError(f"parcel {parcel.id} already shipped with {parcel.tracking_no}")
    if parcel.state != "reserved":
        raise OmsError(f"parcel {parcel.id} is {parcel.state}; only reserved parcels ship")
    if not (courier_code or "").strip() and not parcel.courier_code:
        raise OmsError(
            f"parcel {parcel.id} has no courier (no courier rate matched): give the courier code"
        )
    return True


def _sale_dimensions(order: Any) -> dict[str, str]:
    """(``order``: an Order or its row)"""
    return {
        "channel": order.connector or "manual",
        "store": str(order.channel_account_id or ""),
        "order": order.platform_order_id,
    }


def ship_many(
    session: Session,
    shipments: Sequence[tuple[ParcelLike, str, str | None]],
    *,
    hooks: Any = None,
    actor: str = "",
) -> None:
    """Ship several parcels (Parcels or their rows from :func:`parcel_rows`, each with its
    tracking number and courier code, None for the parcel's own) as one piece of bulk work,
    as :func:`ship` would one by one: every parcel is checked first (an OmsError names the
    first that cannot ship, and nothing is shipped); then the parcels are marked shipped, the
    revenue of every order whose last parcel shipped is posted in one go, and last all their
    stock moves are completed in one kernel call (each order's cost of goods sold on its own
    dimensions) with the stock change reported once (one channel stock-push mark). Stock goes
    last so that a concurrent transaction waits for this one's locks on shared SKUs for as
    short a time as can be. An error leaves the work half done in the transaction: the caller
    rolls it back. The orders' timeline steps are written together at the end."""
    with _events_together(session):
        _ship_many(session, shipments, hooks, actor)


def _ship_many(
    session: Session,
    shipments: Sequence[tuple[ParcelLike, str, str | None]],
    hooks: Any,
    actor: str,
) -> None:
    from erp_core.ledger.service import posting_batch

    hooks = hooks_of(session, hooks)
    todo: list[tuple[ParcelLike, str, str | None]] = []
    seen: set[int] = set()
    for parcel, tracking_no, courier in shipments:
        tracking_no = tracking_no.strip()
        if parcel.id in seen:
            raise OmsError(f"parcel {parcel.id} is in the shipment twice")
        seen.add(parcel.id)
        if _check_shipment(parcel, tracking_no, courier):
            todo.append((parcel, tracking_no, courier))
    if not todo:
        return
    # the orders, read at once as rows: shipping reads a few of their columns, and writes
    # what changes by id (an object of one that the session holds is kept up to date)
    order_ids = sorted({parcel.order_id for parcel, _, _ in todo})
    args = {"ids": order_ids, "tid": _tid(session)}
    orders: dict[int, Any] = {
        o.id: o for o in _ORDER_ROWS_D.rows(flushed_connection(session), args)
    }
    now = utcnow()
    shipped_parcels: list[tuple[ParcelLike, dict[str, Any]]] = []
    for parcel, tracking_no, courier in todo:
        order = orders[parcel.order_id]
        back = order.channel_account_id is not None
        values = {
            "tracking_no": tracking_no,
            "courier_code": courier.strip()[:32] if courier else parcel.courier_code,
            "state": "shipped",
            "shipped_at": now,
            "writeback": "pending" if back else "none",
            "writeback_next_at": now if back else None,
        }
        shipped_parcels.append((parcel, values))
        event(
            session,
            order,
            "shipped",
            N_(
                "parcel %(parcel)s: %(courier)s %(tracking)s",
                parcel=parcel.id,
                courier=values["courier_code"],
                tracking=tracking_no,
            ),
            actor=actor,
            parcel=parcel.id,
        )
    # by id: the parcels may be rows (parcel_rows); a Parcel the session holds is kept up to date
    _write_ids(session, _SHIP_PARCELS, Parcel, [(p.id, v) for p, v in shipped_parcels], held=True)
    waiting = set(_WAITING_PARCELS_D.scalars(session.connection(), args))
    done = [orders[i] for i in order_ids if i not in waiting]
    # the revenue entries and the cost of goods sold (posted by the ledger's stock valuation
    # hook) go to the ledger together, revenue first
    with posting_batch(session):
        shipped = _orders_shipped(session, done, orders, now, actor) if done else []
        # The stock last: the rows of shared SKUs (quants, moving averages, push marks) stay
        # locked until the commit, so what only touches these orders' own rows comes first.
        _complete_moves(session, todo, orders, hooks)
    caller = getattr(hooks, "oms_order_shipped", None)
    if caller is not None:
        for o in shipped:
            caller(session=session, tenant_id=_tid(session), order_id=o.id)
    session.flush()


def _orders_shipped(
    session: Session,
    done: list[Any],
    orders: Mapping[int, Any],
    now: datetime,
    actor: str,
) -> list[Any]:
    """The orders (rows of ``_ORDER_ROWS_D``) whose last parcel shipped and the orders merged
    into them: marked shipped, their revenue posted; returned, as they are now."""
    args = {"ids": [o.id for o in done], "tid": _tid(session)}
    members = sorted(_MERGED_ROWS_D.rows(flushed_connection(session), args), key=lambda o: o.id)
    by_master: dict[int, list[Any]] = {}
    for member in members:
        by_master.setdefault(member.merged_into_id or 0, []).append(member)
    # each order, then the orders merged into it
    values = {"status": "shipped", "shipped_at": now, "updated_at": now}
    shipped = [x._replace(**values) for o in done for x in (o, *by_master.get(o.id, ()))]
    _write_ids(session, _SHIP_ORDERS, Order, [(o.id, values) for o in shipped], held=True)
    for o in shipped:
        if o.merged_into_id is not None and o.merged_into_id in orders:
            with_order = N_("with order %(order)s", order=o.merged_into_id)
            event(session, o, "shipped", with_order, actor=actor)
    post_revenues(session, shipped)
    return shipped


def _complete_moves(
    session: Session,
    todo: Sequence[tuple[ParcelLike, str, str | None]],
    orders: Mapping[int, Any],
    hooks: Any,
) -> None:
    """The parcels' stock moves done in one kernel call, each order's cost of goods sold on
    its own dimensions; the stock change reported once."""
    parcel_ids = [parcel.id for parcel, _, _ in todo]
    if len(todo) > 1:  # lock the parcels' SKUs' stock first, in one order
        inv.lock_stock(session, _parcel_sku_ids(session, Parcel.id.in_(parcel_ids)))
    moves: list[int] = []
    dims: dict[int, dict[str, str]] = {}
    by_parcel = {parcel.id: parcel for parcel, _, _ in todo}
    args = {"ids": parcel_ids, "tid": _tid(session)}
    for parcel_id, move_ids in _PARCEL_MOVES_D.rows(flushed_connection(session), args):
        sale = _sale_dimensions(orders[by_parcel[parcel_id].order_id])
        for m in move_ids:
            moves.append(m)
            dims[m] = sale
    if moves:
        with inv.stock_change_batch(session):
            inv.complete(session, moves, hooks=hooks, move_dimensions=dims, read_back=False)


def _local_date(session: Session, when: datetime) -> date:
    from erp_core.tenancy.models import Tenant

    tid = _tid(session)
    zones: dict[int, ZoneInfo] = session.info.setdefault("oms_zone", {})
    zone = zones.get(tid)
    if zone is None:
        tenant = kept_copy(session, Tenant, tid) or kept_row(session, Tenant, tid)
        zone = zones[tid] = ZoneInfo((tenant.timezone if tenant else None) or "Asia/Shanghai")
    return _aware(when).astimezone(zone).date()


def post_revenue(session: Session, o: Order) -> None:
    """The sale's entry, once per order (idempotent): receivable from the buyer and from the
    platform (its discount), revenue per SKU line net of merchant discounts, shipping fee."""
    post_revenues(session, [o])


def post_revenues(session: Session, orders: Sequence[Any]) -> None:
    """:func:`post_revenue` for several orders (Orders, or rows with their columns): their
    lines read at once, their entries posted together (``post_entries``)."""
    from erp_core.ledger.service import get_mapping, post_entries

    if not orders:
        return
    acc = get_mapping(session)
    ids = [o.id for o in orders]
    lines: dict[int, list[Any]] = {i: [] for i in ids}
    args = {"ids": ids, "tid": _tid(session)}
    for ln in _LINES_WITH_SKU_CODES_D.rows(flushed_connection(session), args):
        lines[ln.order_id].append(ln)
    drafts = []
    for o in orders:
        draft = _revenue_draft(session, o, lines[o.id], acc)
        if draft is not None:
            drafts.append(draft)
    post_entries(session, drafts, returning=False)


def _revenue_draft(
    session: Session,
    o: Any,
    lines: Sequence[Any],
    acc: Mapping[str, str],
) -> EntryDraft | None:
    """The revenue entry of an order; ``lines``: its lines' rows of ``_LINES_WITH_SKU_CODES``."""
    dims: dict[str, Any] = dict(_sale_dimensions(o))
    postings: list[PostingDraft] = []

    def add(account: str, amount: Decimal, memo: str, **extra: Any) -> None:
        amount = _money(amount)
        if amount != 0:
            postings.append(
                PostingDraft(account=account, amount=amount, memo=memo, **dims, **extra)
            )

    add(acc["receivable"], o.total_paid, "paid by the buyer")
    add(acc["receivable"], o.platform_discount, "platform-funded discount")
    line_discounts = ZERO
    for ln in lines:
        sku = ln.code
        amount = _money(ln.unit_price * ln.quantity)
        add(acc["revenue"], -amount, f"{ln.title[:60]} x {ln.quantity.normalize()}", sku=sku)
        add(acc["sales_discount"], ln.merchant_discount, "merchant discount", sku=sku)
        line_discounts += _money(ln.merchant_discount)
    add(acc["sales_discount"], o.merchant_discount - line_discounts, "order discount")
    add(acc["revenue"], -o.shipping_fee, "shipping fee")
    total = sum((p.amount for p in postings), ZERO)
    if total != 0:  # the platform's totals do not add up: keep the books balanced, visibly
        add(acc["sales_discount"], -total, "difference in the platform's totals")
    if not postings:
        return None
    return EntryDraft(
        date=_local_date(session, o.shipped_at or utcnow()),
        narration=f"Sale {o.platform_order_id} ({o.connector or 'manual'})",
        postings=tuple(postings),
        idempotency_key=f"oms:order:{o.id}:revenue",
        source_type="oms_order",
        source_id=str(o.id),
    )


# --- write-back ----------------------------------------------------------------------------------


def due_writebacks(session: Session, *, limit: int = 100) -> list[Parcel]:
    return list(session.scalars(_DUE_WRITEBACKS, {"now": utcnow(), "limit": limit}))


def due_writeback_rows(
    session: Session, *, limit: int = 100, order_ids: Sequence[int] | None = None
) -> list[Any]:
    """:func:`due_writebacks` as rows (see :func:`parcel_rows`); with ``order_ids``, every
    due parcel of these orders (``limit`` does not apply), oldest first."""
    args: dict[str, Any] = {"now": utcnow(), "tid": _tid(session)}
    if order_ids is None:
        return _DUE_WRITEBACK_ROWS_D.rows(flushed_connection(session), {**args, "limit": limit})
    rows = _DUE_WRITEBACK_ROWS_OF_D.rows(
        flushed_connection(session), {**args, "ids": list(order_ids)}
    )
    return sorted(rows, key=lambda r: r.id)


def order_shops(session: Session, order_ids: Iterable[int]) -> dict[int, int | None]:
    """The shop (channel account) of each of ``order_ids`` that exists: None for a manual
    order."""
    ids = sorted(set(order_ids))
    if not ids:
        return {}
    return dict(
        _ORDER_SHOPS_D.rows(flushed_connection(session), {"ids": ids, "tid": _tid(session)})
    )


def drop_writebacks(session: Session, parcel_ids: Sequence[int]) -> None:
    """Nothing to write back for these parcels (their order has no shop)."""
    changes: list[tuple[int, dict[str, Any]]] = [(i, {"writeback": "none"}) for i in parcel_ids]
    _write_ids(session, _NO_WRITEBACK, Parcel, changes, held=True)


def parcel_rows(session: Session, order_ids: Sequence[int], *, state: str) -> list[Any]:
    """The parcels of ``order_ids`` in ``state``, by id, as rows: tuples whose fields are a
    :class:`Parcel`'s columns, to read. :func:`ship_many` and :func:`writeback_many` take them
    as they take parcels, without the ORM's work of loading objects (about as much, for one
    parcel, as shipping's own statements)."""
    args = {"ids": list(order_ids), "state": state, "tid": _tid(session)}
    return _PARCEL_ROWS_IN_STATE_D.rows(flushed_connection(session), args)


def writeback(session: Session, parcel: Parcel, channel: Any) -> bool:
    """Tell the platform the parcel shipped (every order it carries); True when accepted.
    A refusal is kept on the parcel with the next attempt's time (see WRITEBACK_DELAYS)."""
    return writeback_many(session, [parcel], channel)[0]


#: Write-back calls in flight at once per shop (the connector's rate limiter still applies).
WRITEBACK_CONCURRENCY = 4
#: A write-back request that waited longer than this (seconds: its time less the CPU time of
#: the thread that made it) waited on the network: the rest go in parallel. Those that did
#: not (a platform's gateway nearby, a local sandbox) cost CPU that threads would contend
#: for, so they go one by one.
WRITEBACK_SLOW_CALL = 0.005


def writeback_many(
    session: Session,
    parcels: Sequence[ParcelLike],
    channel: Any,
    *,
    concurrency: int = WRITEBACK_CONCURRENCY,
    parallel_after: float = WRITEBACK_SLOW_CALL,
    batch: int | None = None,
) -> list[bool]:
    """:func:`writeback` for parcels of one shop (Parcels or their rows from
    :func:`due_writeback_rows`): what they carry read at once, the platform told in requests
    of up to ``batch`` shipments (default: the connector's ``ship_batch``, through its
    ``ship_many``; the requests touch no database), the outcomes recorded here. True per
    parcel the platform accepted (every shipment of it).

    The requests go one by one until one waits longer than ``parallel_after`` seconds (on the
    network); the rest then go ``concurrency`` at a time."""
    from erp_core.channels.types import Shipment

    if not parcels:
        return []
    ids = [p.id for p in parcels]
    carried: dict[int, dict[int, list[str]]] = {i: defaultdict(list) for i in ids}
    conn, tid = flushed_connection(session), _tid(session)
    for pid, oid, line_id in _CARRIED_D.rows(conn, {"ids": ids, "tid": tid}):
        carried[pid][oid].append(line_id)
    order_ids = sorted(
        {oid for by_order in carried.values() for oid in by_order} | {p.order_id for p in parcels}
    )
    platform_ids = dict(_PLATFORM_IDS_D.rows(conn, {"ids": order_ids, "tid": tid}))
    counts = dict(_LINE_COUNTS_D.rows(conn, {"ids": order_ids, "tid": tid}))
    calls: list[list[Any]] = []
    for p in parcels:
        calls.append(
            [
                Shipment(
                    order_id=platform_ids[oid],
                    line_ids=() if len(line_ids) == counts.get(oid) else tuple(sorted(line_ids)),
                    tracking_no=p.tracking_no,
                    courier_code=p.courier_code,
                )
                for oid, line_ids in sorted(carried[p.id].items())
            ]
        )

    size = max(1, batch if batch is not None else getattr(channel, "ship_batch", 1))
    flat = [(n, shipment) for n, c in enumerate(calls) for shipment in c]
    units = [flat[i : i + size] for i in range(0, len(flat), size)]

    def send(unit: list[tuple[int, Any]]) -> list[Exception | None]:
        try:
            if len(unit) == 1:
                channel.ship(unit[0][1])
                return [None]
            results = list(channel.ship_many([shipment for _, shipment in unit]))
        except Exception as exc:  # the platform refused or could not be reached: retry later
            return [exc] * len(unit)
        if len(results) != len(unit):  # a connector's mistake: none is taken as accepted
            wrong = RuntimeError(f"ship_many answered {len(results)} of {len(unit)} shipments")
            return [wrong] * len(unit)
        return results

    # One by one while the platform answers at once: the requests then cost CPU, which threads
    # would only contend for. In parallel from the first request that waited on the network.
    sent: list[list[Exception | None]] = []
    for n, unit in enumerate(units):
        left = len(units) - n - 1
        if concurrency < 2 or left < 2:  # nothing to go in parallel after this one
            sent.append(send(unit))
            continue
        started, cpu = time.perf_counter(), time.thread_time()
        sent.append(send(unit))
        if time.perf_counter() - started - (time.thread_time() - cpu) > parallel_after:
            rest = units[n + 1 :]
            with ThreadPoolExecutor(max_workers=min(concurrency, left)) as pool:
                sent.extend(pool.map(send, rest))
            break
    # a parcel's outcome: the first refusal of its shipments, None when all were taken
    outcomes: list[Exception | None] = [None] * len(parcels)
    for unit, results in zip(units, sent, strict=True):
        for (n, _), exc in zip(unit, results, strict=True):
            if exc is not None and outcomes[n] is None:
                outcomes[n] = exc
    with _events_together(session):
        return _record_writebacks(session, parcels, outcomes, carried)


def _record_writebacks(
    session: Session,
    parcels: Sequence[ParcelLike],
    outcomes: list[Exception | None],
    carried: dict[int, dict[int, list[str]]],
) -> list[bool]:
    """:func:`writeback_many`'s outcomes on the parcels and the orders' timelines."""
    now = utcnow()
    accepted = []
    failed: list[tuple[ParcelLike, dict[str, Any]]] = []
    done: list[tuple[ParcelLike, dict[str, Any]]] = []
    for p, exc in zip(parcels, outcomes, strict=True):
        attempts = p.writeback_attempts + 1
        if exc is not None:
            delay = WRITEBACK_DELAYS[min(attempts, len(WRITEBACK_DELAYS)) - 1]
            error = f"{type(exc).__name__}: {exc}"[:1000]
            failed.append(
                (
                    p,
                    {
                        "writeback": "failed",
                        "writeback_attempts": attempts,
                        "writeback_error": error,
                        "writeback_next_at": now + timedelta(seconds=delay),
                    },
                )
            )
            _event_of(session, p.order_id, "writeback_failed", error, parcel=p.id)
            accepted.append(False)
            continue
        done.append(
            (
                p,
                {
                    "writeback": "done",
                    "writeback_attempts": attempts,
                    "writeback_error": "",
                    "writeback_next_at": None,
                    "written_back_at": now,
                },
            )
        )
        for oid in sorted(carried[p.id]):
            _event_of(session, oid, "written_back", f"{p.courier_code} {p.tracking_no}")
        accepted.append(True)
    # by id: the parcels may be rows (parcel_rows); a Parcel the session holds is kept up to date
    _write_ids(session, _WRITEBACK_FAILED, Parcel, [(p.id, v) for p, v in failed], held=True)
    _write_ids(session, _WRITEBACK_DONE, Parcel, [(p.id, v) for p, v in done], held=True)
    return accepted


# --- logistics trail -----------------------------------------------------------------------------

#: How often the trail of a parcel on its way is asked for again.
TRAIL_EVERY = timedelta(minutes=30)
#: After this long without "delivered", a parcel's trail is no longer asked for.
TRAIL_GIVE_UP = timedelta(days=30)


def due_trails(session: Session, *, limit: int = 100) -> list[Parcel]:
    """Shipped, written-back parcels not yet delivered whose trail is due (never asked, or
    last asked ``TRAIL_EVERY`` ago), oldest check first."""
    now = utcnow()
    return list(
        session.scalars(
            select(Parcel)
            .where(
                Parcel.state == "shipped",
                Parcel.delivered_at.is_(None),
                Parcel.writeback == "done",
                Parcel.shipped_at >= now - TRAIL_GIVE_UP,
                (Parcel.trail_checked_at.is_(None))
                | (Parcel.trail_checked_at <= now - TRAIL_EVERY),
            )
            .order_by(Parcel.trail_checked_at.is_not(None), Parcel.trail_checked_at, Parcel.id)
            .limit(limit)
        )
    )


def refresh_trail(session: Session, parcel: Parcel, channel: Any) -> bool:
    """Ask the platform for the parcel's trail and keep it on the parcel; True when the
    platform gave one. False when it offers none (then it is not asked again) or could not
    answer now (logged; asked again after ``TRAIL_EVERY``). A "delivered" step marks the
    parcel delivered, with an event on the order's timeline."""
    order = session.get(Order, parcel.order_id)
    assert order is not None
    parcel.trail_checked_at = utcnow()
    rows = session.execute(
        _through_parcels(
            session,
            select(OrderLine.line_id)
            .select_from(Parcel)
            .join(ParcelLine, ParcelLine.parcel_id == Parcel.id)
            .join(OrderLine, OrderLine.id == ParcelLine.order_line_id)
            .where(Parcel.id == parcel.id, OrderLine.order_id == order.id),
        )
    ).all()
    line_ids = sorted(r[0] for r in rows)
    all_lines = session.scalar(
        select(func.count()).select_from(OrderLine).where(OrderLine.order_id == order.id)
    )
    split = bool(line_ids) and len(line_ids) != all_lines
    try:
        trail = channel.logistics_trail(
            order.platform_order_id,
            line_ids=tuple(line_ids) if split else (),
            tracking_no=parcel.tracking_no,
        )
    except Exception as exc:  # not yet known at the courier, platform down: next time
        log.info("oms trail of parcel %s: %s", parcel.id, exc)
        return False
    if trail is None:  # the platform offers no trail: not asked again for this parcel
        parcel.trail_checked_at = utcnow() + TRAIL_GIVE_UP
        return False
    parcel.trail = [
        {"at": _aware(x.at).isoformat(), "text": x.description, "action": x.action}
        for x in trail.steps
    ]
    parcel.trail_courier = trail.courier[:100]
    if trail.delivered and parcel.delivered_at is None:
        parcel.delivered_at = _aware(trail.steps[-1].at)
        event(
            session,
            order,
            "delivered",
            N_("parcel %(parcel)s: %(step)s", parcel=parcel.id, step=trail.steps[-1].description),
            parcel=parcel.id,
        )
    return True
