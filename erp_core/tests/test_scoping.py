"""Tenant scoping of the ORM: the automatic filter, the flush guard, system access, and on
PostgreSQL the row-level security policies that stand behind them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pytest
from erp_test_alpha.models import AlphaNote
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, aliased

from erp_core.audit.models import AuditEvent
from erp_core.audit.service import record
from erp_core.auth.models import Membership, Role, User
from erp_core.db.session import (
    GUC_KNOWN,
    TENANT_KEY,
    TenantValue,
    bind_tenant,
    fetch_one_raw,
    system_access,
)
from erp_core.tenancy.context import CrossTenantError, NoTenantError, tenant_context
from erp_core.tenancy.models import Tenant

PG_URL = os.environ.get("ERP_TEST_DATABASE_URL", "")
needs_postgres = pytest.mark.skipif(
    not PG_URL.startswith("postgresql"),
    reason="row-level security is PostgreSQL only; set ERP_TEST_DATABASE_URL to run",
)

_slugs = itertools.count(1)


def _tenants(db: Any, count: int) -> list[int]:
    """``count`` bare tenants (no roles, no plugins), created with system access."""
    with db.session() as s, s.begin(), system_access(s):
        rows = [Tenant(slug=f"t{next(_slugs)}", name="T") for _ in range(count)]
        s.add_all(rows)
        s.flush()
        return [t.id for t in rows]


def _notes(db: Any, tenant_id: int, *texts: str) -> list[int]:
    with db.tenant_session(tenant_id) as s:
        rows = [AlphaNote(text=t) for t in texts]
        s.add_all(rows)
        s.flush()
        return [n.id for n in rows]


def _member(db: Any, tenant_id: int, email: str) -> int:
    with db.tenant_session(tenant_id) as s:
        role = Role(name="staff", title="Staff", permissions=["*"])
        user = User(email=email, name=email)
        s.add_all([role, user])
        s.flush()
        s.add(Membership(user_id=user.id, role_id=role.id))
        s.flush()
        return user.id


def _all_notes(db: Any) -> dict[int, tuple[int, str]]:
    """id -> (tenant_id, text) of every note, read with system access."""
    with db.session() as s, system_access(s):
        return {n.id: (n.tenant_id, n.text) for n in s.scalars(select(AlphaNote))}


@pytest.fixture
def two(erp_db: Any) -> tuple[int, int, list[int], list[int]]:
    """Tenants A and B with notes: A has three, B two."""
    a, b = _tenants(erp_db, 2)
    return a, b, _notes(erp_db, a, "a1", "a2", "a3"), _notes(erp_db, b, "b1", "b2")


# --- no tenant in context ------------------------------------------------------------------

NO_TENANT_STATEMENTS: dict[str, Callable[[], Any]] = {
    "select entity": lambda: select(AlphaNote),
    "select column": lambda: select(AlphaNote.text),
    "count(*) select_from": lambda: select(func.count()).select_from(AlphaNote),
    "count(column)": lambda: select(func.count(AlphaNote.id)),
    "aliased": lambda: select(aliased(AlphaNote)),
    "join to a tenant table": lambda: select(User).join(Membership, Membership.user_id == User.id),
    "tenant table in a subquery": lambda: select(User).where(
        User.id.in_(select(Membership.user_id))
    ),
    "core table": lambda: select(AlphaNote.__table__),
    "orm update": lambda: update(AlphaNote).values(text="x"),
    "orm delete": lambda: delete(AlphaNote),
}


@pytest.mark.parametrize("name", list(NO_TENANT_STATEMENTS))
def test_tenant_owned_statement_without_tenant_raises(erp_db, two, name):
    before = _all_notes(erp_db)
    with erp_db.session() as s:
        with pytest.raises(NoTenantError):
            s.execute(NO_TENANT_STATEMENTS[name]())
        s.rollback()
    assert _all_notes(erp_db) == before


def test_get_without_tenant_raises(erp_db, two):
    _, _, a_ids, _ = two
    with erp_db.session() as s, pytest.raises(NoTenantError):
        s.get(AlphaNote, a_ids[0])


def test_global_tables_need_no_tenant(erp_db, two):
    with erp_db.session() as s:
        assert len(s.scalars(select(Tenant)).all()) == 2
        assert s.scalars(select(User)).all() == []


def test_new_row_without_any_tenant_raises(erp_db, two):
    with erp_db.session() as s:
        s.add(AlphaNote(text="orphan"))
        with pytest.raises(NoTenantError):
            s.flush()
        s.rollback()


# --- a tenant bound ------------------------------------------------------------------------


def test_bound_select_and_get_see_only_own_rows(erp_db, two):
    _a, b, a_ids, b_ids = two
    with erp_db.session(b) as s:
        assert sorted(s.scalars(select(AlphaNote.text))) == ["b1", "b2"]
        assert {n.id for n in s.scalars(select(AlphaNote))} == set(b_ids)
        assert s.scalar(select(func.count()).select_from(AlphaNote)) == 2
        assert s.scalar(select(func.count(AlphaNote.id))) == 2
        assert sorted(s.scalars(select(aliased(AlphaNote).text))) == ["b1", "b2"]
        assert s.scalars(select(AlphaNote).where(AlphaNote.id.in_(a_ids))).all() == []
        for note_id in a_ids:
            assert s.get(AlphaNote, note_id) is None
        for note_id in b_ids:
            note = s.get(AlphaNote, note_id)
            assert note is not None and note.tenant_id == b


def test_bound_joins_and_subqueries_see_only_own_rows(erp_db):
    a, b = _tenants(erp_db, 2)
    ua = _member(erp_db, a, "a@x.test")
    ub = _member(erp_db, b, "b@x.test")
    with erp_db.session(a) as s:
        joined = s.scalars(select(User.email).join(Membership, Membership.user_id == User.id))
        assert list(joined) == ["a@x.test"]
        pairs = s.execute(
            select(Membership.user_id, Role.name).join(Role, Role.id == Membership.role_id)
        ).all()
        assert [p.user_id for p in pairs] == [ua]
        sub = s.scalars(select(User.id).where(User.id.in_(select(Membership.user_id))))
        assert list(sub) == [ua]
        # the global table itself is not filtered: B's user exists, only the join hides it
        assert s.get(User, ub) is not None


def test_orm_update_and_delete_touch_only_bound_tenant(erp_db, two):
    a, b, a_ids, b_ids = two
    with erp_db.tenant_session(b) as s:
        assert s.execute(update(AlphaNote).values(text="changed")).rowcount == 2
        hit = s.execute(update(AlphaNote).where(AlphaNote.id.in_(a_ids)).values(text="stolen"))
        assert hit.rowcount == 0
    notes = _all_notes(erp_db)
    assert {notes[i] for i in a_ids} == {(a, "a1"), (a, "a2"), (a, "a3")}
    assert {notes[i] for i in b_ids} == {(b, "changed")}
    with erp_db.tenant_session(b) as s:
        assert s.execute(delete(AlphaNote).where(AlphaNote.id.in_(a_ids))).rowcount == 0
        assert s.execute(delete(AlphaNote)).rowcount == 2
    notes = _all_notes(erp_db)
    assert sorted(notes) == sorted(a_ids)


def test_one_statement_serves_every_tenant_with_its_own_rows(erp_db, two):
    """A statement built once (a module's constant) is scoped once for every tenant: the
    tenant is a parameter of each execution, not part of the scoped statement."""
    a, b, a_ids, b_ids = two
    stmt = select(AlphaNote).order_by(AlphaNote.id)
    by_id = select(AlphaNote.text).where(AlphaNote.id == a_ids[0])
    for _ in range(2):
        for tid, ids in ((a, a_ids), (b, b_ids), (a, a_ids)):
            with erp_db.session(tid) as s:
                assert [n.id for n in s.scalars(stmt)] == ids
                assert s.scalar(by_id) == ("a1" if tid == a else None)
    with erp_db.session() as s, system_access(s):
        assert [n.id for n in s.scalars(stmt)] == sorted(a_ids + b_ids)


def test_orm_bulk_update_by_primary_key_touches_only_bound_tenant(erp_db, two):
    """SQLAlchemy leaves the loader criteria out of a bulk UPDATE by primary key: the keys are
    checked against the tenant's rows first, and one that is not among them stops it all."""
    a, b, a_ids, b_ids = two
    with erp_db.session(b) as s:
        with pytest.raises(CrossTenantError, match=rf"names \[{a_ids[0]}\], which is not a row"):
            s.execute(update(AlphaNote), [{"id": b_ids[0], "text": "x"}, {"id": a_ids[0]}])
        s.rollback()
        with pytest.raises(CrossTenantError, match="are not rows of tenant"):
            s.execute(update(AlphaNote), [{"id": i, "text": "stolen"} for i in a_ids])
        s.rollback()
    with erp_db.tenant_session(b) as s:
        s.execute(update(AlphaNote), [{"id": b_ids[0], "text": "mine"}])
    notes = _all_notes(erp_db)
    assert {notes[i] for i in a_ids} == {(a, "a1"), (a, "a2"), (a, "a3")}
    assert [notes[i] for i in b_ids] == [(b, "mine"), (b, "b2")]


def test_orm_update_cannot_move_rows_to_another_tenant(erp_db, two):
    a, b, _, b_ids = two
    with erp_db.session(b) as s:
        with pytest.raises(CrossTenantError):
            s.execute(update(AlphaNote).values(tenant_id=a))
        s.rollback()
    assert {_all_notes(erp_db)[i][0] for i in b_ids} == {b}


def test_orm_insert_statement_for_another_tenant_raises(erp_db, two):
    a, b, _, _ = two
    before = _all_notes(erp_db)
    with erp_db.session(b) as s:
        with pytest.raises(CrossTenantError):
            s.execute(insert(AlphaNote).values(tenant_id=a, text="planted"))
        s.rollback()
        with pytest.raises(CrossTenantError):
            s.execute(insert(AlphaNote), [{"tenant_id": b, "text": "ok"}, {"tenant_id": a}])
        s.rollback()
    with erp_db.session() as s:
        with pytest.raises(NoTenantError):
            s.execute(insert(AlphaNote).values(tenant_id=a, text="planted"))
        s.rollback()
    assert _all_notes(erp_db) == before


def test_orm_insert_statements_are_stamped_with_the_bound_tenant(erp_db, two):
    """``session.execute(insert(Model), ...)`` bypasses the flush: its rows that name no tenant
    get the bound one all the same."""
    a, b, a_ids, _ = two
    with erp_db.tenant_session(b) as s:
        s.execute(insert(AlphaNote), [{"text": "bulk 1"}, {"text": "bulk 2", "tenant_id": b}])
        s.execute(insert(AlphaNote), {"text": "one"})
        s.execute(insert(AlphaNote).values(text="values"))
    with erp_db.session(b) as s:
        mine = set(s.scalars(select(AlphaNote.text)))
    assert {"bulk 1", "bulk 2", "one", "values"} <= mine
    notes = _all_notes(erp_db)
    assert {t for tid, t in notes.values() if tid == b} >= {"bulk 1", "bulk 2", "one", "values"}
    assert [notes[i] for i in a_ids] == [(a, "a1"), (a, "a2"), (a, "a3")]


def test_new_rows_are_stamped_with_the_bound_tenant(erp_db, two):
    a, _, _, _ = two
    with erp_db.tenant_session(a) as s:
        note = AlphaNote(text="stamped")
        s.add(note)
        s.flush()
        assert note.tenant_id == a
    with tenant_context(a), erp_db.session() as s:
        assert "stamped" in s.scalars(select(AlphaNote.text)).all()


def test_writing_another_tenants_row_raises(erp_db, two):
    a, b, a_ids, b_ids = two
    before = _all_notes(erp_db)
    with erp_db.session(b) as s:
        s.add(AlphaNote(tenant_id=a, text="planted"))
        with pytest.raises(CrossTenantError):
            s.flush()
        s.rollback()
    # changed inside system access but flushed after it ended, acting for B
    with erp_db.session(b) as s:
        with system_access(s):
            foreign = s.get(AlphaNote, a_ids[0])
            assert foreign is not None
            foreign.text = "defaced"
        with pytest.raises(CrossTenantError):
            s.flush()
        s.rollback()
    with erp_db.session(b) as s:
        with system_access(s):
            s.delete(s.get(AlphaNote, a_ids[1]))
        with pytest.raises(CrossTenantError):
            s.flush()
        s.rollback()
    # loaded with system access and changed after: the row left the session with the access
    with erp_db.session(b) as s, s.begin():
        with system_access(s):
            foreign = s.get(AlphaNote, a_ids[2])
        assert foreign is not None and foreign not in s
        foreign.text = "defaced"
    with erp_db.session(b) as s:
        own = s.get(AlphaNote, b_ids[0])
        assert own is not None
        own.tenant_id = a
        with pytest.raises(CrossTenantError):
            s.flush()
        s.rollback()
    assert _all_notes(erp_db) == before


def test_context_variable_binds_sessions_opened_inside_it(erp_db, two):
    a, b, a_ids, _ = two
    with tenant_context(a), erp_db.session() as s:
        assert {n.id for n in s.scalars(select(AlphaNote))} == set(a_ids)
    with tenant_context(a), erp_db.session(b) as s:  # an explicit binding wins
        assert sorted(s.scalars(select(AlphaNote.text))) == ["b1", "b2"]


# --- system access and the identity map ------------------------------------------------------


def test_system_access_sees_every_tenant_and_ends(erp_db, two):
    _a, b, a_ids, b_ids = two
    with erp_db.session(b) as s:
        with system_access(s):
            assert {n.id for n in s.scalars(select(AlphaNote))} == set(a_ids + b_ids)
            assert s.get(AlphaNote, a_ids[0]) is not None
        assert {n.id for n in s.scalars(select(AlphaNote))} == set(b_ids)
    with erp_db.system_session() as s:
        assert s.scalar(select(func.count()).select_from(AlphaNote)) == 5


def test_rows_loaded_with_system_access_do_not_leak_through_get(erp_db, two):
    """``session.get`` answers from the identity map without a query; a row another tenant's
    code loaded there must not come back once the session acts for a tenant."""
    _a, b, a_ids, b_ids = two
    with erp_db.session(b) as s:
        with system_access(s):
            held = s.scalars(select(AlphaNote)).all()  # held: the identity map is weak
            assert len(held) == 5
        assert s.get(AlphaNote, a_ids[0]) is None
        assert s.get(AlphaNote, b_ids[0]) is not None
    with erp_db.session() as s:
        with system_access(s):
            held = s.scalars(select(AlphaNote)).all()
        bind_tenant(s, b)
        assert s.get(AlphaNote, a_ids[0]) is None
        assert sorted(n.text for n in s.scalars(select(AlphaNote))) == ["b1", "b2"]
    assert held


def test_rebinding_a_session_forgets_the_previous_tenants_rows(erp_db, two):
    a, b, a_ids, _ = two
    with erp_db.session(a) as s:
        held = s.get(AlphaNote, a_ids[0])  # held: the identity map is weak
        assert held is not None
        bind_tenant(s, b)
        assert s.get(AlphaNote, a_ids[0]) is None
        assert sorted(s.scalars(select(AlphaNote.text))) == ["b1", "b2"]
        bind_tenant(s, a)
        assert s.get(AlphaNote, a_ids[0]) is not None


def test_audit_events_without_tenant_are_invisible_to_tenants(erp_db, two):
    a, b, _, _ = two
    with erp_db.session() as s, s.begin():
        record(s, "login.failed", tenant_id=None, actor="nobody@x.test", outcome="denied")
        record(s, "thing.done", tenant_id=a, actor="owner@a.test")
    for tid, expected in ((a, ["thing.done"]), (b, [])):
        with erp_db.session(tid) as s:
            assert list(s.scalars(select(AuditEvent.action))) == expected
            assert s.scalar(select(func.count(AuditEvent.id))) == len(expected)
    with erp_db.session() as s, system_access(s):
        rows = s.execute(select(AuditEvent.tenant_id, AuditEvent.action)).all()
        assert sorted(rows, key=str) == sorted([(None, "login.failed"), (a, "thing.done")], key=str)
    with erp_db.session() as s, pytest.raises(NoTenantError):
        s.scalars(select(AuditEvent)).all()


# --- property: random interleavings -----------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3),
        st.sampled_from(["insert", "insert_shared", "read", "read_shared"]),
    ),
    min_size=1,
    max_size=25,
)


