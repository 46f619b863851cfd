"""The inventory service: SKUs and locations, receipts, reservations (FIFO/FEFO, lots, serial
numbers), release and completion, transfers through transit, counts, scrap, valuation and the
stock hooks, and every validation error (which must leave nothing behind)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from erp_core.inventory import service as inv
from erp_core.inventory.errors import InventoryConflict, InventoryError, ShortageError
from erp_core.inventory.models import Lot, Move
from erp_core.inventory.types import CountLine
from erp_core.testing.inventory import hooks_without, invariant_violations, recording

D = Decimal


@pytest.fixture
def tenant(make_tenant: Any) -> Any:
    return make_tenant("acme")


@pytest.fixture
def hooks(erp_registry: Any) -> Any:
    """The kernel's hooks without the ledger's posting: the inventory alone."""
    return hooks_without(erp_registry, "erp_core.ledger.hooks")


@pytest.fixture
def rec(erp_registry: Any) -> Any:
    with recording(erp_registry) as r:
        yield r


@pytest.fixture
def s(erp_db: Any, tenant: Any) -> Any:
    """A session of the tenant; committed at the end (so errors must have left it usable)."""
    with erp_db.tenant_session(tenant.id) as session:
        yield session
        assert invariant_violations(session) == []


@pytest.fixture
def wh(s: Any) -> Any:
    w = inv.create_warehouse(s, code="WH1", name="Main")
    inv.create_location(s, parent="WH1", code="A", kind="view")
    inv.create_location(s, parent="WH1/A", code="01")
    inv.create_location(s, parent="WH1/A", code="02")
    inv.create_sku(s, code="TEA", name="Green tea", unit="box")
    inv.create_sku(s, code="RICE", name="Rice", unit="kg", decimals=3)
    inv.create_sku(s, code="MILK", name="Milk", tracking="lot", shelf_life_days=10)
    inv.create_sku(s, code="PHONE", name="Phone", tracking="serial")
    return w


def inv_rows(s: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every inventory row, read in the session's transaction."""
    md = MetaData()
    md.reflect(s.connection())
    out = {}
    for name, table in sorted(md.tables.items()):
        if name.startswith("inv_"):
            out[name] = sorted(tuple(r) for r in s.connection().execute(select(table)))
    return out


def level(s: Any, sku: str, **kw: Any) -> tuple[Decimal, Decimal, Decimal]:
    rows = inv.stock_levels(s, sku=sku, **kw, group_by="sku")
    if not rows:
        return D(0), D(0), D(0)
    [r] = rows
    return r.on_hand, r.reserved, r.available


# --- master data -----------------------------------------------------------------------------


def test_warehouse_gets_its_tree_and_the_tenant_its_virtual_locations(s, wh):
    tree = inv.location_tree(s, "WH1")
    assert [(x.path, x.kind) for x in tree] == [
        ("WH1", "view"),
        ("WH1/A", "view"),
        ("WH1/A/01", "stock"),
        ("WH1/A/02", "stock"),
        ("WH1/STOCK", "stock"),
    ]
    root = tree[0]
    assert root.parent_id is None and all(x.warehouse_id == wh.id for x in tree)
    assert inv.get_location(s, "WH1/A/01").parent_id == inv.get_location(s, "WH1/A").id
    virtual = inv.ensure_virtual_locations(s)
    assert {u: loc.path for u, loc in virtual.items()} == {
        "supplier": "@supplier",
        "customer": "@customer",
        "adjustment": "@adjustment",
        "scrap": "@scrap",
        "transit": "@transit",
    }
    assert all(loc.warehouse_id is None for loc in virtual.values())
    assert inv.ensure_virtual_locations(s) == virtual  # idempotent


def test_master_data_errors_store_nothing(s, wh):
    before = inv_rows(s)
    cases = [
        (lambda: inv.create_sku(s, code="TEA", name="again"), "already exists"),
        (lambda: inv.create_sku(s, code="", name="x"), "must not be empty"),
        (lambda: inv.create_sku(s, code="a b", name="x"), "letters, digits"),
        (lambda: inv.create_sku(s, code="X", name="x", tracking="batch"), "tracking"),
        (lambda: inv.create_sku(s, code="X", name="x", decimals=5), "decimals"),
        (lambda: inv.create_sku(s, code="X", name="x", tracking="serial", decimals=2), "whole"),
        (lambda: inv.create_warehouse(s, code="WH1", name="again"), "already exists"),
        (lambda: inv.create_location(s, parent="WH1/A", code="01"), "already exists"),
        (lambda: inv.create_location(s, parent="@customer", code="X"), "inside a warehouse"),
        (lambda: inv.create_location(s, parent="NOPE", code="X"), "unknown location"),
        (lambda: inv.update_sku(s, "RICE", decimals=1), "only grow"),
    ]
    for call, message in cases:
        with pytest.raises(InventoryError, match=message):
            call()
        assert inv_rows(s) == before, message


def test_tracking_cannot_change_once_the_sku_has_moves(s, wh):
    inv.update_sku(s, "TEA", tracking="lot")  # no moves yet: allowed
    inv.update_sku(s, "TEA", tracking="none", name="Tea", decimals=2)
    inv.receive(s, "TEA", 1, warehouse="WH1", unit_cost=1)
    with pytest.raises(InventoryConflict, match="already has moves"):
        inv.update_sku(s, "TEA", tracking="lot")
    assert inv.get_sku(s, "TEA").decimals == 2


# --- receipts and validation -----------------------------------------------------------------


