"""post_entries: a batch posts exactly what the same drafts posted one by one would, in a few
statements, all or nothing."""

from __future__ import annotations

import datetime
import itertools
import os
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from erp_core.db.bulk import FEW_ROWS
from erp_core.db.session import system_access
from erp_core.ledger import service
from erp_core.ledger.models import JournalEntry, Posting
from erp_core.ledger.service import LedgerError
from erp_core.ledger.types import EntryDraft, PostingDraft

DAY = datetime.date(2026, 10, 3)


def sale(key: str, amount: str = "100.00", day: datetime.date = DAY, **dims: Any) -> EntryDraft:
    return EntryDraft(
        date=day,
        narration=f"sale {key}",
        postings=(
            PostingDraft(account="1122", amount=D(amount), **dims),
            PostingDraft(account="5001", amount=-D(amount), **dims),
        ),
        idempotency_key=key,
        source_type="oms_order",
        source_id=key,
    )


def stored(erp_db: Any, tid: int) -> list[tuple[Any, ...]]:
    """Every entry of the tenant with its postings, in key order."""
    with erp_db.tenant_session(tid) as s:
        out = []
        for e in s.scalars(select(JournalEntry).order_by(JournalEntry.idempotency_key)):
            lines = [
                (p.line, p.account.code, p.amount, p.amount_base, p.sku, p.order_ref)
                for p in e.postings
            ]
            out.append((e.idempotency_key, e.digest, e.date, e.period, e.narration, lines))
        return out


def count(erp_db: Any, tid: int) -> tuple[int, int]:
    with erp_db.session() as s, system_access(s):
        return (
            s.scalar(
                select(func.count()).select_from(JournalEntry).where(JournalEntry.tenant_id == tid)
            )
            or 0,
            s.scalar(select(func.count()).select_from(Posting).where(Posting.tenant_id == tid))
            or 0,
        )


def test_a_batch_posts_its_entries_in_order_with_their_postings(erp_db, make_tenant):
    tid = make_tenant("acme").id
    drafts = [sale(f"k{i}", f"{i}.50", sku=f"SKU-{i}", order=f"O-{i}") for i in range(1, 6)]
    with erp_db.tenant_session(tid) as s:
        entries = service.post_entries(s, drafts, actor="batch")
        assert [e.idempotency_key for e in entries] == [d.idempotency_key for d in drafts]
        assert len({e.id for e in entries}) == 5
        e3 = entries[2]
        assert e3.posted_by == "batch" and e3.source_id == "k3"
        assert [(p.account.code, p.amount, p.sku) for p in e3.postings] == [
            ("1122", D("3.5"), "SKU-3"),
            ("5001", D("-3.5"), "SKU-3"),
        ]
    assert count(erp_db, tid) == (5, 10)


