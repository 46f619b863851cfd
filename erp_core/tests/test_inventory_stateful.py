"""Random sequences of stock operations keep every inventory invariant (hypothesis).

Receipts, reservations (FIFO/FEFO, partial or not, from a warehouse or a bin), releases,
completions, cancellations, transfers through transit, counts and scrap, on plain, decimal,
lot-tracked and serial-tracked SKUs. After every step:

- every quant equals the done moves in minus out for its (SKU, location, lot), and
  0 <= reserved <= on hand, reserved = what the reserved moves hold;
- serial numbers are in one place at most; valuation quantity = own stock on hand;
- an operation that fails changes nothing, and what succeeds changes what it says
  (a reservation takes exactly what it reports, a count leaves what was counted ...);
- the last ``erp_stock_changed`` payload matches the stock levels.
"""

from __future__ import annotations

import itertools
import os
from datetime import date
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import MetaData, select

from erp_core.inventory import service as inv
from erp_core.inventory.errors import InventoryError, ShortageError
from erp_core.inventory.types import CountLine
from erp_core.testing.inventory import hooks_without, invariant_violations, recording

D = Decimal
SKUS = ("N", "K", "L", "S")  # none (whole), none (2 decimals), lot, serial
BINS = ("W1/STOCK", "W1/A", "W1/B", "W2/STOCK")
LOTS = ("L-EARLY", "L-LATE", "L-GONE")
EXPIRY = {"L-EARLY": date(2098, 1, 1), "L-LATE": date(2099, 1, 1), "L-GONE": date(2000, 1, 1)}
_slugs = itertools.count(1)

qty_whole = st.integers(min_value=1, max_value=6).map(D)
qty_cents = st.integers(min_value=1, max_value=600).map(lambda n: D(n) / 100)


def snapshot(s: Any) -> dict[str, list[tuple[Any, ...]]]:
    md = MetaData()
    md.reflect(s.connection(), only=lambda name, _: name.startswith("inv_"))
    return {
        n: sorted(tuple(r) for r in s.connection().execute(select(t))) for n, t in md.tables.items()
    }