def test_receipt_puts_stock_on_hand_and_values_it(s, wh, hooks, rec):
    [m] = inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost="2.5", hooks=hooks)
    assert m.state == "done" and m.quantity == D("10") and m.value == D("25")
    assert inv.get_location(s, m.to_location_id).path == "WH1/STOCK"
    assert inv.get_location(s, m.from_location_id).path == "@supplier"
    assert level(s, "TEA") == (D(10), D(0), D(10))
    [v] = rec.valued
    assert (v.kind, v.sku_code, v.warehouse_code) == ("receipt", "TEA", "WH1")
    assert (v.quantity, v.unit_cost, v.value, v.currency) == (D(10), D("2.5"), D(25), "CNY")
    assert v.move_id == m.id
    [[change]] = rec.changed
    assert (change.sku_code, change.warehouse_code) == ("TEA", "WH1")
    assert (change.on_hand, change.reserved, change.available) == (D(10), D(0), D(10))


def test_no_hooks_run_without_a_hooks_object(s, wh, rec):
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost="2.5")
    assert rec.valued == [] and rec.changed == []


def test_invalid_receipts_store_nothing(s, wh):
    inv.receive(s, "PHONE", 1, warehouse="WH1", unit_cost=100, serials=["SN1"])
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=3, lot="L1", expiry=date(2099, 1, 1))
    before = inv_rows(s)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"sku": "TEA", "quantity": -1}, "must be positive"),
        ({"sku": "TEA", "quantity": 0}, "must be positive"),
        ({"sku": "TEA", "quantity": "1.5"}, "whole box"),
        ({"sku": "TEA", "quantity": 1.0}, "not as a float"),
        ({"sku": "TEA", "quantity": "abc"}, "not a number"),
        ({"sku": "TEA", "quantity": "NaN"}, "finite"),
        ({"sku": "TEA", "quantity": 10**10}, "larger than the maximum"),
        ({"sku": "RICE", "quantity": "1.0005"}, "3 decimal places"),
        ({"sku": "NOPE", "quantity": 1}, "unknown SKU"),
        ({"sku": "TEA", "quantity": 1, "unit_cost": "-1"}, "must not be negative"),
        ({"sku": "TEA", "quantity": 1, "unit_cost": "0.00001"}, "4 decimal places"),
        ({"sku": "TEA", "quantity": 1, "unit_cost": None}, "needs the unit_cost"),
        ({"sku": "TEA", "quantity": 1, "to_location": "WH1"}, "view location"),
        ({"sku": "TEA", "quantity": 1, "to_location": "@customer"}, "into a warehouse"),
        ({"sku": "TEA", "quantity": 1, "to_location": "WH9/STOCK"}, "unknown location"),
        ({"sku": "TEA", "quantity": 1, "lot": "L1"}, "not tracked"),
        ({"sku": "MILK", "quantity": 1}, "give the lot"),
        ({"sku": "MILK", "quantity": 1, "lot": "L1", "expiry": date(2098, 1, 1)}, "expiry"),
        ({"sku": "PHONE", "quantity": 1}, "one serial number per unit"),
        ({"sku": "PHONE", "quantity": 2, "serials": ["A"]}, "1 serial number"),
        ({"sku": "PHONE", "quantity": 2, "serials": ["A", "A"]}, "more than once"),
        ({"sku": "PHONE", "quantity": 1, "serials": ["SN1"]}, "already in stock"),
        ({"sku": "PHONE", "quantity": "0.5", "serials": ["X"]}, "whole"),
        ({"sku": "TEA", "quantity": 1, "idempotency_key": "a#b"}, "must not contain"),
        ({"sku": "TEA", "quantity": 1, "source": ("oms.order",)}, "pair"),
        ({"sku": "TEA", "quantity": 10**8, "unit_cost": 10**9}, "more than can be stored"),
    ]
    for args, message in bad:
        kw: dict[str, Any] = {"to_location": "WH1/STOCK", "unit_cost": "1"}
        kw.update({k: v for k, v in args.items() if k not in ("sku", "quantity")})
        with pytest.raises(InventoryError, match=message):
            inv.receive(s, args["sku"], args["quantity"], **kw)
        assert inv_rows(s) == before, message


def test_a_serial_number_is_received_once(s, wh):
    inv.receive(s, "PHONE", 2, warehouse="WH1", unit_cost=100, serials=["SN1", "SN2"])
    res = inv.reserve(s, "PHONE", 1, warehouse="WH1", serials=["SN1"])
    inv.complete(s, res.move_ids)
    before = inv_rows(s)
    with pytest.raises(InventoryConflict, match="already received"):
        inv.receive(s, "PHONE", 1, warehouse="WH1", unit_cost=100, serials=["SN1"])
    with pytest.raises(InventoryConflict, match="already in stock"):
        inv.receive(s, "PHONE", 1, warehouse="WH1", from_location="@customer", serials=["SN2"])
    assert inv_rows(s) == before
    # the customer sends SN1 back: a return, valued at the average cost
    [back] = inv.receive(s, "PHONE", 1, warehouse="WH1", from_location="@customer", lot="SN1")
    assert back.value == D(100)


def test_receipt_is_idempotent(s, wh):
    first = inv.receive(s, "TEA", 3, warehouse="WH1", unit_cost=1, idempotency_key="po-1/1")
    again = inv.receive(s, "TEA", 3, warehouse="WH1", unit_cost=1, idempotency_key="po-1/1")
    assert [m.id for m in again] == [m.id for m in first]
    assert level(s, "TEA") == (D(3), D(0), D(3))
    phones = inv.receive(
        s, "PHONE", 2, warehouse="WH1", unit_cost=9, serials=["P1", "P2"], idempotency_key="k"
    )
    again = inv.receive(
        s, "PHONE", 2, warehouse="WH1", unit_cost=9, serials=["P1", "P2"], idempotency_key="k"
    )
    assert [m.id for m in again] == [m.id for m in phones]
    assert [m.idempotency_key for m in phones] == ["k", "k#2"]
    with pytest.raises(InventoryConflict, match="another receipt"):
        inv.receive(s, "RICE", 1, warehouse="WH1", unit_cost=1, idempotency_key="k")


