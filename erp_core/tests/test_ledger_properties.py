"""Property-based: random sequences of posts (good, unbalanced, replayed, conflicting),
reversals and period locks and unlocks keep every invariant of the books.

- every entry balances in each currency and in the tenant currency;
- the trial balance adds up to zero per currency (and in the tenant currency) and equals the
  balances a simple model of the operations expects;
- rows once posted never change, and refused operations write nothing;
- no entry lands in a period after it was locked.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
from collections import defaultdict
from decimal import Decimal as D
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select, text

from erp_core.ledger import service
from erp_core.ledger.models import JournalEntry, Posting
from erp_core.ledger.service import LedgerError
from erp_core.ledger.types import EntryDraft, PostingDraft
from erp_core.tenancy.service import create_tenant

ACCOUNTS = ("1001", "1002", "1122", "1405", "220201", "220202", "5001", "5401", "560101")
RATES = {"CNY": (D(1),), "USD": (D("7.1234"), D("6.9"), D("0.5")), "JPY": (D("0.0478"), D(1))}
PLACES = {"CNY": 2, "USD": 2, "JPY": 0}
DIMS = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from(["tmall", "jd", "douyin"]),
        "sku": st.sampled_from(["SKU-1", "SKU-2"]),
        "warehouse": st.sampled_from(["WH-1", "WH-2"]),
    },
)
_slugs = itertools.count(1)


@st.composite
def groups(draw: st.DrawFn) -> list[PostingDraft]:
    """Postings in one currency at one rate that add up to zero."""
    cur = draw(st.sampled_from(sorted(RATES)))
    rate = draw(st.sampled_from(RATES[cur]))
    unit = D(1).scaleb(-PLACES[cur])
    amounts = draw(st.lists(st.integers(-(10**6), 10**6).filter(bool), min_size=1, max_size=3))
    amounts.append(-sum(amounts))
    out = []
    for a in amounts:
        if a == 0:
            continue
        out.append(
            PostingDraft(
                account=draw(st.sampled_from(ACCOUNTS)),
                amount=D(a) * unit,
                currency=None if cur == "CNY" and draw(st.booleans()) else cur,
                rate=None if cur == "CNY" else rate,
                **draw(DIMS),
            )
        )
    return out


@st.composite
def drafts(draw: st.DrawFn) -> tuple[datetime.date, tuple[PostingDraft, ...], str]:
    lines = [p for g in draw(st.lists(groups(), min_size=1, max_size=3)) for p in g]
    if len(lines) < 2:
        lines = [
            PostingDraft(account="1001", amount=D("1.00")),
            PostingDraft(account="3001", amount=D("-1.00")),
        ]
    day = draw(st.dates(datetime.date(2026, 1, 1), datetime.date(2026, 4, 30)))
    text_ = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)
    narration = draw(text_.filter(lambda t: t.strip()))
    return day, tuple(lines), narration


class Books(RuleBasedStateMachine):
    db: Any = None
    registry: Any = None

    def __init__(self) -> None:
        super().__init__()
        with self.db.session() as s, s.begin():
            self.tid = create_tenant(s, f"prop-{next(_slugs)}", "Prop", registry=self.registry).id
        self.drafts: dict[str, EntryDraft] = {}
        self.ids: dict[str, int] = {}
        self.reversed: set[int] = set()
        self.reversals: set[int] = set()
        self.locked: dict[str, int] = {}  # period -> entries in it when it was locked
        self.expected: dict[tuple[str, str], D] = defaultdict(D)
        self.snapshot: dict[str, list[tuple]] = {"entries": [], "postings": []}

    # -- helpers ---------------------------------------------------------------------------

    def _rows(self) -> dict[str, list[tuple]]:
        with self.db.tenant_session(self.tid) as s:
            e = s.execute(
                text("SELECT * FROM ledger_entry WHERE tenant_id = :t ORDER BY id"),
                {"t": self.tid},
            ).all()
            p = s.execute(
                text("SELECT * FROM ledger_posting WHERE tenant_id = :t ORDER BY id"),
                {"t": self.tid},
            ).all()
        return {"entries": [tuple(r) for r in e], "postings": [tuple(r) for r in p]}

    def _entries_in(self, period: str) -> int:
        with self.db.tenant_session(self.tid) as s:
            q = select(func.count()).select_from(JournalEntry).where(JournalEntry.period == period)
            return int(s.scalar(q) or 0)

    def _apply(self, entry: JournalEntry) -> None:
        for p in entry.postings:
            self.expected[(p.account.code, p.currency)] += p.amount

    def _refused(self, call) -> str:
        before = self._rows()
        with pytest.raises(LedgerError) as exc, self.db.tenant_session(self.tid) as s:
            call(s)
        assert self._rows() == before, "a refused operation wrote something"
        return str(exc.value)

    # -- rules -----------------------------------------------------------------------------

    @rule(data=drafts(), replay=st.booleans())
    def post(self, data, replay) -> None:
        day, lines, narration = data
        if replay and self.drafts:
            key = sorted(self.drafts)[len(lines) % len(self.drafts)]
            old = self.drafts[key]
            if narration.startswith("a"):  # same key, same content: the first entry again
                with self.db.tenant_session(self.tid) as s:
                    assert service.post_entry(s, old).id == self.ids[key]
                return
            changed = f"{old.narration} (changed)"
            draft = EntryDraft(date=day, narration=changed, postings=lines, idempotency_key=key)
            assert "already used" in self._refused(lambda s: service.post_entry(s, draft))
            return
        key = f"k{len(self.drafts)}"
        draft = EntryDraft(date=day, narration=narration, postings=lines, idempotency_key=key)
        period = service.period_of(day)
        if period in self.locked:
            assert "is locked" in self._refused(lambda s: service.post_entry(s, draft))
            return
        with self.db.tenant_session(self.tid) as s:
            entry = service.post_entry(s, draft)
            self._apply(entry)
            self.ids[key], self.drafts[key] = entry.id, draft
        self.snapshot = self._rows()

    @rule(data=drafts(), skew=st.integers(1, 99))
    def post_unbalanced(self, data, skew) -> None:
        day, lines, narration = data
        first = lines[0]
        cur = first.currency or "CNY"
        bad = PostingDraft(
            account=first.account,
            amount=first.amount + D(skew).scaleb(-PLACES[cur]),
            currency=first.currency,
            rate=first.rate,
        )
        draft = EntryDraft(
            date=day, narration=narration, postings=(bad, *lines[1:]), idempotency_key="bad"
        )
        assert "does not balance" in self._refused(lambda s: service.post_entry(s, draft))

    @rule(pick=st.integers(0, 10**6), late=st.integers(0, 40))
    def reverse(self, pick, late) -> None:
        if not self.ids:
            return
        ids = sorted(self.ids.values())
        target = ids[pick % len(ids)]
        with self.db.tenant_session(self.tid) as s:
            orig = s.get(JournalEntry, target)
            assert orig is not None
            day = orig.date + datetime.timedelta(days=late)
        if target in self.reversed or target in self.reversals:
            self._refused(lambda s: service.reverse_entry(s, target, date=day, reason="r"))
            return
        if service.period_of(day) in self.locked:
            msg = self._refused(lambda s: service.reverse_entry(s, target, date=day, reason="r"))
            assert "is locked" in msg
            return
        with self.db.tenant_session(self.tid) as s:
            rev = service.reverse_entry(s, target, date=day, reason="r")
            self._apply(rev)
            self.reversed.add(target)
            self.reversals.add(rev.id)
            self.ids[f"reversal:{target}"] = rev.id
        self.snapshot = self._rows()

    @rule(month=st.integers(1, 5))
    def lock(self, month) -> None:
        period = f"2026-{month:02d}"
        with self.db.tenant_session(self.tid) as s:
            service.lock_period(s, period, actor="prop")
        self.locked.setdefault(period, self._entries_in(period))
        self.snapshot = self._rows()  # locking writes only its lock (and the audit event)

    @rule(month=st.integers(1, 5))
    def unlock(self, month) -> None:
        period = f"2026-{month:02d}"
        if period not in self.locked:
            assert "not locked" in self._refused(
                lambda s: service.unlock_period(s, period, actor="prop")
            )
            return
        with self.db.tenant_session(self.tid) as s:
            service.unlock_period(s, period, actor="prop")
        del self.locked[period]

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def entries_balance(self) -> None:
        with self.db.tenant_session(self.tid) as s:
            per_cur = s.execute(
                select(Posting.entry_id, Posting.currency, func.sum(Posting.amount)).group_by(
                    Posting.entry_id, Posting.currency
                )
            ).all()
            per_base = s.execute(
                select(Posting.entry_id, func.sum(Posting.amount_base)).group_by(Posting.entry_id)
            ).all()
        assert all(total == 0 for _, _, total in per_cur)
        assert all(total == 0 for _, total in per_base)

    @invariant()
    def trial_balance_is_zero_and_as_expected(self) -> None:
        with self.db.tenant_session(self.tid) as s:
            rows = service.trial_balance(s)
        by_cur: dict[str, D] = defaultdict(D)
        for r in rows:
            by_cur[r.currency] += r.balance
        assert all(v == 0 for v in by_cur.values())
        assert sum(r.balance_base for r in rows) == 0
        got = {(r.account, r.currency): r.balance for r in rows if r.balance}
        want = {k: v for k, v in self.expected.items() if v}
        assert got == want

    @invariant()
    def posted_rows_never_change(self) -> None:
        now = self._rows()
        for kind in ("entries", "postings"):
            assert now[kind][: len(self.snapshot[kind])] == self.snapshot[kind]

    @invariant()
    def nothing_lands_in_a_locked_period(self) -> None:
        for period, count in self.locked.items():
            assert self._entries_in(period) == count


def test_random_operations_keep_the_books_balanced(erp_db, erp_registry):
    Books.db, Books.registry = erp_db, erp_registry
    run_state_machine_as_test(
        Books,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            # no "explain" phase: tracing every database call makes a failure take minutes
            phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


@settings(max_examples=300)
@given(
    value=st.one_of(st.none(), st.text(max_size=12), st.integers(), st.just(" \t")),
    limit=st.integers(min_value=0, max_value=10),
    required=st.booleans(),
)
def test_the_fast_text_check_never_passes_what_the_full_one_refuses(
    value: Any, limit: int, required: bool
) -> None:
    from erp_core.ledger.service import _text_ok, _text_problem

    if _text_ok(value, limit, required):
        assert _text_problem(value, "field", limit, required=required) is None


_DIM_VALUES = st.one_of(
    st.none(),
    st.text(max_size=120),  # non-ASCII, NUL, surrogates and over-long values among them
    st.text(alphabet="abcXYZ-_ 0123", max_size=110),
    st.integers(),
)


@given(st.lists(_DIM_VALUES, min_size=5, max_size=5))
def test_the_dimensions_quick_check_agrees_with_each_value_checked_alone(values: list[Any]):
    """The one-pass check of a posting's dimensions passes exactly when each value alone
    passes (when it does not, each value is checked again for its message)."""
    alone = all(service._text_ok(v, service.LIMITS["dimension"], False) for v in values)
    assert service._dims_ok(values) == alone


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
    ),
    st.sampled_from([0, 2, 4, 10]),
)
def test_fits_and_fmt_agree_with_quantizing(d: D, places: int):
    q = D(1).scaleb(-places)
    assert service._fits(d, places) == (d == d.quantize(q))
    assert service.fmt(d, places) == f"{d.quantize(q):f}"


#: per field of a posting, values the plain path must leave to the full check (or not)
_ODD: dict[str, list[Any]] = {
    "account": ["", 1001],
    "amount": [
        D(0),
        D("-0.00"),
        D("1E+12"),
        D("-1E+12"),
        D("999999999999.995"),
        D("0.001"),
        D("NaN"),
        D("-Infinity"),
        7,
        "12.5",
        1.5,
    ],
    "currency": ["CNY", "USD", "JPY", "cny"],
    "rate": [D(1), D("1.000"), D("7.1"), D(0)],
    "memo": ["x" * 500, "x" * 501, "a\x00", "备注", None, 5],
    "channel": ["", "天猫", "\x00", "c" * 101, 3],
    "sku": ["", "S" * 100, "S" * 101],
    "order": [7, "订单"],
}


@st.composite
def _postings(draw: Any) -> PostingDraft:
    """A posting the plain path takes, with none, one or two of its values made odd."""
    values: dict[str, Any] = {
        "account": draw(st.sampled_from(["1001", "5001"])),
        "amount": draw(
            st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**11)
        ),
        "memo": draw(st.sampled_from(["", "memo"])),
        "sku": draw(st.sampled_from([None, "SKU-1"])),
        "order": draw(st.sampled_from([None, "o1"])),
    }
    odd = [(field, value) for field in sorted(_ODD) for value in _ODD[field]]
    for field, value in draw(st.lists(st.sampled_from(odd), min_size=_odd_count(draw), max_size=2)):
        values[field] = value
    return PostingDraft(**values)


def _odd_count(draw: Any) -> int:
    """How many values to make odd at least: none for a third of the postings, else one."""
    return 0 if draw(st.integers(0, 2)) == 0 else 1


@settings(max_examples=400)
@given(postings=st.lists(_postings() | st.just("not a posting"), min_size=2, max_size=5))
def test_the_plain_posting_path_gives_what_the_full_check_gives(postings: list[Any]) -> None:
    """Common postings skip the full check of each value; lines and problems are the same
    either way, for good postings and bad ones."""
    from erp_core.tenancy.models import Tenant

    tenant = Tenant(slug="t", name="t", currency="CNY")
    draft = EntryDraft(
        date=datetime.date(2026, 11, 30),
        narration="n",
        postings=tuple(postings),
        idempotency_key="k",
    )
    fast = service._normalize(draft, tenant)
    full = service._normalize(draft, tenant, plain=False)
    assert fast == full
    for a, b in zip(fast[0], full[0], strict=True):  # equal, and the same kinds of values
        names = [f.name for f in dataclasses.fields(a)]
        assert [type(getattr(a, n)) for n in names] == [type(getattr(b, n)) for n in names]
        assert str(a.base) == str(b.base) and str(a.amount) == str(b.amount)


def _digest_as_first_written(lines: Any, draft: EntryDraft, reverses_id: int | None) -> str:
    """The entry digest as the ledger first computed it (stored digests were made so): the
    body's keys sorted by the JSON encoder, every rate through ``fmt_rate``."""
    import hashlib
    import json

    body = {
        "date": draft.date.isoformat(),
        "narration": draft.narration,
        "source": [draft.source_type, draft.source_id],
        "reverses": reverses_id,
        "postings": [
            [
                x.account,
                service.fmt(x.amount, 4),
                x.currency,
                service.fmt_rate(x.rate),
                x.memo,
                [x.dims[d] for d in service.DIMENSIONS],
            ]
            for x in lines
        ],
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


_texts = st.text(max_size=12)


@st.composite
def _lines(draw: Any) -> Any:
    return service._Line(
        account=draw(st.sampled_from(["1122", "6001", "账户"])),
        # within what the ledger takes (MAX_AMOUNT); beyond it the digest's text is never made
        amount=draw(
            st.decimals(
                allow_nan=False,
                allow_infinity=False,
                places=4,
                min_value=-(10**11),
                max_value=10**11,
            )
        ),
        currency=draw(st.sampled_from(["CNY", "USD", "JPY"])),
        rate=draw(st.sampled_from([D(1), D("1.000"), D("7.1234"), D("0.0000000001")])),
        base=D(0),
        memo=draw(_texts),
        dims={d: draw(st.none() | _texts) for d in service.DIMENSIONS},
    )


@given(
    lines=st.lists(_lines(), max_size=4),
    narration=_texts,
    source=st.tuples(st.none() | _texts, st.none() | _texts),
    reverses_id=st.none() | st.integers(1, 10**9),
    day=st.dates(datetime.date(2000, 1, 1), datetime.date(2099, 12, 31)),
)
def test_the_entry_digest_is_the_one_stored_entries_were_given(
    lines: Any, narration: str, source: tuple[Any, Any], reverses_id: Any, day: Any
) -> None:
    """A replay compares its digest with the stored one: the digest of any content (other
    alphabets, no dimensions, any rate) must stay what it always was."""
    draft = EntryDraft(
        date=day,
        narration=narration,
        postings=(),
        idempotency_key="k",
        source_type=source[0],
        source_id=source[1],
    )
    want = _digest_as_first_written(lines, draft, reverses_id)
    assert service._digest(lines, draft, reverses_id) == want


def test_an_entry_digest_is_pinned() -> None:
    """One digest written down: the reference above and the ledger cannot drift together."""
    line = service._Line(
        account="1122",
        amount=D("12.50"),
        currency="CNY",
        rate=D(1),
        base=D("12.50"),
        memo="备注 memo",
        dims={"channel": "tmall", "store": None, "sku": "SKU-1", "order": None, "warehouse": None},
    )
    draft = EntryDraft(
        date=datetime.date(2026, 12, 2),
        narration="Sale 1",
        postings=(),
        idempotency_key="k",
        source_type="oms_order",
        source_id="1",
    )
    digest = service._digest([line, dataclasses.replace(line, amount=D("-12.5"))], draft, None)
    assert digest == _digest_as_first_written(
        [line, dataclasses.replace(line, amount=D("-12.5"))], draft, None
    )
    assert digest == PINNED_DIGEST


#: computed with the ledger as it was before the digest was made faster
PINNED_DIGEST = "f802dcfb573f95373a6b6ea425b2eeee2321359ffe3bf25b76a4fd2e85039d51"
