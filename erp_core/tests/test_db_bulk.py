"""``erp_core.db.bulk.RowInsert`` writes what SQLAlchemy's own INSERT writes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, insert, select

from erp_core.audit.models import AuditEvent
from erp_core.db.bulk import RowInsert, RowStatement
from erp_core.db.session import Database
from erp_core.ledger import service as ledger
from erp_core.ledger.models import JournalEntry, Posting
from erp_core.ledger.types import EntryDraft, PostingDraft

AUDIT = cast(Table, AuditEvent.__table__)
POSTINGS = cast(Table, Posting.__table__)
#: (NUL, which PostgreSQL's text refuses, and lone surrogates are not the point here)
_texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_n = itertools.count()


def _stored(db: Database, tid: int, table: Table, action_or_entry: str | int) -> list[Any]:
    with db.tenant_session(tid) as s:
        c = table.c
        if table is AUDIT:
            q = select(table).where(c.action == action_or_entry).order_by(c.id)
        else:
            q = select(table).where(c.entry_id == action_or_entry).order_by(c.line)
        return [{k: v for k, v in r._mapping.items() if k != "id"} for r in s.execute(q)]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"target": _texts, "details": st.dictionaries(_texts, st.integers() | _texts)},
        ),
        min_size=1,
        max_size=6,
    ),
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
)
def test_rows_with_json_times_and_defaults_as_core_writes_them(
    erp_db: Database, make_tenant: Any, rows: list[dict[str, Any]], at: datetime
) -> None:
    tid = make_tenant(f"bulk-{next(_n)}").id
    fast = [{**r, "tenant_id": tid, "action": "fast", "at": at.replace(tzinfo=UTC)} for r in rows]
    slow = [{**r, "action": "slow"} for r in fast]
    with erp_db.tenant_session(tid) as s:
        RowInsert(AUDIT)(s.connection(), fast)
        s.connection().execute(insert(AUDIT), slow)
    got, want = _stored(erp_db, tid, AUDIT, "fast"), _stored(erp_db, tid, AUDIT, "slow")
    assert [{**g, "action": "slow"} for g in got] == want
    # the columns left out took their defaults (outcome "ok", actor "")
    assert {(g["outcome"], g["actor"]) for g in got} == {("ok", "")}


def test_defaults_computed_for_each_row(erp_db: Database, make_tenant: Any) -> None:
    """A function default (the time, a fresh dict) is called for each row, a scalar one is
    processed once and shared; the written rows equal Core's."""
    tid = make_tenant(f"bulk-{next(_n)}").id
    before = datetime.now(UTC)
    fast = [{"tenant_id": tid, "action": "dfast", "target": str(i)} for i in range(3)]
    slow = [{**r, "action": "dslow"} for r in fast]
    with erp_db.tenant_session(tid) as s:
        RowInsert(AUDIT)(s.connection(), fast)
        s.connection().execute(insert(AUDIT), slow)
    after = datetime.now(UTC)
    got, want = _stored(erp_db, tid, AUDIT, "dfast"), _stored(erp_db, tid, AUDIT, "dslow")
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        assert before <= g["at"] <= after
        assert {**g, "action": "dslow", "at": None} == {**w, "at": None}
        assert (g["details"], g["outcome"], g["target"]) == ({}, "ok", w["target"])