def test_new_lot_gets_the_shelf_life_as_expiry(s, wh):
    inv.receive(s, "MILK", 4, warehouse="WH1", unit_cost=1, lot="M1")
    lot = inv.get_lot(s, "MILK", "M1")
    assert lot.expiry is not None and lot.expiry - date.today() in (
        timedelta(days=9),
        timedelta(days=10),
        timedelta(days=11),
    )


# --- reservations ----------------------------------------------------------------------------


def test_reserve_release_and_complete_are_exact(s, wh, hooks, rec):
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2, hooks=hooks)
    rec.clear()
    res = inv.reserve(s, "TEA", 4, warehouse="WH1", source=("oms.order", "SO-1"), hooks=hooks)
    assert (res.requested, res.reserved, res.shortage) == (D(4), D(4), D(0))
    assert level(s, "TEA") == (D(10), D(4), D(6))
    [[change]] = rec.changed
    assert (change.on_hand, change.reserved, change.available) == (D(10), D(4), D(6))
    [move] = [inv.get_move(s, i) for i in res.move_ids]
    assert (move.state, move.reserved, move.source_type, move.source_id) == (
        "reserved",
        D(4),
        "oms.order",
        "SO-1",
    )
    assert inv.get_location(s, move.to_location_id).path == "@customer"
    inv.release(s, res.move_ids, keep_move=True, hooks=hooks)
    assert level(s, "TEA") == (D(10), D(0), D(10))
    assert inv.get_move(s, move.id).state == "draft"
    [again] = inv.reserve_move(s, move.id, hooks=hooks)
    assert again.state == "reserved" and level(s, "TEA") == (D(10), D(4), D(6))
    rec.clear()
    [done] = inv.complete(s, move.id, hooks=hooks)
    assert done.state == "done" and done.reserved == 0 and done.done_at is not None
    assert level(s, "TEA") == (D(6), D(0), D(6))
    [v] = rec.valued
    assert (v.kind, v.quantity, v.unit_cost, v.value) == ("delivery", D(4), D(2), D(8))
    assert (v.source_type, v.source_id) == ("oms.order", "SO-1")
    with pytest.raises(InventoryConflict, match="done already"):
        inv.complete(s, move.id)
    with pytest.raises(InventoryConflict, match="cannot be cancelled"):
        inv.cancel(s, move.id)
    with pytest.raises(InventoryConflict, match="not reserved"):
        inv.release(s, move.id)


def test_complete_without_reading_back_does_the_same_and_one_query_less(s, wh, hooks, rec):
    from sqlalchemy import event

    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2, hooks=hooks)
    warm = inv.reserve(s, "TEA", 2, warehouse="WH1", hooks=hooks)
    first = inv.reserve(s, "TEA", 3, warehouse="WH1", hooks=hooks)
    second = inv.reserve(s, "TEA", 3, warehouse="WH1", hooks=hooks)
    inv.complete(s, warm.move_ids, hooks=hooks)  # the first call's reads of master data
    counts: list[int] = []
    for res, read_back in ((first, True), (second, False)):
        seen: list[str] = []

        def count(*args: Any, _seen: list[str] = seen) -> None:
            _seen.append(args[2])

        conn = s.connection()
        event.listen(conn, "before_cursor_execute", count)
        try:
            got = inv.complete(s, res.move_ids, hooks=hooks, read_back=read_back)
        finally:
            event.remove(conn, "before_cursor_execute", count)
        counts.append(len(seen))
        if read_back:
            assert [m.state for m in got] == ["done"]
        else:
            assert got == []
        assert inv.get_move(s, res.move_ids[0]).state == "done"
    assert level(s, "TEA") == (D(2), D(0), D(2))
    assert [v.quantity for v in rec.valued] == [D(10), D(2), D(3), D(3)]
    assert counts[1] == counts[0] - 1, counts


def test_sqlite_write_lock_is_taken_once_per_transaction(erp_db, tenant, hooks):
    from sqlalchemy import event

    if erp_db.is_postgres:
        pytest.skip("PostgreSQL locks rows, not the database")
    with erp_db.tenant_session(tenant.id) as s:
        inv.create_warehouse(s, code="WH1", name="Main")
        inv.create_sku(s, code="TEA", name="Green tea", unit="box")
    locks: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "WHERE 1 = 0" in statement:
            locks.append(statement)

    event.listen(erp_db.engine, "before_cursor_execute", count)
    try:
        for _ in range(2):  # two transactions, three stock operations each
            with erp_db.tenant_session(tenant.id) as s:
                inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2, hooks=hooks)
                res = inv.reserve(s, "TEA", 3, warehouse="WH1", hooks=hooks)
                inv.complete(s, res.move_ids, hooks=hooks)
    finally:
        event.remove(erp_db.engine, "before_cursor_execute", count)
    assert len(locks) == 2
    with erp_db.tenant_session(tenant.id) as s:
        assert level(s, "TEA") == (D(14), D(0), D(14))


def test_a_stock_change_batch_reports_once_at_its_end(s, wh, hooks, rec):
    inv.create_warehouse(s, code="WH2", name="Second")
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2, hooks=hooks)
    inv.receive(s, "TEA", 10, warehouse="WH2", unit_cost=2, hooks=hooks)
    inv.receive(s, "RICE", 10, warehouse="WH1", unit_cost=1, hooks=hooks)
    rec.clear()
    with inv.stock_change_batch(s):
        inv.reserve(s, "TEA", 1, warehouse="WH1", hooks=hooks)
        with inv.stock_change_batch(s):  # nested: joins the outer one
            inv.reserve(s, "TEA", 2, warehouse="WH1", hooks=hooks)
        res = inv.reserve(s, "TEA", 3, warehouse="WH2", hooks=hooks)
        inv.reserve(s, "RICE", 4, warehouse="WH1", hooks=hooks)
        inv.complete(s, res.move_ids, hooks=hooks)
        assert rec.changed == []  # nothing reported inside the block
        assert len(rec.valued) == 1  # valuations still fire per call
    [changes] = rec.changed
    got = {(c.sku_code, c.warehouse_code): (c.on_hand, c.reserved) for c in changes}
    assert got == {
        ("RICE", "WH1"): (D(10), D(4)),
        ("TEA", "WH1"): (D(10), D(3)),
        ("TEA", "WH2"): (D(7), D(0)),
    }
    rec.clear()
    with pytest.raises(RuntimeError), inv.stock_change_batch(s):
        inv.reserve(s, "TEA", 1, warehouse="WH1", hooks=hooks)
        raise RuntimeError("abandoned")
    assert rec.changed == []
    inv.reserve(s, "TEA", 1, warehouse="WH1", hooks=hooks)  # no batch open any more
    assert len(rec.changed) == 1