def _check_reads(s: Session, tid: int, expected: dict[int, set[str]], ids: dict[int, int]) -> None:
    assert set(s.scalars(select(AlphaNote.text))) == expected[tid]
    assert s.scalar(select(func.count()).select_from(AlphaNote)) == len(expected[tid])
    for note_id, owner in ids.items():
        got = s.get(AlphaNote, note_id)
        assert (got is not None) == (owner == tid), (note_id, owner, tid)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(n=st.integers(min_value=2, max_value=4), ops=OPS)
def test_property_every_bound_read_returns_exactly_own_rows(erp_db, n, ops):
    tenants = _tenants(erp_db, n)
    expected: dict[int, set[str]] = {t: set() for t in tenants}
    ids: dict[int, int] = {}  # note id -> owner
    shared = erp_db.session()  # one long-lived session switched between tenants
    try:
        for k, (i, op) in enumerate(ops):
            tid = tenants[i % n]
            label = f"n{k}"
            if op == "insert":
                with erp_db.tenant_session(tid) as s:
                    note = AlphaNote(text=label)
                    s.add(note)
                    s.flush()
                    ids[note.id] = tid
                expected[tid].add(label)
            elif op == "insert_shared":
                bind_tenant(shared, tid)
                note = AlphaNote(text=label)
                shared.add(note)
                shared.commit()
                ids[note.id] = tid
                expected[tid].add(label)
            elif op == "read":
                with erp_db.session(tid) as s:
                    _check_reads(s, tid, expected, ids)
            else:
                bind_tenant(shared, tid)
                _check_reads(shared, tid, expected, ids)
                shared.commit()
        for tid in tenants:
            with erp_db.session(tid) as s:
                _check_reads(s, tid, expected, ids)
    finally:
        shared.close()
        with erp_db.session() as s, s.begin(), system_access(s):
            s.execute(delete(AlphaNote).where(AlphaNote.tenant_id.in_(tenants)))
            s.execute(delete(Tenant).where(Tenant.id.in_(tenants)))