def test_exact_decimals_dates_and_a_bad_value(erp_db: Database, make_tenant: Any) -> None:
    tid = make_tenant("bulk-dec").id
    with erp_db.tenant_session(tid) as s:
        ledger.post_entry(
            s,
            EntryDraft(
                date=datetime(2026, 11, 30).date(),
                narration="seed",
                postings=(
                    PostingDraft(account="1122", amount=Decimal("1.00")),
                    PostingDraft(account="5001", amount=Decimal("-1.00")),
                ),
                idempotency_key="bulk-seed",
            ),
        )
        entry = s.scalars(select(JournalEntry)).one()
        (first, second) = s.scalars(select(Posting).order_by(Posting.line)).all()
        base = {
            c: getattr(first, c)
            for c in ("tenant_id", "account_id", "date", "period", "currency", "rate")
        }
        rows = [
            {
                **base,
                "entry_id": entry.id,
                "line": 10 + n,
                "amount": amt,
                "amount_base": amt,
                "memo": memo,
                "channel": None,
                "store": "店",
                "sku": None,
                "order_ref": None,
                "warehouse": None,
            }
            for n, (amt, memo) in enumerate([(Decimal("12.3456"), "a"), (Decimal("-7"), "乙")])
        ]
        RowInsert(POSTINGS)(s.connection(), rows)
        s.connection().execute(insert(POSTINGS), [{**r, "line": r["line"] + 10} for r in rows])
        with pytest.raises(ValueError, match="decimal places"):
            RowInsert(POSTINGS)(s.connection(), [{**rows[0], "amount": Decimal("0.00001")}])
        with pytest.raises(ValueError, match="same columns"):
            RowInsert(POSTINGS)(s.connection(), [rows[0], {**rows[1], "extra": 1}])
        assert second.amount == Decimal("-1.0000")
    stored = _stored(erp_db, tid, POSTINGS, entry.id)
    fast = [r for r in stored if 10 <= r["line"] < 20]
    slow = [r for r in stored if r["line"] >= 20]
    assert [{**r, "line": r["line"] + 10} for r in fast] == slow
    assert [r["amount"] for r in fast] == [Decimal("12.3456"), Decimal("-7.0000")]
    assert fast[0]["date"] == base["date"] and fast[1]["memo"] == "乙"


def test_a_statement_for_many_rows_changes_what_core_changes(
    erp_db: Database, make_tenant: Any
) -> None:
    """An UPDATE with a parameter named twice, a value it holds itself and typed parameters,
    run for many rows: the same rows, the same values and row count as through SQLAlchemy."""
    from sqlalchemy import bindparam, update

    c = AUDIT.c
    stmt = (
        update(AUDIT)
        .where(c.id == bindparam("b_id"), c.target != bindparam("b_target"))
        .values(target=bindparam("b_target"), outcome="denied", details=bindparam("b_details"))
    )
    tid = make_tenant("bulk-update").id
    with erp_db.tenant_session(tid) as s:
        conn = s.connection()
        base = {"tenant_id": tid, "at": datetime(2026, 11, 30, tzinfo=UTC), "details": {}}
        RowInsert(AUDIT)(conn, [{**base, "action": a, "target": "t"} for a in "abcd"])
        ids = dict(s.execute(select(c.action, c.id)).all())
        fast = [
            {"b_id": ids["a"], "b_target": "新", "b_details": {"k": [1, "二"]}},
            {"b_id": ids["b"], "b_target": "t", "b_details": {}},  # matches nothing
        ]
        slow = [{**p, "b_id": ids[x]} for p, x in zip(fast, "cd", strict=True)]
        assert RowStatement(stmt)(conn, fast).rowcount == 1
        assert conn.execute(stmt, slow).rowcount == 1
        with pytest.raises(ValueError, match="at least one row"):
            RowStatement(stmt)(conn, [])
    with erp_db.tenant_session(tid) as s:
        got = {
            a: (t, o, d)
            for a, t, o, d in s.execute(select(c.action, c.target, c.outcome, c.details))
        }
    assert got["a"] == got["c"] == ("新", "denied", {"k": [1, "二"]})
    assert got["b"] == got["d"] == ("t", "ok", {})


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(targets=st.lists(_texts, min_size=1, max_size=5))
def test_ids_come_back_in_the_order_of_the_rows(
    erp_db: Database, make_tenant: Any, targets: list[str]
) -> None:
    """``RowInsert.ids``: each row's id, in the rows' order; what is stored is what the
    plain insert stores (defaults included)."""
    tid = make_tenant(f"bulk-{next(_n)}").id
    rows = [{"tenant_id": tid, "action": "ids", "target": t} for t in targets]
    with erp_db.tenant_session(tid) as s:
        ids = RowInsert(AUDIT).ids(s.connection(), rows)
        RowInsert(AUDIT)(s.connection(), [{**r, "action": "plain"} for r in rows])
        assert RowInsert(AUDIT).ids(s.connection(), []) == []
    with erp_db.tenant_session(tid) as s:
        c = AUDIT.c
        stored = dict(s.execute(select(c.id, c.target).where(c.action == "ids")).all())
    assert len(ids) == len(set(ids)) == len(rows)
    assert [stored[i] for i in ids] == targets
    got, want = _stored(erp_db, tid, AUDIT, "ids"), _stored(erp_db, tid, AUDIT, "plain")
    assert [{**g, "action": "plain", "at": None} for g in got] == [{**w, "at": None} for w in want]