def test_complete_carries_the_sale_dimensions_to_the_valuation(s, wh, hooks, rec):
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=3, hooks=hooks)
    res = inv.reserve(s, "TEA", 2, warehouse="WH1", hooks=hooks)
    with pytest.raises(InventoryError, match="unknown valuation dimension"):
        inv.complete(s, res.move_ids, hooks=hooks, dimensions={"colour": "red"})
    assert level(s, "TEA") == (D(5), D(2), D(3))
    rec.clear()
    inv.complete(
        s, res.move_ids, hooks=hooks, dimensions={"channel": "tmall", "store": "7", "order": "T1"}
    )
    [v] = rec.valued
    assert v.dimensions == {"channel": "tmall", "store": "7", "order": "T1"}


def test_one_completion_of_many_sales_values_each_on_its_own_dimensions(s, wh, hooks, rec):
    """Bulk shipping: the moves of several orders completed in one call, each order's cost of
    goods sold on its own dimensions, the moving average taken in move order, the same stock
    and values as completing them one by one."""
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=3, hooks=hooks)
    inv.receive(s, "RICE", 10, warehouse="WH1", unit_cost="1.5", hooks=hooks)
    sales: list[tuple[str, str, int | str]] = [
        ("T1", "TEA", 2),
        ("T2", "RICE", "2.5"),
        ("T3", "TEA", 3),
        ("T4", "TEA", 5),
    ]
    moves = {
        order: inv.reserve(s, sku, qty, warehouse="WH1", hooks=hooks).move_ids[0]
        for order, sku, qty in sales
    }
    with pytest.raises(InventoryError, match="unknown valuation dimension"):
        inv.complete(
            s, list(moves.values()), hooks=hooks, move_dimensions={moves["T1"]: {"x": "1"}}
        )
    with pytest.raises(InventoryError, match=f"dimensions for move {moves['T4']}, which is not"):
        inv.complete(s, [moves["T1"]], hooks=hooks, move_dimensions={moves["T4"]: {"order": "T4"}})
    assert level(s, "TEA") == (D(10), D(10), D(0))
    rec.clear()
    done = inv.complete(
        s,
        list(moves.values()),
        hooks=hooks,
        dimensions={"channel": "tmall"},
        move_dimensions={m: {"channel": "jd", "order": o} for o, m in moves.items() if o != "T3"},
    )
    assert [m.state for m in done] == ["done"] * 4
    assert [(v.move_id, v.sku_code, v.value, v.dimensions) for v in rec.valued] == [
        (moves["T1"], "TEA", D("6"), {"channel": "jd", "order": "T1"}),
        (moves["T2"], "RICE", D("3.75"), {"channel": "jd", "order": "T2"}),
        (moves["T3"], "TEA", D("9"), {"channel": "tmall"}),
        (moves["T4"], "TEA", D("15"), {"channel": "jd", "order": "T4"}),
    ]
    assert level(s, "TEA") == (D(0), D(0), D(0)) and level(s, "RICE") == (D("7.5"), D(0), D("7.5"))
    assert [(m.unit_cost, m.value) for m in done] == [
        (D(3), D(6)),
        (D("1.5"), D("3.75")),
        (D(3), D(9)),
        (D(3), D(15)),
    ]
    assert not invariant_violations(s)


def test_shortage_reserves_nothing_unless_partial(s, wh):
    inv.receive(s, "TEA", 3, to_location="WH1/A/01", unit_cost=1)
    inv.receive(s, "TEA", 2, to_location="WH1/A/02", unit_cost=1)
    before = inv_rows(s)
    with pytest.raises(ShortageError) as err:
        inv.reserve(s, "TEA", 6, warehouse="WH1")
    assert (err.value.requested, err.value.available, err.value.shortage) == (D(6), D(5), D(1))
    assert "short by 1" in str(err.value)
    assert inv_rows(s) == before
    res = inv.reserve(s, "TEA", 6, warehouse="WH1", allow_partial=True)
    assert (res.reserved, res.shortage) == (D(5), D(1))
    assert sorted(ln.quantity for ln in res.lines) == [D(2), D(3)]
    assert level(s, "TEA") == (D(5), D(5), D(0))
    with pytest.raises(ShortageError):
        inv.reserve(s, "TEA", 1, warehouse="WH1")
    partial = inv.reserve(s, "TEA", 1, warehouse="WH1", allow_partial=True)
    assert partial.reserved == 0 and partial.lines == ()
    inv.cancel(s, res.move_ids)
    assert level(s, "TEA") == (D(5), D(0), D(5))


def test_fifo_spreads_over_quants_oldest_first(s, wh):
    inv.receive(s, "TEA", 2, to_location="WH1/A/02", unit_cost=1)
    inv.receive(s, "TEA", 10, to_location="WH1/A/01", unit_cost=1)
    res = inv.reserve(s, "TEA", 3, warehouse="WH1")
    assert [(inv.get_location(s, ln.location_id).path, ln.quantity) for ln in res.lines] == [
        ("WH1/A/02", D(2)),
        ("WH1/A/01", D(1)),
    ]
    res = inv.reserve(s, "TEA", 1, warehouse="WH1")
    assert [inv.get_location(s, ln.location_id).path for ln in res.lines] == ["WH1/A/01"]