# --- PostgreSQL: row-level security as the second line ------------------------------------------


@pytest.mark.postgres
@needs_postgres
def test_pg_role_is_subject_to_rls(erp_db):
    assert erp_db.is_postgres
    with erp_db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).one()
    assert tuple(row) == (False, False), "the test role bypasses RLS; these tests prove nothing"


@pytest.mark.postgres
@needs_postgres
def test_pg_raw_sql_sees_only_the_bound_tenant(erp_db, two):
    a, b, a_ids, b_ids = two
    raw = text("SELECT id, tenant_id FROM test_alpha_note ORDER BY id")
    with erp_db.session(a) as s:
        assert [r.id for r in s.execute(raw)] == a_ids
        assert s.execute(text("SELECT count(*) FROM test_alpha_note")).scalar() == 3
        bind_tenant(s, b)  # mid-transaction rebinding moves the policy along
        assert [r.id for r in s.execute(raw)] == b_ids
        with system_access(s):
            assert len(s.execute(raw).all()) == 5
        assert [r.id for r in s.execute(raw)] == b_ids
        s.commit()
        assert [r.id for r in s.execute(raw)] == b_ids  # and survives the next transaction


@pytest.mark.postgres
@needs_postgres
def test_pg_raw_sql_without_tenant_sees_nothing(erp_db, two):
    with erp_db.session() as s:
        assert s.execute(text("SELECT count(*) FROM test_alpha_note")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM core_audit_event")).scalar() == 0


@pytest.mark.postgres
@needs_postgres
def test_pg_settings_follow_every_session_on_a_reused_connection(erp_db, two):
    """The tenant settings a connection carries are skipped when unchanged, but never stale:
    after a commit, a rollback, an error and a transaction-local change."""
    a, b, a_ids, b_ids = two
    raw = text("SELECT id FROM test_alpha_note ORDER BY id")
    with erp_db.engine.connect() as conn:

        def seen(tid: int | None, end: str = "commit") -> list[int]:
            with erp_db.sessionmaker(bind=conn) as s:
                s.begin()
                if tid is not None:
                    s.info[TENANT_KEY] = tid
                ids = [r.id for r in s.execute(raw)]
                if end == "error":
                    with pytest.raises(DBAPIError):
                        s.execute(text("SELECT 1/0"))
                getattr(s, "commit" if end == "commit" else "rollback")()
            return ids

        assert seen(a) == a_ids
        assert conn.info[GUC_KNOWN] == (a, False)
        assert seen(a) == a_ids  # same settings: no round trip, same rows
        assert seen(b, end="rollback") == b_ids  # PostgreSQL reverts the settings...
        assert conn.info[GUC_KNOWN] is None  # ...so they are unknown here
        assert seen(None) == []
        assert seen(b, end="error") == b_ids
        assert conn.info[GUC_KNOWN] is None
        assert seen(b) == b_ids
        with erp_db.sessionmaker(bind=conn) as s, s.begin():
            s.info[TENANT_KEY] = b
            with system_access(s):  # transaction-local: ends with the transaction
                assert len(s.execute(raw).all()) == 5
        assert conn.info[GUC_KNOWN] == (b, False)
        assert seen(b) == b_ids
        assert seen(a) == a_ids
        # raw use of the connection outside a session: no tenant, whoever used it last
        assert conn.execute(raw).all() == []
        conn.commit()
        assert seen(a) == a_ids
    with erp_db.engine.connect() as raw_conn:  # from the pool, last used for tenant a
        assert raw_conn.execute(raw).all() == []


@pytest.mark.postgres
@needs_postgres
def test_pg_fetch_one_raw_runs_in_the_session_and_raises_as_sqlalchemy(erp_db, two):
    """The DBAPI-cursor path of the hot statements: bound by row-level security like any
    statement, in the session's transaction, and its errors are SQLAlchemy's."""
    a, b, a_ids, b_ids = two
    count = "SELECT count(*), min(id) FROM test_alpha_note"
    before = _all_notes(erp_db)
    with erp_db.session(a) as s:
        conn = s.connection()
        assert fetch_one_raw(conn, count, {}) == (len(a_ids), min(a_ids))
        bind_tenant(s, b)
        assert fetch_one_raw(conn, count, {}) == (len(b_ids), min(b_ids))
        mine = "SELECT id FROM test_alpha_note WHERE id = %(id)s"
        assert fetch_one_raw(conn, mine, {"id": a_ids[0]}) is None  # another tenant's row
        fetch_one_raw(
            conn,
            "UPDATE test_alpha_note SET text = 'seen' WHERE id = %(id)s RETURNING id",
            {"id": b_ids[0]},
        )
        with pytest.raises(DBAPIError, match="division by zero") as caught:
            fetch_one_raw(conn, "SELECT 1 / %(zero)s", {"zero": 0})
        assert caught.value.statement == "SELECT 1 / %(zero)s"
        assert conn.info[GUC_KNOWN] is None
        s.rollback()
        assert s.execute(select(AlphaNote.text).where(AlphaNote.id == b_ids[0])).scalar() != "seen"
    with erp_db.session(a) as s:
        conn = s.connection()
        dup = (
            "INSERT INTO test_alpha_note (id, tenant_id, text, tags) VALUES (%(id)s, %(t)s, '', '')"
        )
        with pytest.raises(IntegrityError):
            fetch_one_raw(conn, dup, {"id": a_ids[0], "t": a})
        s.rollback()
    assert _all_notes(erp_db) == before


@pytest.mark.postgres
@needs_postgres
def test_pg_raw_writes_cannot_cross_tenants(erp_db, two):
    a, b, a_ids, _ = two
    before = _all_notes(erp_db)
    planted = text("INSERT INTO test_alpha_note (tenant_id, text, tags) VALUES (:t, 'x', '')")
    with erp_db.session(a) as s:
        with pytest.raises(DBAPIError, match="row-level security"):
            s.execute(planted, {"t": b})
        s.rollback()
    with erp_db.session() as s:
        with pytest.raises(DBAPIError, match="row-level security"):
            s.execute(planted, {"t": a})
        s.rollback()
    with erp_db.session(b) as s, s.begin():
        ids = {"ids": a_ids}
        upd = "UPDATE test_alpha_note SET text = 'defaced' WHERE id = ANY(:ids)"
        assert s.execute(text(upd), ids).rowcount == 0
        dele = "DELETE FROM test_alpha_note WHERE id = ANY(:ids)"
        assert s.execute(text(dele), ids).rowcount == 0
    with erp_db.session(a) as s:
        with pytest.raises(DBAPIError, match="row-level security"):
            s.execute(text("UPDATE test_alpha_note SET tenant_id = :b"), {"b": b})
        s.rollback()
    assert _all_notes(erp_db) == before


@pytest.mark.postgres
@needs_postgres
def test_pg_every_tenant_table_has_a_forced_policy(erp_db):
    with erp_db.engine.connect() as conn:
        tables = {
            r.table_name: (r.relrowsecurity, r.relforcerowsecurity)
            for r in conn.execute(
                text(
                    "SELECT c.table_name, k.relrowsecurity, k.relforcerowsecurity "
                    "FROM information_schema.columns c "
                    "JOIN pg_class k ON k.relname = c.table_name "
                    "JOIN pg_namespace n ON n.oid = k.relnamespace "
                    "AND n.nspname = c.table_schema "
                    "WHERE c.column_name = 'tenant_id' AND c.table_schema = current_schema() "
                    "AND k.relkind = 'r'"
                )
            )
        }
        policies = {
            r.tablename: r
            for r in conn.execute(
                text(
                    "SELECT tablename, cmd, qual, with_check FROM pg_policies "
                    "WHERE schemaname = current_schema() AND policyname = 'erp_tenant_isolation'"
                )
            )
        }
    expected = {
        "core_tenant_plugin",
        "core_role",
        "core_membership",
        "core_api_token",
        "core_audit_event",
        "test_alpha_note",
        "test_gamma_item",
    }
    assert expected <= set(tables)
    assert sorted(set(tables) - set(policies)) == [], "tenant tables without a policy"
    not_forced = sorted(t for t, (on, forced) in tables.items() if not (on and forced))
    assert not_forced == [], "tenant tables whose RLS is not enabled and forced"
    for name in tables:
        p = policies[name]
        assert p.cmd == "ALL" and p.with_check and "tenant_id" in p.qual, name


@pytest.mark.postgres
@needs_postgres
def test_pg_lookup_by_id_of_a_tenant_the_statistics_do_not_know_takes_the_primary_key(erp_db):
    """The table is analyzed while it holds one tenant's rows, so its statistics list that
    tenant as the only value of ``tenant_id``. A second tenant then adds as many rows. The ORM's
    lookup by id for the second tenant must still use the primary key, not read all the
    tenant's rows through the ``tenant_id`` index (the planner took that path while the filter
    compared with a bare value it estimated from the statistics at one row)."""
    first, second = _tenants(erp_db, 2)
    _notes(erp_db, first, *(f"a{i}" for i in range(3000)))
    with erp_db.engine.connect() as conn:
        conn.execute(text("ANALYZE test_alpha_note"))
        conn.commit()
    ids = _notes(erp_db, second, *(f"b{i}" for i in range(3000)))
    seen: list[tuple[str, Any]] = []
    with erp_db.session(second) as s:

        def _keep(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
            if "test_alpha_note" in statement and not statement.startswith("EXPLAIN"):
                seen.append((statement, params))

        conn = s.connection()
        event.listen(conn, "before_cursor_execute", _keep)
        try:
            wanted = ids[-3:]
            rows = s.scalars(select(AlphaNote).where(AlphaNote.id.in_(wanted))).all()
            assert sorted(n.id for n in rows) == sorted(wanted)
            statement, params = seen[-1]
            plan = "\n".join(
                r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params).all()
            )
        finally:
            event.remove(conn, "before_cursor_execute", _keep)
    assert "pk_test_alpha_note" in plan, plan


def test_tenant_value_hides_the_tenant_from_postgres_statistics_only(erp_db, two):
    a, _b, a_ids, _b_ids = two
    note = AlphaNote.__table__
    stmt = select(note.c.id).where(note.c.tenant_id == TenantValue(a)).order_by(note.c.id)
    pg = str(stmt.compile(dialect=postgresql.dialect()))
    lite = str(stmt.compile(dialect=sqlite.dialect()))
    assert "tenant_id = (SELECT %(param_1)s::BIGINT)" in pg, pg
    assert "tenant_id = ?" in lite, lite
    with erp_db.session(a) as s:
        assert s.scalars(stmt).all() == sorted(a_ids)