def test_a_batch_costs_a_few_statements_however_many_entries(erp_db, make_tenant):
    tid = make_tenant("acme").id
    seen: list[str] = []

    def counted(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    with erp_db.tenant_session(tid) as s:
        service.post_entries(s, [sale("warm")])  # the chart and the period, read once
        event.listen(erp_db.engine, "before_cursor_execute", counted)
        try:
            service.post_entries(s, [sale(f"k{i}", sku=f"S{i % 7}") for i in range(200)])
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", counted)
    assert count(erp_db, tid) == (201, 402)
    # the keys looked up, the entries inserted, the postings inserted, a savepoint around them
    assert len(seen) <= 8, seen


def test_a_batch_posts_the_same_without_returning_its_entries(erp_db, make_tenant):
    """returning=False: nothing comes back, and exactly what a returning batch posts is
    stored (replays and twins included)."""
    drafts = [sale(f"k{i}", f"{i}.25", sku=f"S{i}", order=f"O{i}") for i in range(1, 5)]
    stores = []
    for name, returning in (("with", True), ("without", False)):
        tid = make_tenant(name).id
        with erp_db.tenant_session(tid) as s:
            service.post_entry(s, drafts[0])
        with erp_db.tenant_session(tid) as s:
            got = service.post_entries(s, [*drafts, drafts[1]], returning=returning)
            assert (len(got) == 5) if returning else (got == [])
        assert count(erp_db, tid) == (4, 8)
        stores.append([row[0:1] + row[2:] for row in stored(erp_db, tid)])
    assert stores[0] == stores[1]


def test_replays_and_twins_post_once(erp_db, make_tenant):
    tid = make_tenant("acme").id
    with erp_db.tenant_session(tid) as s:
        first = service.post_entry(s, sale("k1")).id
    with erp_db.tenant_session(tid) as s:
        entries = service.post_entries(s, [sale("k1"), sale("k2"), sale("k2"), sale("k3")])
        ids = [e.id for e in entries]
    assert ids[0] == first and ids[1] == ids[2] and len(set(ids)) == 3
    assert count(erp_db, tid) == (3, 6)


@pytest.mark.parametrize(
    "drafts, message",
    [
        (
            [sale("a"), sale("b", "0.001")],
            r"entry 2 \('b'\): posting 1: amount 0.001 has more decimals",
        ),
        ([sale("a"), sale("a", "5.00")], r"entry 2 \('a'\): entry 1 of the batch has the same key"),
        (
            [sale("new"), sale("old", "7.00")],
            r"entry 2 \('old'\): idempotency key 'old' was already used by entry \d+ with "
            "different content",
        ),
        (
            [sale("a"), sale("b", day=datetime.date(2026, 9, 30))],
            r"entry 2 \('b'\): period 2026-09 is locked \(by boss",
        ),
        (
            [
                sale("a"),
                EntryDraft(
                    date=DAY,
                    narration="x",
                    postings=(
                        PostingDraft(account="9999", amount=D(1)),
                        PostingDraft(account="5001", amount=D(-1)),
                    ),
                    idempotency_key="c",
                ),
            ],
            r"entry 2 \('c'\): posting 1: unknown account '9999'",
        ),
    ],
)
def test_one_bad_draft_refuses_the_batch_and_stores_nothing(erp_db, make_tenant, drafts, message):
    tid = make_tenant("acme").id
    with erp_db.tenant_session(tid) as s:
        service.post_entry(s, sale("old"))
        service.lock_period(s, "2026-09", actor="boss")
    before = stored(erp_db, tid)
    with pytest.raises(LedgerError, match=message), erp_db.tenant_session(tid) as s:
        service.post_entries(s, drafts)
    assert stored(erp_db, tid) == before


def test_plugins_validate_each_new_draft(erp_db, make_tenant):
    tid = make_tenant("acme").id
    seen = []

    class Hooks:
        def erp_ledger_validate(self, session, draft):
            seen.append(draft.idempotency_key)
            return [["no invoice"]] if draft.idempotency_key == "b" else [[]]

    with (
        pytest.raises(LedgerError, match=r"entry 2 \('b'\): no invoice"),
        erp_db.tenant_session(tid) as s,
    ):
        service.post_entries(s, [sale("a"), sale("b"), sale("c")], hooks=Hooks())
    assert seen == ["a", "b", "c"] and count(erp_db, tid) == (0, 0)


def test_the_batch_is_per_tenant(erp_db, make_tenant):
    a, b = make_tenant("aa").id, make_tenant("bb").id
    with erp_db.tenant_session(a) as s:
        service.post_entries(s, [sale("k1"), sale("k2")])
    with erp_db.tenant_session(b) as s:  # the same keys are another tenant's business
        service.post_entries(s, [sale("k1", "3.00")])
    assert count(erp_db, a) == (2, 4) and count(erp_db, b) == (1, 2)


SEQ = itertools.count()
KEYS = st.sampled_from(["k1", "k2", "k3", "k4"])
DRAFTS = st.lists(
    st.builds(
        sale,
        KEYS,
        st.sampled_from(["1.00", "2.50", "0.001", "99999.99"]),
        st.sampled_from([DAY, datetime.date(2026, 9, 30)]),
        sku=st.sampled_from(["A", "B", None]),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    before=st.lists(st.tuples(KEYS, st.sampled_from(["1.00", "2.50"])), max_size=2), batch=DRAFTS
)
def test_property_a_batch_stores_what_one_by_one_would(erp_db, make_tenant, before, batch):
    """Whatever was posted before and whatever the batch holds (replays, twins, conflicts,
    bad amounts, a locked period): the batch stores exactly what posting its drafts one by one
    stores when all of them post, and nothing when one of them is refused."""
    n = next(SEQ)
    one, many = make_tenant(f"one-{n}").id, make_tenant(f"many-{n}").id
    for tid in (one, many):
        with erp_db.tenant_session(tid) as s:
            service.lock_period(s, "2026-09", actor="boss")
            for key, amount in dict(before).items():
                service.post_entry(s, sale(key, amount))
    refused = False
    s = erp_db.tenant_session(one).__enter__()
    try:
        expected_ids = [service.post_entry(s, d).id for d in batch]
        s.commit()
    except LedgerError:
        refused = True
        s.rollback()
    finally:
        s.close()
    prior = stored(erp_db, many)
    if refused:
        with pytest.raises(LedgerError), erp_db.tenant_session(many) as s:
            service.post_entries(s, batch)
        assert stored(erp_db, many) == prior
    else:
        with erp_db.tenant_session(many) as s:
            got = service.post_entries(s, batch)
        assert len(got) == len(expected_ids)
        # the same entry where the one-by-one posts got the same entry
        assert [expected_ids.index(i) for i in expected_ids] == [
            [e.id for e in got].index(e.id) for e in got
        ]
        assert stored(erp_db, many) == stored(erp_db, one)


@pytest.mark.postgres
@pytest.mark.skipif(
    not os.environ.get("ERP_TEST_DATABASE_URL", "").startswith("postgresql"),
    reason="a concurrent transaction posting the same key: PostgreSQL",
)
def test_a_key_posted_concurrently_makes_the_batch_answer_with_that_entry(erp_db, make_tenant):
    tid = make_tenant("acme").id
    theirs: list[int] = []

    class Hooks:
        def erp_ledger_validate(self, session, draft):
            if draft.idempotency_key == "k2" and not theirs:
                # another worker posts k2 and commits after this batch looked the keys up
                with erp_db.tenant_session(tid) as other:
                    theirs.append(service.post_entry(other, sale("k2"), hooks=None).id)
            return [[]]

    with erp_db.tenant_session(tid) as s:
        got = service.post_entries(s, [sale("k1"), sale("k2"), sale("k3")], hooks=Hooks())
        ids = [e.id for e in got]
    assert ids[1] == theirs[0] and len(set(ids)) == 3
    assert count(erp_db, tid) == (3, 6)


def _posted(erp_db: Any, tid: int) -> list[tuple[str, str]]:
    """(key, actor) of the tenant's entries, in the order they were posted."""
    with erp_db.tenant_session(tid) as s:
        return [
            (e.idempotency_key, e.posted_by)
            for e in s.scalars(select(JournalEntry).order_by(JournalEntry.id))
        ]


def test_a_posting_batch_posts_its_calls_together_in_their_order(erp_db, make_tenant):
    """Calls that want nothing back are queued and posted at the block's end with one insert
    of entries for all of them, in call order, each with its call's actor. (More entries than
    ``FEW_ROWS``: fewer go in one statement each.)"""
    tid = make_tenant("acme").id
    outer = [f"r{i}" for i in range(1, FEW_ROWS + 1)]
    inserts: list[str] = []

    def counted(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO LEDGER_ENTRY"):
            inserts.append(statement)

    with erp_db.tenant_session(tid) as s:
        service.post_entries(s, [sale("warm")])
        event.listen(erp_db.engine, "before_cursor_execute", counted)
        try:
            with service.posting_batch(s):
                service.post_entries(s, [sale(k) for k in outer], actor="oms", returning=False)
                with service.posting_batch(s):  # nested: joins the outer block
                    service.post_entries(s, [sale("c1")], actor="inventory", returning=False)
                assert inserts == []  # nothing posted yet
            assert len(inserts) == 1
        finally:
            event.remove(erp_db.engine, "before_cursor_execute", counted)
    assert _posted(erp_db, tid) == [
        ("warm", ""),
        *((k, "oms") for k in outer),
        ("c1", "inventory"),
    ]


def test_an_entry_wanted_at_once_comes_after_what_the_batch_queued(erp_db, make_tenant):
    tid = make_tenant("acme").id
    with erp_db.tenant_session(tid) as s, service.posting_batch(s):
        service.post_entries(s, [sale("q1")], returning=False)
        (got,) = service.post_entries(s, [sale("now")])  # returning: posted at once
        assert got.idempotency_key == "now"
        service.post_entries(s, [sale("q2")], returning=False)
        assert service.post_entry(s, sale("single")).idempotency_key == "single"
    assert [k for k, _ in _posted(erp_db, tid)] == ["q1", "now", "q2", "single"]


def test_a_refused_draft_in_a_posting_batch_stores_nothing_of_it(erp_db, make_tenant):
    tid = make_tenant("acme").id
    refused = pytest.raises(LedgerError, match=r"entry 2 \('bad'\)")
    with refused, erp_db.tenant_session(tid) as s, service.posting_batch(s):
        service.post_entries(s, [sale("ok")], returning=False)
        service.post_entries(s, [sale("bad", amount="0.001")], returning=False)
    assert count(erp_db, tid) == (0, 0)


def test_a_posting_batch_whose_block_raises_posts_nothing(erp_db, make_tenant):
    tid = make_tenant("acme").id
    with erp_db.tenant_session(tid) as s:
        with pytest.raises(RuntimeError), service.posting_batch(s):
            service.post_entries(s, [sale("k1")], returning=False)
            raise RuntimeError("the caller's work failed")
        service.post_entries(s, [sale("k2")], returning=False)  # no batch open: at once
    assert [k for k, _ in _posted(erp_db, tid)] == ["k2"]