def test_reserve_from_a_location_takes_its_subtree_only(s, wh):
    inv.receive(s, "TEA", 3, to_location="WH1/A/01", unit_cost=1)
    inv.receive(s, "TEA", 7, warehouse="WH1", unit_cost=1)
    res = inv.reserve(s, "TEA", 3, location="WH1/A")
    assert [inv.get_location(s, ln.location_id).path for ln in res.lines] == ["WH1/A/01"]
    with pytest.raises(ShortageError, match="in WH1/A:"):
        inv.reserve(s, "TEA", 1, location="WH1/A")


def test_reservation_errors_store_nothing(s, wh):
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="OLD", expiry=date(2001, 1, 1))
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="NEW", expiry=date(2099, 1, 1))
    inv.create_sku(s, code="OTHER", name="Other", tracking="lot")
    inv.receive(s, "OTHER", 1, warehouse="WH1", unit_cost=1, lot="X1")
    before = inv_rows(s)
    cases: list[tuple[Any, type[Exception], str]] = [
        (lambda: inv.reserve(s, "TEA", 0, warehouse="WH1"), InventoryError, "positive"),
        (lambda: inv.reserve(s, "TEA", -2, warehouse="WH1"), InventoryError, "positive"),
        (lambda: inv.reserve(s, "TEA", 1), InventoryError, "either a warehouse"),
        (lambda: inv.reserve(s, "TEA", 1, warehouse="NOPE"), InventoryError, "unknown warehouse"),
        (lambda: inv.reserve(s, "TEA", 1, location="@customer"), InventoryError, "not @customer"),
        (
            lambda: inv.reserve(s, "TEA", 1, warehouse="WH1", strategy="lifo"),  # type: ignore[arg-type]
            InventoryError,
            "lifo",
        ),
        (lambda: inv.reserve(s, "TEA", 1, warehouse="WH1", lot="L"), InventoryError, "not tracked"),
        (lambda: inv.reserve(s, "MILK", 1, warehouse="WH1", lot="X1"), InventoryError, "OTHER"),
        (
            lambda: inv.reserve(s, "MILK", 1, warehouse="WH1", lot="NONE"),
            InventoryError,
            "unknown lot",
        ),
        (lambda: inv.reserve(s, "MILK", 1, warehouse="WH1", lot="OLD"), InventoryError, "expired"),
        (lambda: inv.reserve(s, "MILK", 6, warehouse="WH1"), ShortageError, "available 5"),
        (lambda: inv.reserve(s, "TEA", 6, warehouse="WH1"), ShortageError, "short by 1"),
        (
            lambda: inv.reserve(s, "TEA", 1, warehouse="WH1", to_location="WH1"),
            InventoryError,
            "view",
        ),
    ]
    for call, exc, message in cases:
        with pytest.raises(exc, match=message):
            call()
        assert inv_rows(s) == before, message


def test_fifo_takes_the_oldest_stock_and_fefo_the_earliest_expiry(s, wh):
    # received in this order: late expiry first, then early expiry, then no expiry
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="LATE", expiry=date(2099, 6, 1))
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="EARLY", expiry=date(2098, 1, 1))
    inv.create_sku(s, code="SALT", name="Salt", tracking="lot")
    inv.receive(s, "SALT", 1, warehouse="WH1", unit_cost=1, lot="S-NOEXP")
    inv.receive(s, "SALT", 1, warehouse="WH1", unit_cost=1, lot="S-EXP", expiry=date(2099, 1, 1))
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="GONE", expiry=date(2000, 1, 1))

    def lots(res: Any) -> list[tuple[str, Decimal]]:
        return [(s.get(Lot, ln.lot_id).code, ln.quantity) for ln in res.lines]

    assert lots(inv.reserve(s, "MILK", 7, warehouse="WH1", strategy="fifo")) == [
        ("LATE", D(5)),
        ("EARLY", D(2)),
    ]
    # FEFO: the earliest expiry that has not passed; the expired lot is never taken
    assert lots(inv.reserve(s, "MILK", 3, warehouse="WH1", strategy="fefo")) == [("EARLY", D(3))]
    with pytest.raises(ShortageError):
        inv.reserve(s, "MILK", 1, warehouse="WH1", strategy="fefo")
    # lots without expiry come last in FEFO
    assert lots(inv.reserve(s, "SALT", 2, warehouse="WH1", strategy="fefo")) == [
        ("S-EXP", D(1)),
        ("S-NOEXP", D(1)),
    ]


def test_draft_move_over_several_bins_is_split_when_reserved(s, wh, hooks, rec):
    inv.receive(s, "RICE", "1.5", to_location="WH1/A/01", unit_cost=4, hooks=hooks)
    inv.receive(s, "RICE", "2.25", to_location="WH1/A/02", unit_cost=8, hooks=hooks)
    assert inv.valuation_of(s, "RICE") == (D("3.75"), D(24), D("6.4"))
    move = inv.create_move(s, "RICE", "3", from_location="WH1", to_location="@customer")
    assert move.state == "draft"
    rec.clear()
    done = inv.complete(s, move.id, hooks=hooks)
    assert [(inv.get_location(s, m.from_location_id).path, m.quantity) for m in done] == [
        ("WH1/A/01", D("1.5")),
        ("WH1/A/02", D("1.5")),
    ]
    assert done[1].origin_move_id == move.id
    assert [v.value for v in rec.valued] == [D("9.6"), D("9.6")]
    assert inv.valuation_of(s, "RICE") == (D("0.75"), D("4.8"), D("6.4"))
    # the last units out take the value that is left
    [last] = inv.complete(
        s, inv.create_move(s, "RICE", "0.75", from_location="WH1", to_location="@customer")
    )
    assert last.value == D("4.8") and inv.valuation_of(s, "RICE") == (D(0), D(0), D("6.4"))


