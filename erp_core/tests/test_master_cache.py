"""Master data kept across transactions (``erp_core.db.cache``): taken while the tenant's data
epoch stands, read again after any committed write, never seen across tenants, never filled
with what a transaction has not committed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from erp_core.db import cache
from erp_core.db.session import Database
from erp_core.inventory import service as inv
from erp_core.inventory.models import Sku
from erp_core.tenancy.models import Tenant


class Loader:
    """Loads the tenant's SKU names (code -> name) and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, s: Session) -> Callable[[], tuple[tuple[str, str], ...]]:
        def load() -> tuple[tuple[str, str], ...]:
            self.calls += 1
            return tuple(sorted((c, n) for c, n in s.execute(select(Sku.code, Sku.name))))

        return load

    def read(self, db: Database, tid: int) -> dict[str, str]:
        with db.tenant_session(tid) as s:
            return dict(cache.cached(s, "test.sku_names", self(s)))


def direct(db: Database, tid: int) -> dict[str, str]:
    with db.tenant_session(tid) as s:
        return {c: n for c, n in s.execute(select(Sku.code, Sku.name))}


def epoch(db: Database, tid: int) -> int:
    with db.system_session() as s:
        return int(s.scalar(select(Tenant.data_epoch).where(Tenant.id == tid)) or 0)


@pytest.fixture
def two(erp_db: Database, make_tenant: Any) -> tuple[int, int]:
    a, b = make_tenant("cache-a").id, make_tenant("cache-b").id
    for tid, name in ((a, "A's"), (b, "B's")):
        with erp_db.tenant_session(tid) as s:
            inv.create_sku(s, code="S1", name=name)
    return a, b


def test_kept_across_transactions_until_a_committed_write(erp_db: Database, two: Any) -> None:
    a, _ = two
    load = Loader()
    assert load.read(erp_db, a) == {"S1": "A's"}
    assert load.read(erp_db, a) == {"S1": "A's"}
    assert load.calls == 1
    with erp_db.tenant_session(a) as s:
        s.scalars(select(Sku)).one().name = "renamed"
    assert load.read(erp_db, a) == {"S1": "renamed"}
    assert load.calls == 2
    assert load.read(erp_db, a) == {"S1": "renamed"}
    assert load.calls == 2


def test_tenants_never_share_a_value_nor_invalidate_each_other(erp_db: Database, two: Any) -> None:
    a, b = two
    load = Loader()
    assert load.read(erp_db, a) == {"S1": "A's"}
    assert load.read(erp_db, b) == {"S1": "B's"}
    before = epoch(erp_db, b)
    with erp_db.tenant_session(a) as s:
        inv.create_sku(s, code="S2", name="new")
    assert epoch(erp_db, b) == before
    assert load.read(erp_db, b) == {"S1": "B's"}
    assert load.calls == 2  # B's value still stands
    assert load.read(erp_db, a) == {"S1": "A's", "S2": "new"}


def test_a_writing_transaction_sees_its_own_change_and_keeps_nothing(
    erp_db: Database, two: Any
) -> None:
    a, _ = two
    load = Loader()
    assert load.read(erp_db, a) == {"S1": "A's"}
    s = erp_db.session(a)
    with s.begin():
        s.scalars(select(Sku)).one().name = "uncommitted"  # pending: flushed by cached()
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "uncommitted"}
        s.rollback()
    s.close()
    assert load.read(erp_db, a) == {"S1": "A's"}  # the rolled-back value was never kept
    assert load.calls == 2


def test_pending_rows_that_are_not_master_data_wait_for_the_next_flush(
    erp_db: Database, two: Any
) -> None:
    """Asking the cache flushes pending master data only: a pending row of another kind
    stays pending (one flush later takes it with the rest), and the kept value is served."""
    from erp_core.inventory.models import Lot

    a, _ = two
    load = Loader()
    assert load.read(erp_db, a) == {"S1": "A's"}
    with erp_db.tenant_session(a) as s:
        sku = s.scalars(select(Sku)).one()
        lot = Lot(sku_id=sku.id, code="L1")
        s.add(lot)
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "A's"}
        assert load.calls == 1 and lot in s.new
        sku.name = "pending"  # master data now pending too: flushed, and read afresh
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "pending"}
        assert load.calls == 2 and lot not in s.new


