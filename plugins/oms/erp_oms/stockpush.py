"""Channel stock push: each shop is told how many units of each SKU it may sell.

The sellable stock of a SKU is what the kernel says is available over every warehouse, minus
the shop's safety buffer. Shops share it by allocation rules, so that the quantities pushed to
all shops never add up to more than there is: two shops cannot both sell the last unit.

- ``percent``: the shop gets ``floor(available x value / 100)``; the percentages of the shops
  selling a SKU must not add up to more than 100 (checked when a rule is saved).
- ``fixed``: the shop gets ``min(value, available)``, taken off the top before the percentages
  of the other shops are applied to what is left.
- no rule: the shops without one share what the rules leave in equal parts (rounded down).

A stock change marks the SKU (``oms_stock_dirty``, in the transaction of the change); the push
task sends the marked SKUs to every shop and clears the marks it sent, and a full push now and
then corrects anything a platform changed on its side.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from erp_core.channels.interfaces import SalesChannel
from erp_core.channels.models import ChannelAccount
from erp_core.channels.types import StockLevel
from erp_core.db.base import utcnow
from erp_core.db.direct import Direct
from erp_core.db.types import Quantity
from erp_core.inventory.models import Quant, Sku
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_oms.models import Allocation, StockDirty

log = logging.getLogger(__name__)

ZERO = Decimal(0)
#: Quantities per platform call.
BATCH = 50


class AllocationError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rule:
    mode: str  # percent | fixed
    value: Decimal
    buffer: Decimal


def _floor(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_FLOOR))


def share(available: Decimal, shops: Sequence[int], rules: Mapping[int, Rule]) -> dict[int, int]:
    """Units each shop may sell of ``available`` (whole units, never negative, never more in
    total than ``available``)."""
    left = max(available, ZERO)
    out: dict[int, int] = {}
    for shop in shops:  # fixed quantities first
        r = rules.get(shop)
        if r is not None and r.mode == "fixed":
            give = min(max(_floor(r.value), 0), _floor(left))
            out[shop] = max(0, give - _floor(max(r.buffer, ZERO)))
            left -= give
    pool = left
    for shop in shops:
        r = rules.get(shop)
        if r is not None and r.mode == "percent":
            give = min(_floor(pool * r.value / 100), _floor(left))
            out[shop] = max(0, give - _floor(max(r.buffer, ZERO)))
            left -= give
    rest = [s for s in shops if s not in out]
    if rest:
        each = _floor(left / len(rest))
        for shop in rest:
            r = rules.get(shop)
            buffer = _floor(max(r.buffer, ZERO)) if r is not None else 0
            out[shop] = max(0, each - buffer)
    return out


def check_allocations(rows: Iterable[Allocation]) -> None:
    """Percentages of the shops selling a SKU (or the default row) must not exceed 100."""
    total: dict[int | None, Decimal] = defaultdict(lambda: ZERO)
    for r in rows:
        if (r.mode or "percent") not in ("percent", "fixed"):
            raise AllocationError(f"mode must be percent or fixed, not {r.mode!r}")
        value, buffer = r.value or ZERO, r.buffer or ZERO
        if value < 0 or buffer < 0:
            raise AllocationError("value and buffer must not be negative")
        if r.mode == "percent":
            total[r.sku_id] += value
    over = {k: v for k, v in total.items() if v > 100}
    if over:
        what = ", ".join(f"SKU {k}" if k is not None else "the default" for k in over)
        raise AllocationError(f"the shops' percentages add up to more than 100 for {what}")


def available(session: Session, sku_ids: Iterable[int]) -> dict[int, Decimal]:
    ids = sorted(set(sku_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Quant.sku_id, func.sum(Quant.quantity - Quant.reserved, type_=Quantity))
        .where(Quant.sku_id.in_(ids), Quant.warehouse_id.is_not(None))
        .group_by(Quant.sku_id)
    ).all()
    got = {s: Decimal(q or 0) for s, q in rows}
    return {i: got.get(i, ZERO) for i in ids}


def plan(session: Session, sku_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Shop (sales account id) -> merchant SKU code -> units to push."""
    ids = sorted(set(sku_ids))
    shops = list(
        session.scalars(
            select(ChannelAccount.id)
            .where(ChannelAccount.kind == "sales", ChannelAccount.active.is_(True))
            .order_by(ChannelAccount.id)
        )
    )
    if not shops or not ids:
        return {}
    codes = dict(session.execute(select(Sku.id, Sku.code).where(Sku.id.in_(ids))).all())
    rules: dict[tuple[int, int | None], Rule] = {
        (a.channel_account_id, a.sku_id): Rule(a.mode, a.value, a.buffer)
        for a in session.scalars(select(Allocation))
    }
    avail = available(session, ids)
    out: dict[int, dict[str, int]] = {s: {} for s in shops}
    for sku_id in ids:
        per_shop: dict[int, Rule] = {}
        for shop in shops:
            r = rules.get((shop, sku_id)) or rules.get((shop, None))
            if r is not None:
                per_shop[shop] = r
        for shop, qty in share(avail[sku_id], shops, per_shop).items():
            out[shop][codes[sku_id]] = qty
    return out