def test_partial_reservation_of_a_draft_move_leaves_a_draft_for_the_rest(s, wh):
    inv.receive(s, "TEA", 2, warehouse="WH1", unit_cost=1)
    move = inv.create_move(s, "TEA", 5, from_location="WH1/STOCK", to_location="@customer")
    with pytest.raises(ShortageError):
        inv.reserve_move(s, move.id)
    assert inv.get_move(s, move.id).state == "draft"
    [reserved] = inv.reserve_move(s, move.id, allow_partial=True)
    assert (reserved.quantity, reserved.state) == (D(2), "reserved")
    rest = s.scalar(select(Move).where(Move.origin_move_id == move.id))
    assert (rest.quantity, rest.state) == (D(3), "draft")
    with pytest.raises(InventoryConflict, match="only a draft"):
        inv.reserve_move(s, move.id)


def test_move_errors_store_nothing(s, wh):
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
    done = inv.create_move(s, "TEA", 1, from_location="WH1/STOCK", to_location="WH1/A/01")
    inv.complete(s, done)
    before = inv_rows(s)
    cases: list[tuple[Any, str]] = [
        (
            lambda: inv.create_move(
                s, "TEA", 1, from_location="@supplier", to_location="@customer"
            ),
            "does not touch own stock",
        ),
        (
            lambda: inv.create_move(
                s, "TEA", 1, from_location="WH1/STOCK", to_location="WH1/STOCK"
            ),
            "two different",
        ),
        (
            lambda: inv.create_move(
                s, "TEA", 1, from_location="@supplier", to_location="WH1/STOCK"
            ),
            "needs the unit_cost",
        ),
        (
            lambda: inv.create_move(
                s, "TEA", 1, from_location="WH1/STOCK", to_location="@customer", unit_cost=1
            ),
            "only for moves from a supplier",
        ),
        (
            lambda: inv.create_move(
                s, "MILK", 1, from_location="@supplier", to_location="WH1/STOCK", unit_cost=1
            ),
            "give the lot",
        ),
        (lambda: inv.complete(s, 10**12), "unknown move"),
        (lambda: inv.complete(s, done.id), "done already"),
        (lambda: inv.cancel(s, done.id), "cannot be cancelled"),
        (
            lambda: inv.complete(
                s, inv.create_move(s, "TEA", 9, from_location="WH1", to_location="@customer").id
            ),
            "short by 4",
        ),
        (lambda: inv.complete(s, []), "no moves"),
    ]
    for call, message in cases:
        snapshot = inv_rows(s)
        with pytest.raises(InventoryError, match=message):
            call()
        if message != "short by 4":  # that case created a draft move before completing it
            assert inv_rows(s) == snapshot, message
    assert len(inv_rows(s)["inv_move"]) == len(before["inv_move"]) + 1


def test_cancel_gives_reserved_stock_back(s, wh):
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
    res = inv.reserve(s, "TEA", 5, warehouse="WH1")
    draft = inv.create_move(s, "TEA", 1, from_location="WH1/STOCK", to_location="@customer")
    cancelled = inv.cancel(s, [*res.move_ids, draft.id])
    assert {m.state for m in cancelled} == {"cancelled"}
    assert level(s, "TEA") == (D(5), D(0), D(5))
    inv.cancel(s, draft.id)  # cancelling again does nothing
    with pytest.raises(InventoryConflict, match="cancelled already"):
        inv.complete(s, draft.id)


# --- serial numbers --------------------------------------------------------------------------


def test_serial_number_is_traced_through_every_move(s, wh, erp_db, make_tenant):
    inv.create_warehouse(s, code="WH2", name="South")
    inv.receive(s, "PHONE", 3, warehouse="WH1", unit_cost=500, serials=["S1", "S2", "S3"])
    t = inv.transfer(s, "PHONE", 1, from_warehouse="WH1", to_warehouse="WH2", serials=["S2"])
    inv.complete(s, t.incoming)
    res = inv.reserve(s, "PHONE", 1, warehouse="WH2")
    inv.complete(s, res.move_ids)
    inv.receive(s, "PHONE", 1, warehouse="WH1", from_location="@customer", serials=["S2"])
    history = inv.serial_history(s, "PHONE", "S2")
    path = [
        (inv.get_location(s, m.from_location_id).path, inv.get_location(s, m.to_location_id).path)
        for m in history
    ]
    assert path == [
        ("@supplier", "WH1/STOCK"),
        ("WH1/STOCK", "@transit"),
        ("@transit", "WH2/STOCK"),
        ("WH2/STOCK", "@customer"),
        ("@customer", "WH1/STOCK"),
    ]
    assert all(m.quantity == 1 and m.state == "done" for m in history)
    # each serial number is one unit in one place
    levels = inv.stock_levels(s, sku="PHONE", group_by="lot")
    assert sorted((x.lot_code, x.location_path, x.on_hand) for x in levels) == [
        ("S1", "WH1/STOCK", D(1)),
        ("S2", "WH1/STOCK", D(1)),
        ("S3", "WH1/STOCK", D(1)),
    ]
    with pytest.raises(InventoryError, match="serial number"):
        inv.serial_history(s, "TEA", "S2")


def test_serial_moves_are_one_unit_each(s, wh):
    inv.receive(s, "PHONE", 2, warehouse="WH1", unit_cost=1, serials=["A1", "A2"])
    res = inv.reserve(s, "PHONE", 2, warehouse="WH1")
    assert [ln.quantity for ln in res.lines] == [D(1), D(1)]
    before = inv_rows(s)
    with pytest.raises(InventoryError, match="2 serial number"):
        inv.reserve(s, "PHONE", 1, warehouse="WH1", serials=["A1", "A2"])
    with pytest.raises(ShortageError):
        inv.reserve(s, "PHONE", 1, warehouse="WH1", serials=["A1"])  # already reserved
    with pytest.raises(InventoryError, match="one unit"):
        inv.create_move(s, "PHONE", 2, from_location="@customer", to_location="WH1/STOCK", lot="A1")
    assert inv_rows(s) == before


# --- transfers -------------------------------------------------------------------------------