def test_an_undone_write_leaves_nothing_for_the_next_epoch(erp_db: Database, two: Any) -> None:
    """A rolled-back writer read its own change at the epoch it bumped to; the next committed
    writer bumps to that same number. Its readers must get its value, not the undone one."""
    a, _ = two
    load = Loader()
    s = erp_db.session(a)
    with s.begin():
        s.scalars(select(Sku)).one().name = "undone"
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "undone"}
        s.rollback()
    s.close()
    with erp_db.tenant_session(a) as s:
        s.scalars(select(Sku)).one().name = "done"
    assert load.read(erp_db, a) == {"S1": "done"}


def test_bulk_statements_through_the_session_bump_the_epoch(erp_db: Database, two: Any) -> None:
    a, _ = two
    load = Loader()
    load.read(erp_db, a)
    with erp_db.tenant_session(a) as s:
        s.execute(update(Sku).values(name="bulk"))
    assert load.read(erp_db, a) == {"S1": "bulk"}


def test_a_statement_that_may_reach_every_tenant_bumps_every_tenant(
    erp_db: Database, two: Any
) -> None:
    a, b = two
    before = epoch(erp_db, a), epoch(erp_db, b)
    with erp_db.tenant_session(a) as s:
        s.execute(
            update(Sku).where(Sku.code == "none").values(name="x"),
            execution_options={"erp_all_tenants": True},
        )
    assert epoch(erp_db, a) == before[0] + 1
    assert epoch(erp_db, b) == before[1] + 1


def test_one_bump_per_transaction_and_again_after_a_savepoint_rollback(
    erp_db: Database, two: Any
) -> None:
    a, _ = two
    e0 = epoch(erp_db, a)
    with erp_db.tenant_session(a) as s:
        inv.create_sku(s, code="S2", name="x")
        inv.create_sku(s, code="S3", name="y")
    assert epoch(erp_db, a) == e0 + 1
    with erp_db.tenant_session(a) as s:
        with s.begin_nested() as sp:
            s.add(Sku(code="S4", name="z"))
            s.flush()
            sp.rollback()
        s.add(Sku(code="S5", name="w"))  # its bump must not count on the undone one
    assert epoch(erp_db, a) > e0 + 1


def test_a_loader_that_writes_is_not_kept(erp_db: Database, two: Any) -> None:
    a, _ = two
    calls = 0

    def read() -> str:
        nonlocal calls
        with erp_db.tenant_session(a) as s:

            def load() -> str:
                nonlocal calls
                calls += 1
                if s.scalar(select(Sku).where(Sku.code == "AUTO")) is None:
                    inv.create_sku(s, code="AUTO", name="made by the loader")
                return "value"

            return cache.cached(s, "test.writes", load)

    assert read() == "value"
    assert read() == "value"
    assert calls == 2  # the first value came from an uncommitted write: not kept


def test_another_engine_sees_the_change(erp_db: Database, two: Any) -> None:
    """Another process (here: another engine, with its own cache) writes; this one reads the
    new epoch in its next transaction."""
    a, _ = two
    load = Loader()
    load.read(erp_db, a)
    other = Database(str(erp_db.engine.url.render_as_string(hide_password=False)))
    other.registry = erp_db.registry
    try:
        with other.tenant_session(a) as s:
            s.scalars(select(Sku)).one().name = "elsewhere"
    finally:
        other.dispose()
    assert load.read(erp_db, a) == {"S1": "elsewhere"}


def test_new_tenants_start_at_unrelated_epochs(erp_db: Database, make_tenant: Any) -> None:
    epochs = {epoch(erp_db, make_tenant(f"ep-{i}").id) for i in range(4)}
    assert len(epochs) == 4


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("read"), st.sampled_from(["a", "b"])),
        st.tuples(
            st.sampled_from(["rename", "bulk", "add", "savepoint"]),
            st.sampled_from(["a", "b"]),
            st.booleans(),  # commit?
            st.booleans(),  # read the cache inside the writing transaction?
        ),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS)
