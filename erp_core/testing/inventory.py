"""Test helpers for code that moves stock: record the inventory hooks, check the invariants.

```python
from erp_core.testing.inventory import invariant_violations, recording

with recording(erp_registry) as rec, erp_db.tenant_session(tenant.id) as s:
    receive(s, "SKU-1", 5, warehouse="WH1", unit_cost="2.50", hooks=kernel_hooks)
    assert rec.valued[0].value == Decimal("12.5000")
    assert invariant_violations(s) == []
```
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import count
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, select

from erp_core.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from erp_core.inventory.types import StockChange, StockValuation
    from erp_core.plugins.registry import PluginRegistry, TenantHooks

_names = count(1)


class StockHookRecorder:
    """A pluggy plugin that records the inventory hooks it receives."""

    def __init__(self) -> None:
        self.valued: list[StockValuation] = []
        self.changed: list[list[StockChange]] = []
        self.tenants: list[int] = []

    @hookimpl
    def erp_stock_valued(
        self, session: Session, tenant_id: int, valuations: Sequence[StockValuation]
    ) -> None:
        self.tenants.append(tenant_id)
        self.valued.extend(valuations)

    @hookimpl
    def erp_stock_changed(
        self, session: Session, tenant_id: int, changes: list[StockChange]
    ) -> None:
        self.tenants.append(tenant_id)
        self.changed.append(list(changes))

    def clear(self) -> None:
        self.valued.clear()
        self.changed.clear()
        self.tenants.clear()


@contextmanager
def recording(registry: PluginRegistry) -> Iterator[StockHookRecorder]:
    """Register a :class:`StockHookRecorder` on ``registry`` for the duration; it runs for
    every tenant (like a kernel built-in)."""
    rec = StockHookRecorder()
    registry.pm.register(rec, name=f"test:stock-recorder-{next(_names)}")
    try:
        yield rec
    finally:
        registry.pm.unregister(rec)


def hooks_without(registry: PluginRegistry, *modules: str) -> TenantHooks:
    """The kernel's hooks without the built-in modules named (for instance the ledger's, to
    test the inventory alone)."""
    from erp_core.plugins.registry import TenantHooks

    remove = {registry.pm.get_plugin(f"core:{m}") for m in modules}
    return TenantHooks(registry.pm, frozenset(p for p in remove if p is not None))


def invariant_violations(session: Session) -> list[str]:
    """What is wrong with the inventory of the session's tenant (empty when all is well):

    - every quant's on hand equals the done moves into its (SKU, location, lot) minus those
      out of it, and every such balance of an own location has its quant;
    - 0 <= reserved <= on hand; a quant's reserved is the sum of the reserved moves on it;
    - moves: done and cancelled moves hold nothing, reserved moves from own stock hold their
      whole quantity;
    - a serial number is in at most one place, one unit at most;
    - the valuation quantity of a SKU is its on hand in own locations; no value without stock.
    """
    from erp_core.inventory.models import OWNED_USAGES, Location, Lot, Move, Quant, Sku, Valuation

    Q = cast(Table, Quant.__table__)
    M = cast(Table, Move.__table__)
    L = cast(Table, Location.__table__)
    S = cast(Table, Sku.__table__)
    LT = cast(Table, Lot.__table__)
    V = cast(Table, Valuation.__table__)
    conn = session.connection()
    from erp_core.db.session import session_tenant

    tid = session_tenant(session)
    out: list[str] = []
    locs = {r.id: r for r in conn.execute(select(L).where(L.c.tenant_id == tid))}
    owned = {i for i, r in locs.items() if r.usage in OWNED_USAGES and r.kind == "stock"}
    balance: dict[tuple[int, int, int], Decimal] = defaultdict(Decimal)
    held: dict[tuple[int, int, int], Decimal] = defaultdict(Decimal)
    for m in conn.execute(select(M).where(M.c.tenant_id == tid)):
        key_from = (m.sku_id, m.from_location_id, m.lot_id or 0)
        key_to = (m.sku_id, m.to_location_id, m.lot_id or 0)
        if m.state == "done":
            balance[key_from] -= m.quantity
            balance[key_to] += m.quantity
        if m.state in ("done", "cancelled", "draft") and m.reserved != 0:
            out.append(f"move {m.id} is {m.state} but holds {m.reserved}")
        if m.state == "reserved":
            held[key_from] += m.reserved
            if m.from_location_id in owned and m.reserved != m.quantity:
                out.append(f"reserved move {m.id} holds {m.reserved} of {m.quantity}")
            if m.from_location_id not in owned and m.reserved != 0:
                out.append(f"move {m.id} from a virtual location holds {m.reserved}")
    quants: dict[tuple[int, int, int], Any] = {}
    for q in conn.execute(select(Q).where(Q.c.tenant_id == tid)):
        key = (q.sku_id, q.location_id, q.lot_key)
        quants[key] = q
        if q.location_id not in owned:
            out.append(f"quant {q.id} is in a location that holds no own stock")
        if q.lot_key != (q.lot_id or 0):
            out.append(f"quant {q.id} has lot_key {q.lot_key} for lot {q.lot_id}")
        if q.warehouse_id != locs[q.location_id].warehouse_id:
            out.append(f"quant {q.id} has the wrong warehouse")
        if q.quantity != balance.get(key, Decimal(0)):
            out.append(
                f"quant {q.id} {key}: on hand {q.quantity} but done moves give "
                f"{balance.get(key, Decimal(0))}"
            )
        if not Decimal(0) <= q.reserved <= q.quantity:
            out.append(f"quant {q.id}: reserved {q.reserved} outside 0..{q.quantity}")
        if q.reserved != held.get(key, Decimal(0)):
            out.append(
                f"quant {q.id} {key}: reserved {q.reserved} but reserved moves hold "
                f"{held.get(key, Decimal(0))}"
            )
    for key, qty in balance.items():
        if key[1] in owned and qty != 0 and key not in quants:
            out.append(f"done moves leave {qty} at {key} but there is no quant")
        if key[1] in owned and qty < 0:
            out.append(f"done moves leave {qty} (negative) at {key}")
    for key, qty in held.items():
        if key[1] in owned and qty and key not in quants:
            out.append(f"reserved moves hold {qty} at {key} but there is no quant")
    serial_skus = {
        r.id
        for r in conn.execute(select(S.c.id).where(S.c.tenant_id == tid, S.c.tracking == "serial"))
    }
    places: dict[int, Decimal] = defaultdict(Decimal)
    for key, q in quants.items():
        if key[0] in serial_skus and q.quantity > 0:
            if key[2] == 0:
                out.append(f"quant {q.id} of a serial-tracked SKU has no serial number")
            places[key[2]] += q.quantity
            if q.quantity != 1:
                out.append(f"serial number {key[2]} has {q.quantity} units at one place")
    for lot_id, qty in places.items():
        if qty > 1:
            code = conn.execute(select(LT.c.code).where(LT.c.id == lot_id)).scalar()
            out.append(f"serial number {code} is in stock {qty} times")
    on_hand: dict[int, Decimal] = defaultdict(Decimal)
    for key, q in quants.items():
        on_hand[key[0]] += q.quantity
    vals = {v.sku_id: v for v in conn.execute(select(V).where(V.c.tenant_id == tid))}
    for sku_id in set(on_hand) | set(vals):
        v = vals.get(sku_id)
        vq = v.quantity if v is not None else Decimal(0)
        if vq != on_hand.get(sku_id, Decimal(0)):
            out.append(f"SKU {sku_id}: valuation quantity {vq} but on hand {on_hand.get(sku_id)}")
        if v is not None and (v.value < 0 or (v.quantity == 0 and v.value != 0)):
            out.append(f"SKU {sku_id}: value {v.value} for quantity {v.quantity}")
    return out
