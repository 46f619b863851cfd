"""``erp_core.db.direct.Direct`` reads and writes what ``connection.execute`` does."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, bindparam, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from erp_core.audit.models import AuditEvent
from erp_core.db.direct import Direct
from erp_core.db.session import GUC_KNOWN, Database

AUDIT = cast(Table, AuditEvent.__table__)
C = AUDIT.c
_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
_n = itertools.count()

#: rows of one tenant whose target is in a list, with a held list of outcomes
_BY_TARGETS = (
    select(C.id, C.at, C.target, C.details, C.outcome)
    .where(
        C.tenant_id == bindparam("tid"),
        C.target.in_(bindparam("targets", expanding=True)),
        C.outcome.in_(("ok", "denied")),
    )
    .order_by(C.id)
)
_RENAME = (
    update(AUDIT)
    .where(C.tenant_id == bindparam("tid"), C.target.in_(bindparam("targets", expanding=True)))
    .values(details=bindparam("details"), at=bindparam("at"))
)


def _seed(db: Database, make_tenant: Any, rows: list[dict[str, Any]]) -> int:
    tid = int(make_tenant(f"direct-{next(_n)}").id)
    with db.tenant_session(tid) as s:
        if rows:
            s.connection().execute(
                insert(AUDIT), [{**r, "tenant_id": tid, "action": "direct"} for r in rows]
            )
    return tid


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {
                "target": st.sampled_from(["a", "b", "c", "乙"]) | _texts,
                "outcome": st.sampled_from(["ok", "denied", "error"]),
                "details": st.dictionaries(_texts, st.integers() | _texts, max_size=3),
                "at": st.datetimes(
                    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)
                ).map(lambda d: d.replace(tzinfo=UTC)),
            }
        ),
        max_size=6,
    ),
    wanted=st.lists(st.sampled_from(["a", "b", "c", "乙", "none"]), max_size=5),
)
def test_rows_as_core_reads_them_for_lists_of_any_length(
    erp_db: Database, make_tenant: Any, rows: list[dict[str, Any]], wanted: list[str]
) -> None:
    tid = _seed(erp_db, make_tenant, rows)
    direct = Direct(_BY_TARGETS)
    with erp_db.tenant_session(tid) as s:
        conn = s.connection()
        params = {"tid": tid, "targets": wanted}
        want = [tuple(r) for r in conn.execute(_BY_TARGETS, params)]
        assert direct.rows(conn, params) == want
        assert direct.first(conn, params) == (want[0] if want else None)
        assert direct.scalars(conn, params) == [r[0] for r in want]
        assert [r.target for r in direct.rows(conn, params)] == [r[2] for r in want]
        # the values come back as the types make them: aware times, JSON as dicts
        assert all(r[1].tzinfo is not None and isinstance(r[3], dict) for r in want)


def test_writes_as_core_writes_them_and_counts_the_rows(erp_db: Database, make_tenant: Any) -> None:
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    rows: list[dict[str, Any]] = [
        {"target": t, "at": at, "details": {}} for t in ("a", "b", "b", "c")
    ]
    fast_tid, slow_tid = _seed(erp_db, make_tenant, rows), _seed(erp_db, make_tenant, rows)
    new: dict[str, Any] = {
        "details": {"k": ["v", 1]},
        "at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    with erp_db.tenant_session(fast_tid) as s:
        changed = Direct(_RENAME).run(
            s.connection(), {"tid": fast_tid, "targets": ["b", "c"], **new}
        )
        assert changed == 3
    with erp_db.tenant_session(slow_tid) as s:
        s.connection().execute(_RENAME, {"tid": slow_tid, "targets": ["b", "c"], **new})

    def stored(tid: int) -> list[tuple[Any, ...]]:
        with erp_db.tenant_session(tid) as s:
            q = select(C.target, C.at, C.details).where(C.tenant_id == tid).order_by(C.id)
            return [tuple(r) for r in s.execute(q)]

    assert stored(fast_tid) == stored(slow_tid)
    assert stored(fast_tid)[1][1:] == (new["at"], new["details"])


def test_many_lengths_and_an_empty_list(erp_db: Database, make_tenant: Any) -> None:
    tid = _seed(erp_db, make_tenant, [{"target": str(i), "outcome": "ok"} for i in range(80)])
    direct = Direct(_BY_TARGETS)
    with erp_db.tenant_session(tid) as s:
        conn = s.connection()
        for n in range(80):  # more shapes than are kept: the oldest are dropped and remade
            assert len(direct.rows(conn, {"tid": tid, "targets": [str(i) for i in range(n)]})) == n
        assert direct.rows(conn, {"tid": tid, "targets": []}) == []
        assert len(direct.rows(conn, {"tid": tid, "targets": ["1", "2"]})) == 2


def test_the_engines_listeners_see_it_and_errors_are_sqlalchemys(
    erp_db: Database, make_tenant: Any
) -> None:
    tid = _seed(erp_db, make_tenant, [{"target": "a"}])
    seen: list[str] = []

    def grab(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    counted = Direct(select(func.count()).select_from(AUDIT).where(C.tenant_id == bindparam("t")))
    every = {"action": "x", "actor": "", "ip": "", "target": "", "outcome": "ok", "details": {}}
    twin = Direct(
        insert(AUDIT).values(
            id=bindparam("id"), tenant_id=bindparam("t"), at=datetime.now(UTC), **every
        )
    )
    with erp_db.tenant_session(tid) as s:
        conn = s.connection()
        event.listen(erp_db.engine, "before_cursor_execute", grab)
        try:
            assert counted.scalars(conn, {"t": tid}) == [1]
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", grab)
        assert len(seen) == 1 and "count(*)" in seen[0]
        (one,) = s.execute(select(C.id).where(C.tenant_id == tid)).scalars()
        with pytest.raises(IntegrityError) as caught:
            twin.run(conn, {"id": one, "t": tid})
        assert "INSERT INTO core_audit_event" in str(caught.value.statement)
        assert conn.info[GUC_KNOWN] is None
        with pytest.raises(KeyError):  # a parameter not given is not taken as NULL
            counted.rows(conn, {})
        s.rollback()
    with erp_db.tenant_session(tid) as s:
        assert counted.scalars(s.connection(), {"t": tid}) == [1]
        # a text() statement's rows: plain tuples, its columns unknown
        assert Direct(text("SELECT 1, 'a'")).rows(s.connection(), {}) == [(1, "a")]


def test_a_statement_whose_names_need_escaping_is_refused(
    erp_db: Database, make_tenant: Any
) -> None:
    odd = Direct(select(C.id).where(C.target == bindparam("a.b")))
    tid = _seed(erp_db, make_tenant, [])
    with erp_db.tenant_session(tid) as s, pytest.raises(ValueError, match="escaping"):
        odd.rows(s.connection(), {"a.b": "x"})


def test_many_rows_in_one_executemany(erp_db: Database, make_tenant: Any) -> None:
    tid = _seed(erp_db, make_tenant, [])
    add = Direct(
        insert(AUDIT).values(
            tenant_id=bindparam("t"),
            action="many",
            target=bindparam("x"),
            details=bindparam("d"),
            at=bindparam("at"),
            actor="",
            ip="",
            outcome="ok",
        )
    )
    at = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [{"t": tid, "x": str(i), "d": {"n": i}, "at": at} for i in range(5)]
    flags: list[bool] = []

    def log(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT"):
            flags.append(many)

    with erp_db.tenant_session(tid) as s:
        event.listen(erp_db.engine, "before_cursor_execute", log)
        try:
            assert add.many(s.connection(), rows) == 5
            # one row goes in a plain execute (psycopg's executemany costs more for one)
            assert add.many(s.connection(), [{"t": tid, "x": "5", "d": {"n": 5}, "at": at}]) == 1
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", log)
        assert flags == [True, False]
        assert add.many(s.connection(), []) == 0
        with pytest.raises(ValueError, match="lists"):
            Direct(_BY_TARGETS).many(s.connection(), [{"tid": tid, "targets": ["a"]}])
        # a column's Python-side default is SQLAlchemy's execution's to compute: refused
        lazy = Direct(insert(AUDIT).values(tenant_id=bindparam("t"), action="x"))
        with pytest.raises(ValueError, match="actor, at, details, ip, outcome, target"):
            lazy.run(s.connection(), {"t": tid})
    with erp_db.tenant_session(tid) as s:
        q = select(C.target, C.details).where(C.tenant_id == tid).order_by(C.id)
        assert [tuple(r) for r in s.execute(q)] == [(str(i), {"n": i}) for i in range(6)]


def test_written_rows_are_not_flushed_and_a_rolled_back_savepoint_expires_them(
    erp_db: Database, make_tenant: Any
) -> None:
    """``written``: the values a statement wrote are the objects' database state (no flush
    writes them, a pending change of them is dropped); the objects written while a savepoint
    that is rolled back was open (in it, or in a savepoint released inside it) are read
    again, the others keep what was written; a transaction rolled back expires them too."""
    from erp_core.db.direct import written

    tid = _seed(
        erp_db, make_tenant, [{"target": t, "outcome": "ok", "details": {}} for t in "abcd"]
    )
    set_details = Direct(
        update(AUDIT)
        .where(C.id == bindparam("b_id"), C.tenant_id == bindparam("tid"))
        .values(details=bindparam("b_details"))
    )
    updates: list[str] = []

    def log(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.startswith("UPDATE"):
            updates.append(statement)

    def read() -> dict[str, Any]:
        with erp_db.tenant_session(tid) as s:
            return {e.target: e.details for e in s.scalars(select(AuditEvent))}

    with erp_db.tenant_session(tid) as s:
        a, b, c, d = s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()

        def write(obj: AuditEvent, details: dict[str, int]) -> None:
            set_details.run(s.connection(), {"b_id": obj.id, "tid": tid, "b_details": details})
            written(s, obj, {"details": details})

        a.details = {"pending": 1}
        b.outcome = "denied"
        write(a, {"n": 1})  # outside any savepoint
        assert list(s.dirty) == [b]  # a is clean again: its one pending change was written
        with s.begin_nested():
            write(b, {"n": 2})  # in a savepoint released (its pending outcome is flushed)
        outer = s.begin_nested()
        write(c, {"n": 3})  # in the savepoint rolled back
        inner = s.begin_nested()
        write(d, {"n": 4})  # in one released inside it
        inner.commit()
        outer.rollback()
        assert not s.dirty
        event.listen(erp_db.engine, "before_cursor_execute", log)
        try:
            s.flush()
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", log)
        assert updates == []
        assert (a.details, b.details, c.details, d.details) == ({"n": 1}, {"n": 2}, {}, {})
    assert read() == {"a": {"n": 1}, "b": {"n": 2}, "c": {}, "d": {}}
    with erp_db.tenant_session(tid) as s:
        assert {e.target: e.outcome for e in s.scalars(select(AuditEvent))}["b"] == "denied"

    with erp_db.session(tid) as s:
        e = s.scalars(select(AuditEvent).where(AuditEvent.target == "c")).one()
        write2 = {"b_id": e.id, "tid": tid, "b_details": {"n": 5}}
        set_details.run(s.connection(), write2)
        written(s, e, {"details": {"n": 5}})
        s.rollback()
        assert e.details == {}
        with pytest.raises(ValueError, match="not a persistent object"):
            written(s, AuditEvent(target="x", action="direct", outcome="ok"), {"details": {}})
    assert read()["c"] == {}


def test_loaded_rows_become_the_sessions_objects_as_a_query_would_load_them(
    erp_db: Database, make_tenant: Any
) -> None:
    """``loaded``: objects of rows read on the cursor are persistent and clean (a flush
    writes nothing), load their relationships on use, take changes as any object; an object
    the session holds is given back as it is (its pending change kept), an expired one takes
    the row's values."""
    import datetime as dt
    from decimal import Decimal

    from sqlalchemy.orm.attributes import instance_state

    from erp_core.db.direct import loaded, loaded_columns
    from erp_core.ledger import service as ledger
    from erp_core.ledger.models import Account, JournalEntry
    from erp_core.ledger.types import EntryDraft, PostingDraft

    tid = int(make_tenant(f"direct-{next(_n)}").id)
    with erp_db.tenant_session(tid) as s:
        ledger.ensure_chart(s)
        draft = EntryDraft(
            date=dt.date(2026, 12, 2),
            narration="sale",
            idempotency_key="k1",
            postings=(
                PostingDraft(account="1002", amount=Decimal("5.00")),
                PostingDraft(account="5001", amount=Decimal("-5.00")),
            ),
        )
        entry_id = ledger.post_entry(s, draft).id
    accounts = Direct(
        select(*loaded_columns(Account))
        .where(Account.tenant_id == bindparam("tid"), Account.code.in_(("1002", "5001")))
        .order_by(Account.code)
    )
    entries = Direct(
        select(*loaded_columns(JournalEntry)).where(JournalEntry.id == bindparam("id"))
    )
    seen: list[str] = []
    with erp_db.tenant_session(tid) as s:
        want = {a.code: (a.id, a.name_zh, a.is_active) for a in s.scalars(select(Account))}
        s.expunge_all()
        rows = accounts.rows(s.connection(), {"tid": tid})
        event.listen(erp_db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
        cash, sales = loaded(s, Account, rows)
        assert [a.code for a in (cash, sales)] == ["1002", "5001"]
        assert (cash.id, cash.name_zh, cash.is_active) == want["1002"]
        assert cash in s and not s.dirty and instance_state(cash).persistent
        assert s.get(Account, cash.id) is cash
        assert seen == []  # no statement: made from the rows
        s.flush()
        assert seen == []  # clean: nothing to write
        assert loaded(s, Account, rows)[0] is cash  # held: the same object
        cash.name_en = "Bank (changed)"
        again = loaded(s, Account, accounts.rows(s.connection(), {"tid": tid}))
        assert again[0] is cash and cash.name_en == "Bank (changed)"  # its change kept
        s.flush()
        assert any(q.startswith("UPDATE ledger_account") for q in seen)
        s.expire(sales)
        assert loaded(s, Account, accounts.rows(s.connection(), {"tid": tid}))[1] is sales
        assert not instance_state(sales).expired_attributes and sales.code == "5001"
        (entry,) = loaded(s, JournalEntry, entries.rows(s.connection(), {"id": entry_id}))
        assert sorted(p.amount for p in entry.postings) == [Decimal("-5.00"), Decimal("5.00")]
    with erp_db.tenant_session(tid) as s:
        assert s.scalars(select(Account).where(Account.code == "1002")).one().name_en == (
            "Bank (changed)"
        )