def test_what_is_taken_from_the_cache_is_what_the_database_holds(
    erp_db: Database, two: Any, ops: list[Any]
) -> None:
    """Any sequence of committed and rolled-back writes (ORM, bulk, in undone savepoints),
    with reads between them: each cached read equals a direct read."""
    tids = dict(zip("ab", two, strict=True))
    load = Loader()
    n = 0
    for op in ops:
        tid = tids[op[1]]
        if op[0] == "read":
            assert load.read(erp_db, tid) == direct(erp_db, tid)
            continue
        kind, _, commit, inside = op
        n += 1
        s = erp_db.session(tid)
        with s.begin():
            load.read(erp_db, tid)  # another transaction fills the cache meanwhile
            if kind == "rename":
                s.scalars(select(Sku).where(Sku.code == "S1")).one().name = f"r{n}"
            elif kind == "bulk":
                s.execute(update(Sku).where(Sku.code == "S1").values(name=f"b{n}"))
            elif kind == "add":
                s.add(Sku(code=f"N{n}", name=f"n{n}"))
            else:
                with s.begin_nested() as sp:
                    s.add(Sku(code=f"U{n}", name="undone"))
                    s.flush()
                    sp.rollback()
                s.add(Sku(code=f"K{n}", name="kept"))
            if inside:
                mine = {c: n for c, n in s.execute(select(Sku.code, Sku.name))}
                assert dict(cache.cached(s, "test.sku_names", load(s))) == mine
            if not commit:
                s.rollback()
        s.close()
        for t in tids.values():
            assert load.read(erp_db, t) == direct(erp_db, t)
    with erp_db.system_session() as s:  # the next example starts from the two SKUs again
        s.execute(
            Sku.__table__.delete().where(Sku.code != "S1")  # type: ignore[attr-defined]
        )
        for tid, name in ((tids["a"], "A's"), (tids["b"], "B's")):
            s.execute(update(Sku).where(Sku.tenant_id == tid).values(name=name))


