"""The database guards the books too: immutable rows (SQLite and PostgreSQL triggers), one
entry per idempotency key and one reversal per entry under concurrency, period locks that wait
for posts in flight (PostgreSQL)."""

from __future__ import annotations

import datetime
import os
import threading
import time
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from erp_core.db.session import system_access
from erp_core.ledger import service
from erp_core.ledger.models import JournalEntry, Posting
from erp_core.ledger.service import LedgerError
from erp_core.ledger.types import EntryDraft, PostingDraft

PG_URL = os.environ.get("ERP_TEST_DATABASE_URL", "")
needs_postgres = pytest.mark.skipif(
    not PG_URL.startswith("postgresql"),
    reason="concurrency on PostgreSQL; set ERP_TEST_DATABASE_URL to run",
)
DAY = datetime.date(2026, 10, 3)
THREADS = 8


def sale(key="k1", day=DAY):
    return EntryDraft(
        date=day,
        narration="sale",
        idempotency_key=key,
        postings=(
            PostingDraft(account="1122", amount=D("100.00"), channel="tmall"),
            PostingDraft(account="5001", amount=D("-100.00"), channel="tmall"),
        ),
    )


def rows(erp_db):
    with erp_db.session() as s, system_access(s):
        entries = [
            tuple(r) for r in s.execute(text("SELECT * FROM ledger_entry ORDER BY id")).all()
        ]
        postings = [
            tuple(r) for r in s.execute(text("SELECT * FROM ledger_posting ORDER BY id")).all()
        ]
    return entries, postings


@pytest.fixture
def posted(erp_db, make_tenant):
    tid = make_tenant("acme").id
    with erp_db.tenant_session(tid) as s:
        entry_id = service.post_entry(s, sale()).id
    return tid, entry_id


# --- immutability -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE ledger_posting SET amount = amount + 10000",
        "UPDATE ledger_posting SET channel = 'jd'",
        "UPDATE ledger_entry SET narration = 'rewritten'",
        "UPDATE ledger_entry SET date = date",
        "DELETE FROM ledger_posting",
        "DELETE FROM ledger_entry",
    ],
)
def test_raw_sql_cannot_change_posted_rows(erp_db, posted, sql):
    tid, _ = posted
    before = rows(erp_db)
    assert before[0] and before[1]
    with pytest.raises(DBAPIError, match="immutable"), erp_db.tenant_session(tid) as s:
        s.execute(text(sql))
    assert rows(erp_db) == before


def test_orm_changes_of_posted_rows_fail_in_the_database(erp_db, posted):
    tid, entry_id = posted
    before = rows(erp_db)
    with pytest.raises(DBAPIError, match="immutable"), erp_db.tenant_session(tid) as s:
        entry = s.get(JournalEntry, entry_id)
        assert entry is not None
        entry.narration = "changed behind the ledger's back"
        s.flush()
    with pytest.raises(DBAPIError, match="immutable"), erp_db.tenant_session(tid) as s:
        posting = s.scalars(select(Posting)).first()
        s.delete(posting)
        s.flush()
    assert rows(erp_db) == before


def test_triggers_exist_on_this_database(erp_db):
    with erp_db.engine.connect() as conn:
        if erp_db.is_postgres:
            q = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        else:
            q = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        names = set(conn.execute(text(q)).scalars())
    expected = (
        {"ledger_entry_immutable", "ledger_posting_immutable"}
        if erp_db.is_postgres
        else {
            "ledger_entry_no_update",
            "ledger_entry_no_delete",
            "ledger_posting_no_update",
            "ledger_posting_no_delete",
        }
    )
    assert expected <= names


# --- concurrency (PostgreSQL) -------------------------------------------------------------


def _race(n, work):
    """Run ``work(i)`` in ``n`` threads released together; returns results and errors."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n
    errors: list[BaseException | None] = [None] * n

    def run(i):
        try:
            barrier.wait(timeout=30)
            results[i] = work(i)
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return results, errors


@pytest.mark.postgres
@needs_postgres
def test_concurrent_posts_of_one_key_make_one_entry(erp_db, make_tenant):
    tid = make_tenant("acme").id

    for n in range(1, 4):  # a few rounds, each with a fresh key, to give the race a chance

        def work(i, key=f"round-{n}"):
            with erp_db.tenant_session(tid) as s:
                return service.post_entry(s, sale(key=key)).id

        ids, errors = _race(THREADS, work)
        assert errors == [None] * THREADS
        assert len(set(ids)) == 1
        with erp_db.tenant_session(tid) as s:
            assert s.scalar(select(func.count()).select_from(JournalEntry)) == n
            assert s.scalar(select(func.count()).select_from(Posting)) == 2 * n


@pytest.mark.postgres
@needs_postgres
def test_concurrent_posts_of_many_keys_all_land(erp_db, make_tenant):
    tid = make_tenant("acme").id

    def work(i):
        with erp_db.tenant_session(tid) as s:
            return service.post_entry(s, sale(key=f"k{i % 4}")).id

    ids, errors = _race(THREADS, work)
    assert errors == [None] * THREADS
    assert len(set(ids)) == 4
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == 4


@pytest.mark.postgres
@needs_postgres
def test_concurrent_reversals_make_one(erp_db, posted):
    tid, entry_id = posted

    def work(i):
        with erp_db.tenant_session(tid) as s:
            return service.reverse_entry(s, entry_id, reason=f"attempt {i}").id

    ids, errors = _race(THREADS, work)
    done = [x for x in ids if x is not None]
    assert len(set(done)) == 1
    for e in errors:
        assert e is None or (isinstance(e, LedgerError) and "already reversed" in str(e)), e
    with erp_db.tenant_session(tid) as s:
        reversals = s.scalars(select(JournalEntry.id).where(JournalEntry.reverses_id == entry_id))
        assert list(reversals) == [done[0]]


@pytest.mark.postgres
@needs_postgres
def test_locking_waits_for_a_post_in_flight(erp_db, make_tenant):
    tid = make_tenant("acme").id
    inside, go = threading.Event(), threading.Event()

    class SlowHooks:
        """A plugin validating slowly: the post is in flight until ``go``."""

        def erp_ledger_validate(self, session, draft):
            inside.set()
            assert go.wait(timeout=30)
            return []

    def slow_post():
        with erp_db.tenant_session(tid) as s:
            service.post_entry(s, sale(), hooks=SlowHooks())

    locked_at: list[float] = []

    def lock():
        with erp_db.tenant_session(tid) as s:
            service.lock_period(s, "2026-10", actor="closer")
        locked_at.append(time.monotonic())

    poster = threading.Thread(target=slow_post)
    poster.start()
    assert inside.wait(timeout=30)
    locker = threading.Thread(target=lock)
    locker.start()
    time.sleep(0.5)
    assert locked_at == [], "the lock did not wait for the post in flight"
    released = time.monotonic()
    go.set()
    poster.join(timeout=30)
    locker.join(timeout=30)
    assert locked_at and locked_at[0] >= released
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == 1
    with pytest.raises(LedgerError, match="2026-10 is locked"), erp_db.tenant_session(tid) as s:
        service.post_entry(s, sale(key="after-the-lock"))