def mark(session: Session, sku_ids: Iterable[int]) -> None:
    """Mark SKUs whose stock changed (idempotent within and across transactions): one
    upsert for all of them."""
    ids = sorted(set(sku_ids))
    if not ids:
        return
    from erp_core.db.session import session_tenant

    tid = session_tenant(session)
    if tid is None:
        raise RuntimeError("stock push marks need a session bound to a tenant")
    now = utcnow()
    stmt = _MARK[session.get_bind().dialect.name]
    # on the session's connection: the marks need none of its pending changes flushed first
    rows = [{"tenant_id": tid, "sku_id": i, "marked_at": now} for i in ids]
    stmt.many(session.connection(), rows)


def _mark_statement(make: Any) -> Direct:
    table = cast(Table, StockDirty.__table__)
    ins = make(table).values(
        tenant_id=bindparam("tenant_id"),
        sku_id=bindparam("sku_id"),
        marked_at=bindparam("marked_at"),
    )
    return Direct(
        ins.on_conflict_do_update(
            index_elements=[table.c.tenant_id, table.c.sku_id],
            set_={"marked_at": ins.excluded.marked_at},
        )
    )


#: the upsert of :func:`mark` per dialect, built once (it runs in every transaction that
#: moves stock)
_MARK = {"postgresql": _mark_statement(pg_insert), "sqlite": _mark_statement(sqlite_insert)}


def push(
    session: Session,
    registry: PluginRegistry,
    settings: Settings,
    *,
    full: bool = False,
    channel_for: Any = None,
) -> dict[str, int]:
    """Push the marked SKUs (every active SKU with ``full``) to every active shop. A shop
    whose push fails keeps the marks, so the next run tries again."""
    from erp_oms.writeback import channel_for as default_channel_for

    opened = channel_for or default_channel_for
    started = utcnow()
    if full:
        ids = list(session.scalars(select(Sku.id).where(Sku.active.is_(True))))
    else:
        ids = list(session.scalars(select(StockDirty.sku_id)))
    amounts = plan(session, ids)
    pushed = failed = 0
    for shop, quantities in amounts.items():
        if not quantities:
            continue
        try:
            chan: SalesChannel = opened(session, registry, settings, shop)
            items = sorted(quantities.items())
            for i in range(0, len(items), BATCH):
                chan.push_stock(
                    [StockLevel(merchant_sku=code, quantity=q) for code, q in items[i : i + BATCH]],
                    full=True,
                )
            pushed += len(items)
        except Exception as exc:  # the shop is unreachable: keep the marks for the next run
            failed += 1
            log.warning("oms stock push to shop %s failed: %s", shop, exc)
    if not failed and ids:
        session.execute(
            delete(StockDirty).where(StockDirty.sku_id.in_(ids), StockDirty.marked_at <= started)
        )
    session.flush()
    return {"skus": len(ids), "pushed": pushed, "failed_shops": failed}