def test_kept_rows_stop_at_their_bound_and_reads_go_on(
    erp_db: Database, two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two
    monkeypatch.setattr(cache, "MAX_ROWS", 2)
    with erp_db.tenant_session(a) as s:
        ids = [inv.create_sku(s, code=f"M{i}", name=f"m{i}").id for i in range(3)]
    for _ in range(2):
        with erp_db.tenant_session(a) as s:
            assert [cache.kept_row(s, Sku, i).code for i in ids] == ["M0", "M1", "M2"]  # type: ignore[union-attr]
            kept: dict[Any, Any] = cache.cached(s, "erp.rows", dict)
            assert len(kept) == 2


def count_merges(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The objects merged into any session from now on."""
    merges: list[Any] = []
    real_merge = Session.merge

    def counting_merge(self: Session, obj: Any, **kw: Any) -> Any:
        merges.append(obj)
        return real_merge(self, obj, **kw)

    monkeypatch.setattr(Session, "merge", counting_merge)
    return merges


def test_a_kept_row_is_merged_once_a_transaction_even_when_let_go(
    erp_db: Database, two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    a, _ = two
    with erp_db.tenant_session(a) as s:
        sku_id = s.scalars(select(Sku.id).where(Sku.code == "S1")).one()
        assert cache.kept_row(s, Sku, sku_id) is not None  # read, and kept for later ones
    merges = count_merges(monkeypatch)
    for _ in range(2):
        with erp_db.tenant_session(a) as s:
            for _ in range(3):
                # the caller keeps no reference: the identity map alone would drop the row
                assert cache.kept_row(s, Sku, sku_id).name == "A's"  # type: ignore[union-attr]
                gc.collect()
    assert len(merges) == 2  # once in each transaction


def test_a_kept_copy_is_read_without_a_query_and_never_joins_the_session(
    erp_db: Database, two: Any
) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import object_session

    a, b = two
    with erp_db.tenant_session(a) as s:
        sku_id = s.scalars(select(Sku.id).where(Sku.code == "S1")).one()
        assert cache.kept_copy(s, Sku, sku_id) is None  # nothing kept yet, nothing held
        held = cache.kept_row(s, Sku, sku_id)
        assert cache.kept_copy(s, Sku, sku_id) is held  # the session's own object first
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with erp_db.tenant_session(a) as s:
        s.connection()  # (the epochs' query, before counting)
        cache.tenant_epochs(s, a)
        event.listen(erp_db.engine, "before_cursor_execute", count)
        try:
            copy = cache.kept_copy(s, Sku, sku_id)
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", count)
        assert copy is not None and (copy.code, copy.name) == ("S1", "A's")
        assert statements == []
        assert object_session(copy) is None and copy not in s
        assert not [o for o in s.identity_map.values() if isinstance(o, Sku)]
    with erp_db.tenant_session(b) as s:  # another tenant's copies are not this one's
        assert cache.kept_copy(s, Sku, sku_id) is None
    with erp_db.tenant_session(a) as s:  # a transaction that wrote master data reads anew
        inv.create_sku(s, code="S2", name="two")
        assert cache.kept_copy(s, Sku, sku_id) is None
        row = s.get(Sku, sku_id)
        assert row is not None
        s.expire(row)  # an expired object: the row may have changed, read it again
        assert cache.kept_copy(s, Sku, sku_id) is None


def test_stock_calls_read_kept_copies_and_merge_no_row(
    erp_db: Database, two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reserving and completing read their master data (SKU, warehouse, locations, tenant) from
    kept copies: nothing merged into the session, the same stock as before."""
    a, _ = two
    with erp_db.tenant_session(a) as s:
        wh = inv.create_warehouse(s, code="W1", name="one")
        inv.receive(s, "S1", 10, warehouse=wh.id, unit_cost="2.00")
        sku_id = inv.get_sku(s, "S1").id
        wh_id = wh.id
    for _ in range(2):  # the first transactions read and keep the rows
        with erp_db.tenant_session(a) as s:
            r = inv.reserve_many(s, [inv.ReserveRequest(sku_id, 1, wh_id, group=1)])
            inv.complete(s, r.reservations[0].move_ids)  # type: ignore[union-attr]
    merges = count_merges(monkeypatch)
    with erp_db.tenant_session(a) as s:
        r = inv.reserve_many(s, [inv.ReserveRequest(sku_id, 3, wh_id, group=1)])
        inv.complete(s, r.reservations[0].move_ids)  # type: ignore[union-attr]
        assert merges == []
        [level] = inv.stock_levels(s, sku="S1", warehouse=wh_id)
        assert (level.on_hand, level.reserved) == (5, 0)


def test_later_calls_of_a_transaction_see_its_writes_and_its_tenant(
    erp_db: Database, two: Any
) -> None:
    """The calls after a transaction's first take a shorter path: a master-data write flushed
    in between (by the ORM or by a statement) and a change of the session's tenant still
    count."""
    from erp_core.db.session import bind_tenant

    a, b = two
    load = Loader()
    assert load.read(erp_db, a) == {"S1": "A's"}
    assert load.read(erp_db, b) == {"S1": "B's"}
    s = erp_db.session(a)
    with s.begin():
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "A's"}
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "A's"}
        assert load.calls == 2  # both from the cache
        s.scalars(select(Sku)).one().name = "flushed"
        s.flush()  # the session is clean again, its write recorded
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "flushed"}
        s.rollback()
    s.close()
    s = erp_db.session(a)
    with s.begin():
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "A's"}
        s.execute(update(Sku).values(name="by statement"))
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "by statement"}
        s.rollback()
    s.close()
    calls = load.calls
    s = erp_db.session(a)
    with s.begin():
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "A's"}
        bind_tenant(s, b)
        assert dict(cache.cached(s, "test.sku_names", load(s))) == {"S1": "B's"}
    s.close()
    assert load.calls == calls  # the first transaction's values, kept, for either tenant
    assert load.read(erp_db, a) == {"S1": "A's"}


def test_a_later_call_of_a_transaction_costs_no_statement(erp_db: Database, two: Any) -> None:
    from sqlalchemy import event

    a, _ = two
    load = Loader()
    load.read(erp_db, a)
    seen: list[str] = []
    with erp_db.tenant_session(a) as s:
        cache.cached(s, "test.sku_names", load(s))

        def count(*args: Any) -> None:
            seen.append(args[2])

        event.listen(erp_db.engine, "before_cursor_execute", count)
        try:
            for _ in range(5):
                cache.cached(s, "test.sku_names", load(s))
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", count)
    assert seen == [] and load.calls == 1