def make_machine(
    erp_db: Any, make_tenant: Any, registry: Any, rec: Any
) -> type[RuleBasedStateMachine]:
    hooks = hooks_without(registry, "erp_core.ledger.hooks")

    class Stock(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            self.tenant = make_tenant(f"st{next(_slugs)}")
            self.serials = itertools.count(1)
            self.received_serials: list[str] = []
            self.open_moves: list[int] = []  # reserved or draft moves we may act on
            with self.session() as s:
                for wh in ("W1", "W2"):
                    inv.create_warehouse(s, code=wh, name=wh)
                inv.create_location(s, parent="W1", code="A")
                inv.create_location(s, parent="W1", code="B")
                inv.create_sku(s, code="N", name="plain")
                inv.create_sku(s, code="K", name="by weight", unit="kg", decimals=2)
                inv.create_sku(s, code="L", name="lots", tracking="lot")
                inv.create_sku(s, code="S", name="serials", tracking="serial")

        def session(self) -> Any:
            return erp_db.tenant_session(self.tenant.id)

        def qty(self, data: Any, sku: str) -> Decimal:
            return data.draw(qty_cents if sku == "K" else qty_whole)

        def available(self, s: Any, sku: str, **kw: Any) -> Decimal:
            levels = inv.stock_levels(s, sku=sku, group_by="sku", **kw)
            return levels[0].available if levels else D(0)

        def attempt(self, s: Any, call: Any) -> Any:
            """Run ``call``; an InventoryError must leave the inventory unchanged."""
            before = snapshot(s)
            try:
                return call()
            except InventoryError as exc:
                assert snapshot(s) == before, f"{exc} changed the inventory"
                return exc

        # --- rules -----------------------------------------------------------------------

        @rule(data=st.data(), sku=st.sampled_from(SKUS), where=st.sampled_from(BINS))
        def receive(self, data: Any, sku: str, where: str) -> None:
            cost = data.draw(st.integers(min_value=0, max_value=5000).map(lambda n: D(n) / 100))
            kw: dict[str, Any] = {"to_location": where, "unit_cost": cost, "hooks": hooks}
            qty = self.qty(data, sku)
            if sku == "L":
                lot = data.draw(st.sampled_from(LOTS))
                kw.update(lot=lot, expiry=EXPIRY[lot])
            if sku == "S":
                reuse = self.received_serials and data.draw(st.booleans())
                codes = (
                    [data.draw(st.sampled_from(self.received_serials))]
                    if reuse
                    else [f"SN{next(self.serials)}" for _ in range(int(qty))]
                )
                qty = D(len(codes))
                kw["serials"] = codes
            with self.session() as s:
                before = self.available(s, sku, location=where)
                result = self.attempt(s, lambda: inv.receive(s, sku, qty, **kw))
                if isinstance(result, InventoryError):
                    assert sku == "S" and reuse, result
                    return
                assert self.available(s, sku, location=where) == before + qty
                if sku == "S":
                    self.received_serials.extend(kw["serials"])

        @rule(
            data=st.data(),
            sku=st.sampled_from(SKUS),
            scope=st.sampled_from(("W1", "W2", "W1/A", "W1/B")),
            strategy=st.sampled_from(("fifo", "fefo")),
            partial=st.booleans(),
        )
        def reserve(self, data: Any, sku: str, scope: str, strategy: str, partial: bool) -> None:
            qty = self.qty(data, sku)
            where: dict[str, Any] = (
                {"warehouse": scope} if "/" not in scope else {"location": scope}
            )
            with self.session() as s:
                free = self.available(
                    s, sku, **({"warehouse": scope} if "/" not in scope else {"location": scope})
                )
                result = self.attempt(
                    s,
                    lambda: inv.reserve(
                        s,
                        sku,
                        qty,
                        strategy=strategy,  # type: ignore[arg-type]
                        allow_partial=partial,
                        hooks=hooks,
                        **where,
                    ),
                )
                if isinstance(result, ShortageError):
                    # expired lots are never reserved, so "free" may count more than usable
                    assert not partial and result.available < qty
                    return
                assert not isinstance(result, InventoryError), result
                assert result.reserved + result.shortage == qty
                assert result.reserved <= free
                if not partial:
                    assert result.reserved == qty
                assert sum(ln.quantity for ln in result.lines) == result.reserved
                self.open_moves.extend(result.move_ids)
                if sku != "L":  # no expired stock in the way: all that was free is taken
                    assert result.reserved == min(qty, free)

        @rule(data=st.data(), sku=st.sampled_from(SKUS))
        def draft_move(self, data: Any, sku: str) -> None:
            qty = self.qty(data, sku)
            with self.session() as s:
                move = inv.create_move(s, sku, qty, from_location="W1", to_location="@customer")
                self.open_moves.append(move.id)

        @rule(data=st.data(), action=st.sampled_from(("release", "keep", "complete", "cancel")))
        def act_on_a_move(self, data: Any, action: str) -> None:
            if not self.open_moves:
                return
            move_id = data.draw(st.sampled_from(self.open_moves))
            with self.session() as s:
                move = inv.get_move(s, move_id)
                state = move.state
                calls = {
                    "release": lambda: inv.release(s, move_id, hooks=hooks),
                    "keep": lambda: inv.release(s, move_id, keep_move=True, hooks=hooks),
                    "complete": lambda: inv.complete(s, move_id, hooks=hooks),
                    "cancel": lambda: inv.cancel(s, move_id, hooks=hooks),
                }
                result = self.attempt(s, calls[action])
                if isinstance(result, InventoryError):
                    if action in ("release", "keep"):
                        assert state != "reserved"
                    elif action == "complete":
                        assert state != "reserved"  # a reserved move always completes
                    else:
                        assert state == "done"
                    return
                after = [inv.get_move(s, m.id) for m in result]
                if action == "complete":
                    assert all(m.state == "done" for m in after)
                if action in ("release", "cancel"):
                    assert inv.get_move(s, move_id).state == "cancelled"
                if action == "keep":
                    assert inv.get_move(s, move_id).state == "draft"
                self.open_moves = [
                    i for i in self.open_moves if inv.get_move(s, i).state in ("draft", "reserved")
                ]
                if action == "complete":
                    self.open_moves.extend(
                        r.id
                        for r in s.scalars(
                            select(inv.Move).where(inv.Move.state.in_(("draft", "reserved")))
                        )
                        if r.id not in self.open_moves
                    )

        @rule(
            data=st.data(),
            sku=st.sampled_from(SKUS),
            route=st.sampled_from((("W1", "W2"), ("W2", "W1"), ("W1/A", "W1/B"), ("W1", "W1/A"))),
            now=st.booleans(),
        )
        def transfer(self, data: Any, sku: str, route: tuple[str, str], now: bool) -> None:
            qty = self.qty(data, sku)
            src, dst = route
            kw: dict[str, Any] = {
                ("from_warehouse" if "/" not in src else "from_location"): src,
                ("to_warehouse" if "/" not in dst else "to_location"): dst,
            }
            with self.session() as s:
                own_before = inv.valuation_of(s, sku)[0]
                result = self.attempt(
                    s, lambda: inv.transfer(s, sku, qty, receive_now=now, hooks=hooks, **kw)
                )
                if isinstance(result, InventoryError):
                    assert isinstance(result, ShortageError), result
                    return
                assert inv.valuation_of(s, sku)[0] == own_before  # stock stays the tenant's
                if not now:
                    self.open_moves.extend(result.incoming)

        @rule(data=st.data(), sku=st.sampled_from(SKUS), where=st.sampled_from(BINS))
        def count(self, data: Any, sku: str, where: str) -> None:
            wh, _, rel = where.partition("/")
            counted = data.draw(st.integers(min_value=0, max_value=8).map(D))
            lot = None
            if sku == "K":
                counted = counted / 4
            if sku == "L":
                lot = data.draw(st.sampled_from(LOTS))
            if sku == "S":
                if not self.received_serials:
                    return
                lot = data.draw(st.sampled_from(self.received_serials))
                counted = D(data.draw(st.integers(min_value=0, max_value=1)))
            line = CountLine(sku=sku, counted=counted, location=rel, lot=lot)
            with self.session() as s:
                result = self.attempt(s, lambda: inv.count(s, wh, [line], hooks=hooks))
                if isinstance(result, InventoryError):
                    # below what is reserved, a lot never received, a serial found elsewhere
                    return
                [done] = result.lines
                levels = inv.stock_levels(s, sku=sku, location=where, group_by="lot")
                here = [x for x in levels if x.location_path == where and x.lot_code == lot]
                assert (here[0].on_hand if here else D(0)) == counted
                assert done.expected + done.difference == counted

        @rule(data=st.data(), sku=st.sampled_from(SKUS), where=st.sampled_from(BINS))
        def scrap(self, data: Any, sku: str, where: str) -> None:
            qty = self.qty(data, sku)
            kw: dict[str, Any] = {"location": where, "hooks": hooks}
            if sku == "L":
                kw["lot"] = data.draw(st.sampled_from(LOTS))
            if sku == "S":
                if not self.received_serials:
                    return
                kw["serials"] = [data.draw(st.sampled_from(self.received_serials))]
                qty = D(1)
            with self.session() as s:
                total = inv.valuation_of(s, sku)[0]
                result = self.attempt(s, lambda: inv.scrap(s, sku, qty, **kw))
                if isinstance(result, InventoryError):
                    return
                assert inv.valuation_of(s, sku)[0] == total - qty

        # --- invariants --------------------------------------------------------------------

        @invariant()
        def books_balance(self) -> None:
            if not hasattr(self, "tenant"):
                return
            with self.session() as s:
                assert invariant_violations(s) == []

        @invariant()
        def last_stock_change_matches_the_levels(self) -> None:
            if not hasattr(self, "tenant") or not rec.changed:
                return
            with self.session() as s:
                for change in rec.changed[-1]:
                    levels = inv.stock_levels(
                        s, sku=change.sku_code, warehouse=change.warehouse_code, group_by="sku"
                    )
                    on_hand = levels[0].on_hand if levels else D(0)
                    reserved = levels[0].reserved if levels else D(0)
                    assert (change.on_hand, change.reserved) == (on_hand, reserved)
                    assert change.available == on_hand - reserved >= 0
            rec.changed.clear()

    return Stock


def test_random_operations_keep_the_invariants(erp_db, make_tenant, erp_registry):
    from hypothesis.stateful import run_state_machine_as_test

    examples = int(os.environ.get("ERP_INVENTORY_EXAMPLES", "15"))
    with recording(erp_registry) as rec:
        machine = make_machine(erp_db, make_tenant, erp_registry, rec)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=25,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