def test_transfer_between_warehouses_goes_through_transit(s, wh, hooks, rec):
    inv.create_warehouse(s, code="WH2", name="South")
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=3, hooks=hooks)
    rec.clear()
    t = inv.transfer(s, "TEA", 4, from_warehouse="WH1", to_warehouse="WH2", hooks=hooks)
    [out] = [inv.get_move(s, i) for i in t.outgoing]
    [inc] = [inv.get_move(s, i) for i in t.incoming]
    assert out.state == "done" and inv.get_location(s, out.to_location_id).path == "@transit"
    assert inc.state == "reserved" and inc.origin_move_id == out.id
    assert level(s, "TEA", warehouse="WH1") == (D(6), D(0), D(6))
    assert level(s, "TEA", warehouse="WH2") == (D(0), D(0), D(0))
    [in_transit] = inv.stock_levels(s, sku="TEA", location="@transit", group_by="location")
    assert (in_transit.on_hand, in_transit.reserved) == (D(4), D(4))
    assert rec.valued == []  # transfers are not valued
    assert [(c.warehouse_code, c.on_hand) for c in rec.changed[-1]] == [("WH1", D(6))]
    inv.complete(s, t.incoming, hooks=hooks)
    assert level(s, "TEA", warehouse="WH2") == (D(4), D(0), D(4))
    assert inv.stock_levels(s, sku="TEA", location="@transit") == []
    assert inv.valuation_of(s, "TEA") == (D(10), D(30), D(3))
    assert rec.valued == []
    # within one warehouse: a single done move
    t2 = inv.transfer(s, "TEA", 2, from_warehouse="WH1", to_location="WH1/A/01")
    assert len(t2.outgoing) == 1 and t2.incoming == ()
    assert level(s, "TEA", location="WH1/A/01") == (D(2), D(0), D(2))
    # receive at once
    t3 = inv.transfer(s, "TEA", 1, from_location="WH1/A/01", to_warehouse="WH2", receive_now=True)
    assert inv.get_move(s, t3.incoming[0]).state == "done"
    before = inv_rows(s)
    with pytest.raises(ShortageError):
        inv.transfer(s, "TEA", 99, from_warehouse="WH1", to_warehouse="WH2")
    with pytest.raises(InventoryError, match="ends in a warehouse"):
        inv.transfer(s, "TEA", 1, from_warehouse="WH1", to_location="@scrap")
    assert inv_rows(s) == before


# --- counts and scrap ------------------------------------------------------------------------


def test_count_books_gains_and_losses_at_the_average_cost(s, wh, hooks, rec):
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2, hooks=hooks)
    inv.receive(s, "TEA", 10, to_location="WH1/A/01", unit_cost=4, hooks=hooks)
    inv.receive(s, "MILK", 5, warehouse="WH1", unit_cost=1, lot="L1", expiry=date(2099, 1, 1))
    rec.clear()
    res = inv.count(
        s,
        "WH1",
        [
            CountLine(sku="TEA", counted=7),  # STOCK: 10 -> 7
            CountLine(sku="TEA", location="A/01", counted="12"),  # 10 -> 12
            CountLine(sku="MILK", lot="L1", counted=5),  # unchanged
            CountLine(sku="RICE", location="WH1/A/02", counted="0.5"),  # nothing booked -> 0.5
        ],
        hooks=hooks,
    )
    assert [(c.location_path, c.expected, c.counted, c.difference) for c in res.lines] == [
        ("WH1/STOCK", D(10), D(7), D(-3)),
        ("WH1/A/01", D(10), D(12), D(2)),
        ("WH1/STOCK", D(5), D(5), D(0)),
        ("WH1/A/02", D(0), D("0.5"), D("0.5")),
    ]
    assert (res.gains, res.losses) == (D("2.5"), D(3))
    assert res.lines[2].move_id is None
    # average TEA 3: loss 3 x 3 = 9, gain 2 x 3 = 6; RICE has no cost yet: 0, not reported
    assert [(v.kind, v.sku_code, v.quantity, v.value) for v in rec.valued] == [
        ("adjustment_loss", "TEA", D(3), D(9)),
        ("adjustment_gain", "TEA", D(2), D(6)),
    ]
    assert inv.valuation_of(s, "TEA") == (D(19), D(57), D(3))
    assert level(s, "TEA") == (D(19), D(0), D(19))
    assert len(rec.changed) == 1  # one hook call for the whole count
    assert sorted((c.sku_code, c.on_hand) for c in rec.changed[0]) == [
        ("RICE", D("0.5")),
        ("TEA", D(19)),
    ]


def test_count_errors_store_nothing(s, wh):
    inv.receive(s, "TEA", 10, warehouse="WH1", unit_cost=2)
    inv.receive(s, "PHONE", 1, warehouse="WH1", unit_cost=2, serials=["P1"])
    inv.create_warehouse(s, code="WH2", name="South")
    inv.reserve(s, "TEA", 8, warehouse="WH1")
    before = inv_rows(s)
    cases: list[tuple[list[CountLine], str]] = [
        ([], "at least one line"),
        ([CountLine(sku="TEA", counted=5)], "8 are reserved"),
        ([CountLine(sku="TEA", counted=-1)], "zero or more"),
        ([CountLine(sku="NOPE", counted=1)], "line 1: unknown SKU"),
        ([CountLine(sku="TEA", counted=9), CountLine(sku="TEA", counted=9)], "counted twice"),
        ([CountLine(sku="TEA", counted=1, location="WH2/STOCK")], "not in warehouse WH1"),
        ([CountLine(sku="TEA", counted=1, location="WH1")], "view location"),
        ([CountLine(sku="TEA", counted=1, lot="L")], "not tracked"),
        ([CountLine(sku="MILK", counted=1)], "give the lot"),
        ([CountLine(sku="PHONE", counted=2, lot="P1")], "count 0 or 1"),
        ([CountLine(sku="PHONE", counted=1, lot="P1", location="A/01")], "already in stock"),
        ([CountLine(sku="TEA", counted=9), CountLine(sku="RICE", counted="0.00001")], "line 2"),
    ]
    for lines, message in cases:
        with pytest.raises(InventoryError, match=message):
            inv.count(s, "WH1", lines)
        assert inv_rows(s) == before, message


def test_scrap_writes_off_unreserved_stock_even_expired(s, wh, hooks, rec):
    inv.receive(s, "MILK", 4, warehouse="WH1", unit_cost="1.5", lot="OLD", expiry=date(2001, 1, 1))
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=2)
    inv.reserve(s, "TEA", 4, warehouse="WH1")
    rec.clear()
    [m] = inv.scrap(s, "MILK", 4, location="WH1/STOCK", lot="OLD", hooks=hooks)
    assert inv.get_location(s, m.to_location_id).path == "@scrap" and m.state == "done"
    [v] = rec.valued
    assert (v.kind, v.value, v.unit_cost) == ("scrap", D(6), D("1.5"))
    before = inv_rows(s)
    with pytest.raises(ShortageError):
        inv.scrap(s, "TEA", 2, location="WH1/STOCK")  # 4 of 5 are reserved
    with pytest.raises(InventoryError, match="give the lot"):
        inv.scrap(s, "MILK", 1, location="WH1/STOCK")
    with pytest.raises(InventoryError, match="warehouse stock location"):
        inv.scrap(s, "TEA", 1, location="WH1")
    assert inv_rows(s) == before


# --- hooks, idempotency, tenancy --------------------------------------------------------------


def test_a_failing_hook_undoes_the_whole_operation(s, wh, erp_registry, hooks):
    from erp_core.plugins.hookspecs import hookimpl

    class Refuse:
        @hookimpl
        def erp_stock_valued(self, session: Any, tenant_id: int, valuations: Any) -> None:
            raise RuntimeError("the books are closed")

        @hookimpl
        def erp_stock_changed(self, session: Any, tenant_id: int, changes: Any) -> None:
            if any(c.reserved for c in changes):
                raise RuntimeError("no reservations today")

    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
    before = inv_rows(s)
    refuse = Refuse()
    erp_registry.pm.register(refuse, name="test:refuse")
    try:
        with pytest.raises(RuntimeError, match="books are closed"):
            inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1, hooks=hooks)
        with pytest.raises(RuntimeError, match="no reservations"):
            inv.reserve(s, "TEA", 1, warehouse="WH1", hooks=hooks)
        assert inv_rows(s) == before
    finally:
        erp_registry.pm.unregister(refuse)


def test_reservation_is_idempotent(s, wh):
    inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
    a = inv.reserve(s, "TEA", 2, warehouse="WH1", idempotency_key="SO-9:1")
    b = inv.reserve(s, "TEA", 2, warehouse="WH1", idempotency_key="SO-9:1")
    assert a.move_ids == b.move_ids and b.reserved == 2
    assert level(s, "TEA") == (D(5), D(2), D(3))


def test_other_tenants_stock_is_invisible(erp_db, make_tenant, erp_registry):
    a, b = make_tenant("acme"), make_tenant("bolt")
    with erp_db.tenant_session(a.id) as s:
        inv.create_warehouse(s, code="WH1", name="A")
        inv.create_sku(s, code="TEA", name="Tea")
        [m] = inv.receive(s, "TEA", 5, warehouse="WH1", unit_cost=1)
        a_move, a_sku = m.id, m.sku_id
    with erp_db.tenant_session(b.id) as s:
        with pytest.raises(InventoryError, match="unknown SKU"):
            inv.reserve(s, "TEA", 1, warehouse="WH1")
        with pytest.raises(InventoryError, match="unknown SKU"):
            inv.get_sku(s, a_sku)
        with pytest.raises(InventoryError, match="unknown move"):
            inv.cancel(s, a_move)
        inv.create_warehouse(s, code="WH1", name="B")
        inv.create_sku(s, code="TEA", name="Tea")
        with pytest.raises(ShortageError):
            inv.reserve(s, "TEA", 1, warehouse="WH1")
        assert inv.stock_levels(s) == []
    with erp_db.tenant_session(a.id) as s:
        assert level(s, "TEA") == (D(5), D(0), D(5))


def test_kernel_hooks_post_the_valuation_to_the_ledger(s, wh, erp_registry):
    """With the kernel's own hooks, the ledger's built-in posts an entry per valued move."""
    from erp_core.ledger.models import JournalEntry as entry_model

    kernel = erp_registry.hooks_for(())
    [m] = inv.receive(s, "TEA", 4, warehouse="WH1", unit_cost="2.5", hooks=kernel)
    res = inv.reserve(s, "TEA", 1, warehouse="WH1", hooks=kernel)
    [out] = inv.complete(s, res.move_ids, hooks=kernel)
    entries = list(s.scalars(select(entry_model)))
    assert len(entries) == 2
    refs = " ".join(str(vars(e)) for e in entries)
    assert str(m.id) in refs and str(out.id) in refs


def test_virtual_locations_are_created_lazily_for_older_tenants(erp_db):
    from sqlalchemy import func

    from erp_core.inventory.models import Location
    from erp_core.tenancy.service import create_tenant

    with erp_db.session() as s, s.begin():
        tid = create_tenant(s, "older", "Older").id  # no registry: no erp_tenant_created
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(func.count()).select_from(Location)) == 0
        inv.create_sku(s, code="X", name="X")
        inv.create_warehouse(s, code="W", name="W")
        [m] = inv.receive(s, "X", 2, warehouse="W", unit_cost=1)
        assert inv.get_location(s, m.from_location_id).path == "@supplier"
        res = inv.reserve(s, "X", 1, warehouse="W")
        assert inv.get_location(s, inv.get_move(s, res.move_ids[0]).to_location_id).path == (
            "@customer"
        )
        assert s.scalar(select(func.count()).select_from(Location)) == 7
