"""The ledger service: what posts, what is refused (with nothing stored), reversals,
idempotency, currencies and rounding, periods, dimensions, accounts and stock valuation."""

from __future__ import annotations

import datetime
from datetime import UTC
from decimal import Decimal as D

import pytest
from sqlalchemy import func, select

from erp_core.audit.models import AuditEvent
from erp_core.db.session import system_access
from erp_core.inventory.types import StockValuation
from erp_core.ledger import service
from erp_core.ledger.models import Account, AccountMapping, JournalEntry, PeriodLock, Posting
from erp_core.ledger.service import LedgerError
from erp_core.ledger.types import EntryDraft, PostingDraft

DAY = datetime.date(2026, 10, 3)


@pytest.fixture
def tid(make_tenant):
    return make_tenant("acme").id


def P(account, amount, **kw):
    return PostingDraft(account=account, amount=D(amount), **kw)


def draft(*postings, key="k1", day=DAY, narration="sale", **kw):
    return EntryDraft(
        date=day, narration=narration, postings=tuple(postings), idempotency_key=key, **kw
    )


SALE = (P("1122", "100.00"), P("5001", "-100.00"))


def acc(s, code):
    a = service.account_by_code(s, code)
    assert a is not None, code
    return a


def counts(erp_db):
    with erp_db.session() as s, system_access(s):
        return (
            s.scalar(select(func.count()).select_from(JournalEntry)),
            s.scalar(select(func.count()).select_from(Posting)),
        )


def post(erp_db, tid, d, **kw):
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(s, d, **kw)
        return e.id


# --- the chart ----------------------------------------------------------------------------


def test_new_tenant_has_the_default_chart_and_mapping(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        accounts = {a.code: a for a in s.scalars(select(Account))}
        for code, zh in [
            ("1001", "库存现金"),
            ("1002", "银行存款"),
            ("1122", "应收账款"),
            ("1405", "库存商品"),
            ("2202", "应付账款"),
            ("220202", "暂估应付账款"),
            ("2221", "应交税费"),
            ("5001", "主营业务收入"),
            ("5401", "主营业务成本"),
            ("5601", "销售费用"),
            ("560101", "平台佣金及服务费"),
        ]:
            assert accounts[code].name_zh == zh
            assert accounts[code].name_en
        assert accounts["220202"].parent_id == accounts["2202"].id
        assert {a.type for a in accounts.values()} == {
            "asset",
            "liability",
            "equity",
            "income",
            "expense",
        }
        mapping = service.get_mapping(s)
        assert mapping["inventory"] == "1405" and mapping["grir"] == "220202"
        assert mapping["cogs"] == "5401"
        assert service.ensure_chart(s) == 0  # idempotent
        assert s.scalar(select(func.count()).select_from(AccountMapping)) == len(mapping)


def test_accounts_are_per_tenant(erp_db, make_tenant):
    a, b = make_tenant("acme").id, make_tenant("bolt").id
    with erp_db.tenant_session(a) as s:
        service.create_account(s, code="560104", name_zh="直播佣金", name_en="Live commissions")
    with erp_db.tenant_session(b) as s:
        assert service.account_by_code(s, "560104") is None
        with pytest.raises(LedgerError, match="unknown account '560104'"):
            service.post_entry(s, draft(P("560104", "1"), P("1002", "-1")))


def test_sub_accounts_follow_their_parent(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        live = service.create_account(s, code="560104", name_zh="直播", name_en="Live")
        assert live.type == "expense"
        assert live.parent_id == acc(s, "5601").id
        with pytest.raises(LedgerError, match="4 to 16 digits"):
            service.create_account(s, code="56x", name_zh="x", name_en="x")
        with pytest.raises(LedgerError, match="already exists"):
            service.create_account(s, code="5601", name_zh="x", name_en="x")
        with pytest.raises(LedgerError, match="of its type expense"):
            service.create_account(s, code="560105", name_zh="x", name_en="x", type="asset")
        with pytest.raises(LedgerError, match="type must be one of"):
            service.create_account(s, code="9001", name_zh="x", name_en="x")
        with pytest.raises(LedgerError, match="starts with 1002"):
            service.create_account(s, code="100301", name_zh="x", name_en="x", parent="1002")
        service.create_account(s, code="140501", name_zh="自营商品", name_en="Own goods")
        assert service.get_mapping(s)["inventory"] == "140501"  # moved to the sub-account
    post(erp_db, tid, draft(P("1002", "5"), P("3001", "-5")))
    with erp_db.tenant_session(tid) as s:
        with pytest.raises(LedgerError, match="already has postings"):
            service.create_account(s, code="100201", name_zh="工行", name_en="ICBC")
        bank = acc(s, "1002")
        with pytest.raises(LedgerError, match="has postings; its type cannot change"):
            service.update_account(s, bank, type="liability")
        service.update_account(s, bank, name_en="Bank", actor="me")
        assert bank.name_en == "Bank"
        with pytest.raises(LedgerError, match="is mapped to bank"):
            service.update_account(s, bank, is_active=False)
    with erp_db.session() as s, system_access(s):
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.tenant_id == tid)))
    assert "ledger.account.created" in actions and "ledger.account.changed" in actions


# --- posting and refusing -----------------------------------------------------------------


def test_posting_stores_the_entry_with_its_postings(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(
            s,
            draft(
                P("1122", "100.00", channel="tmall", store="shop-1", order="O-1", memo="m"),
                P("5001", "-100.00", channel="tmall", sku="SKU-1", warehouse="WH"),
                source_type="oms_order",
                source_id="O-1",
            ),
            actor="tester",
        )
        assert e.id and e.period == "2026-10" and e.posted_by == "tester"
        assert [(p.line, p.account.code, p.amount, p.amount_base) for p in e.postings] == [
            (1, "1122", D("100"), D("100")),
            (2, "5001", D("-100"), D("-100")),
        ]
    with erp_db.tenant_session(tid) as s:
        e = s.get(JournalEntry, e.id)
        p1, p2 = e.postings
        assert (p1.currency, p1.rate, p1.channel, p1.store, p1.order_ref, p1.memo) == (
            "CNY",
            D(1),
            "tmall",
            "shop-1",
            "O-1",
            "m",
        )
        assert (p2.sku, p2.warehouse, p2.date, p2.period) == ("SKU-1", "WH", DAY, "2026-10")
        assert (e.source_type, e.source_id) == ("oms_order", "O-1")


BAD = [
    (draft(P("1122", "100.00"), P("5001", "-90.00")), "does not balance in CNY"),
    (draft(P("1122", "100.00")), "at least two postings"),
    (draft(P("1122", "1"), P("9999", "-1")), "unknown account '9999'"),
    (draft(P("1122", "1"), P("2202", "-1")), "2202 .* has sub-accounts"),
    (draft(P("1122", "1.005"), P("5001", "-1.005")), "more decimals than CNY allows"),
    (
        draft(P("1122", "1", currency="JPY", rate=D("0.05")), P("5001", "-1.5", currency="JPY")),
        "more decimals than JPY allows",
    ),
    (draft(P("1122", "0"), P("5001", "0")), "must not be zero"),
    (draft(P("1122", "1", currency="USD"), P("5001", "-1", currency="USD")), "rate to CNY"),
    (
        draft(
            P("1122", "1", currency="USD", rate=D(0)), P("5001", "-1", currency="USD", rate=D(1))
        ),
        "greater than zero",
    ),
    (
        draft(P("1122", "1", rate=D("7.1")), P("5001", "-1")),
        "rate of the tenant currency CNY is 1",
    ),
    (draft(P("1122", "1", currency="usd"), P("5001", "-1")), "three capital letters"),
    (draft(*SALE, key=""), "idempotency_key must not be empty"),
    (draft(*SALE, narration="  "), "narration must not be empty"),
    (draft(*SALE, day=datetime.date(1800, 1, 1)), "outside"),
    (draft(P("1122", "1e13"), P("5001", "-1e13")), "too large"),
    (
        draft(
            P("1122", "100", currency="USD", rate=D("7.1")),
            P("5001", "-100", currency="USD", rate=D("7.2")),
        ),
        "use one rate per currency",
    ),
]


@pytest.mark.parametrize(("bad", "message"), BAD)
def test_bad_entries_are_refused_and_store_nothing(erp_db, tid, bad, message):
    before = counts(erp_db)
    with pytest.raises(LedgerError, match=message), erp_db.tenant_session(tid) as s:
        service.post_entry(s, bad)
    assert counts(erp_db) == before


def test_float_amounts_are_refused(erp_db, tid):
    with pytest.raises(LedgerError, match="never float"), erp_db.tenant_session(tid) as s:
        service.post_entry(
            s,
            draft(PostingDraft(account="1122", amount=1.5), P("5001", "-1.50")),  # type: ignore[arg-type]
        )
    assert counts(erp_db) == (0, 0)


def test_inactive_accounts_take_no_postings_but_reversals(erp_db, tid):
    earlier = post(erp_db, tid, draft(P("1122", "1"), P("5051", "-1"), key="before"))
    with erp_db.tenant_session(tid) as s:
        service.update_account(s, acc(s, "5051"), is_active=False)
    with pytest.raises(LedgerError, match=r"5051 .* inactive"), erp_db.tenant_session(tid) as s:
        service.post_entry(s, draft(P("1122", "1"), P("5051", "-1")))
    assert counts(erp_db) == (1, 2)
    with erp_db.tenant_session(tid) as s:  # undoing what was posted before stays possible
        assert service.reverse_entry(s, earlier, reason="closing the account").id


def test_every_problem_is_listed(erp_db, tid):
    with pytest.raises(LedgerError) as exc, erp_db.tenant_session(tid) as s:
        service.lock_period(s, "2026-10", actor="me")
        service.post_entry(s, draft(P("9998", "1"), P("9999", "-1")))
    text = str(exc.value)
    assert "unknown account '9998'" in text and "unknown account '9999'" in text
    assert "period 2026-10 is locked (by me on " in text


def test_plugin_validation_refuses_with_its_reasons(erp_db, tid):
    seen = []

    class Hooks:
        def erp_ledger_validate(self, session, draft):
            seen.append(draft.idempotency_key)
            return [["order O-9 is not shipped yet"], []]

    with pytest.raises(LedgerError, match="O-9 is not shipped"), erp_db.tenant_session(tid) as s:
        service.post_entry(s, draft(*SALE), hooks=Hooks())
    assert seen == ["k1"] and counts(erp_db) == (0, 0)
    post(erp_db, tid, draft(*SALE))  # the tenant's own plugins have no objection
    assert counts(erp_db) == (1, 2)


def test_enabled_plugins_validate_when_no_hooks_are_given(erp_db, erp_registry):
    """A caller that passes no hooks cannot skip the validation of the tenant's plugins."""
    from erp_core.tenancy.service import create_tenant, enable_plugin

    with erp_db.session() as s, s.begin():
        strict = create_tenant(s, "strict", "Strict", registry=erp_registry)
        enable_plugin(s, erp_registry, strict, "test_alpha", actor="test")
        lax = create_tenant(s, "lax", "Lax", registry=erp_registry).id
        strict_id = strict.id
    refused = draft(*SALE, narration="alpha refuses: no invoice")
    with pytest.raises(LedgerError, match="test_alpha refuses"):
        post(erp_db, strict_id, refused)
    with (
        pytest.raises(LedgerError, match="test_alpha refuses"),
        erp_db.tenant_session(strict_id) as s,
    ):
        e = service.post_entry(s, draft(*SALE, key="ok"))
        service.reverse_entry(s, e.id, reason="alpha refuses: no reason")
    assert post(erp_db, lax, refused)  # not enabled there: it does not exist


def test_plugin_validation_runs_through_the_registry(erp_db, erp_registry, tid):
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(s, draft(*SALE), hooks=erp_registry.hooks_for(()))
        assert e.id


# --- idempotency --------------------------------------------------------------------------


def test_same_key_posts_once(erp_db, tid):
    first = post(erp_db, tid, draft(*SALE))
    again = post(erp_db, tid, draft(*SALE))
    assert again == first
    assert counts(erp_db) == (1, 2)
    with pytest.raises(LedgerError, match=r"already used by entry .* different content"):
        post(erp_db, tid, draft(P("1122", "100.01"), P("5001", "-100.01")))
    assert counts(erp_db) == (1, 2)


def test_replay_is_answered_even_once_the_period_is_locked(erp_db, tid):
    first = post(erp_db, tid, draft(*SALE))
    with erp_db.tenant_session(tid) as s:
        service.lock_period(s, "2026-10", actor="me")
    assert post(erp_db, tid, draft(*SALE)) == first


def test_keys_are_per_tenant(erp_db, make_tenant):
    a, b = make_tenant("acme").id, make_tenant("bolt").id
    assert post(erp_db, a, draft(*SALE)) != post(erp_db, b, draft(*SALE))
    assert counts(erp_db) == (2, 4)


# --- reversal -----------------------------------------------------------------------------


def test_reversal_mirrors_and_links_the_original(erp_db, tid):
    orig = post(
        erp_db,
        tid,
        draft(
            P("1122", "10", currency="USD", rate=D("7.12345"), channel="amazon"),
            P("5001", "-10", currency="USD", rate=D("7.12345"), sku="S"),
        ),
    )
    with erp_db.tenant_session(tid) as s:
        rev = service.reverse_entry(s, orig, reason="wrong customer", actor="me")
        assert rev.reverses_id == orig and rev.date == DAY
        assert "wrong customer" in rev.narration
        assert service.reversal_of(s, orig) == rev.id
        o = s.get(JournalEntry, orig)
        assert [
            (p.account.code, -p.amount, p.currency, p.rate, -p.amount_base) for p in o.postings
        ] == [(p.account.code, p.amount, p.currency, p.rate, p.amount_base) for p in rev.postings]
        assert rev.postings[0].channel == "amazon" and rev.postings[1].sku == "S"
        assert all(r.balance == 0 and r.balance_base == 0 for r in service.trial_balance(s))
    with (
        pytest.raises(LedgerError, match=f"already reversed by entry {rev.id}"),
        erp_db.tenant_session(tid) as s,
    ):
        service.reverse_entry(s, orig, reason="again")
    with (
        pytest.raises(LedgerError, match="is the reversal of entry"),
        erp_db.tenant_session(tid) as s,
    ):
        service.reverse_entry(s, rev.id, reason="undo the undo")
    assert counts(erp_db) == (2, 4)


def test_reversal_dates_and_locked_periods(erp_db, tid):
    orig = post(erp_db, tid, draft(*SALE))
    with erp_db.tenant_session(tid) as s:
        service.lock_period(s, "2026-10", actor="auditor@acme.test")
    with (
        pytest.raises(LedgerError, match=r"period 2026-10 is locked .by auditor@acme.test on"),
        erp_db.tenant_session(tid) as s,
    ):
        service.reverse_entry(s, orig, reason="late")
    with (
        pytest.raises(LedgerError, match="before the entry it reverses"),
        erp_db.tenant_session(tid) as s,
    ):
        service.reverse_entry(s, orig, date=datetime.date(2026, 9, 30), reason="x")
    with pytest.raises(LedgerError, match="needs a reason"), erp_db.tenant_session(tid) as s:
        service.reverse_entry(s, orig, reason=" ")
    with pytest.raises(LedgerError, match="no journal entry 999"), erp_db.tenant_session(tid) as s:
        service.reverse_entry(s, 999, reason="x")
    assert counts(erp_db) == (1, 2)
    with erp_db.tenant_session(tid) as s:
        rev = service.reverse_entry(s, orig, date=datetime.date(2026, 11, 2), reason="late")
        assert rev.period == "2026-11"


def test_another_tenants_entry_cannot_be_reversed(erp_db, make_tenant):
    a, b = make_tenant("acme").id, make_tenant("bolt").id
    orig = post(erp_db, a, draft(*SALE))
    with (
        pytest.raises(LedgerError, match=f"no journal entry {orig}"),
        erp_db.tenant_session(b) as s,
    ):
        service.reverse_entry(s, orig, reason="x")
    assert counts(erp_db) == (1, 2)


# --- currencies and rounding --------------------------------------------------------------


def test_foreign_currency_amounts_carry_rate_and_tenant_amount(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(
            s,
            draft(
                P("1122", "19.99", currency="USD", rate=D("7.1234")),
                P("5001", "-19.99", currency="USD", rate=D("7.1234")),
                P("1012", "1000", currency="JPY", rate=D("0.0478")),
                P("1002", "-1000", currency="JPY", rate=D("0.0478")),
            ),
        )
        # 19.99 * 7.1234 = 142.396766 -> 142.40; 1000 * 0.0478 = 47.80
        assert [p.amount_base for p in e.postings] == [
            D("142.40"),
            D("-142.40"),
            D("47.80"),
            D("-47.80"),
        ]


def test_rounding_difference_goes_to_the_largest_foreign_posting(erp_db, tid):
    # 3 x 0.01 USD at 0.5 = 0.005 each: half up gives 0.01 each, but -0.03 at 0.5 = -0.015
    # -> -0.02: the rounded amounts are off by 0.01, which the first largest posting absorbs
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(
            s,
            draft(
                P("1122", "0.01", currency="USD", rate=D("0.5")),
                P("1122", "0.01", currency="USD", rate=D("0.5")),
                P("1122", "0.01", currency="USD", rate=D("0.5")),
                P("5001", "-0.03", currency="USD", rate=D("0.5")),
            ),
        )
        bases = [p.amount_base for p in e.postings]
        assert sum(bases) == 0
        assert bases == [D("0.01"), D("0.01"), D("0.01"), D("-0.03")]
        e2 = service.post_entry(
            s,
            draft(
                P("1122", "0.01", currency="USD", rate=D("0.5")),
                P("1122", "0.01", currency="USD", rate=D("0.5")),
                P("5001", "-0.02", currency="USD", rate=D("0.5")),
                key="k2",
            ),
        )
        assert [p.amount_base for p in e2.postings] == [D("0.00"), D("0.01"), D("-0.01")]


def test_negative_half_rounds_away_from_zero(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(
            s,
            draft(
                P("1122", "-0.01", currency="USD", rate=D("0.5")),
                P("5001", "0.01", currency="USD", rate=D("0.5")),
            ),
        )
        assert [p.amount_base for p in e.postings] == [D("-0.01"), D("0.01")]


def test_tenant_in_another_currency(erp_db, erp_registry):
    from erp_core.tenancy.service import create_tenant

    with erp_db.session() as s, s.begin():
        tid = create_tenant(s, "hk-shop", "HK", currency="HKD", registry=erp_registry).id
    with erp_db.tenant_session(tid) as s:
        e = service.post_entry(
            s,
            draft(
                P("1122", "100", currency="CNY", rate=D("1.08")),
                P("5001", "-100", currency="CNY", rate=D("1.08")),
            ),
        )
        assert [p.amount_base for p in e.postings] == [D("108"), D("-108")]
        with pytest.raises(LedgerError, match="rate to HKD is required for CNY"):
            service.post_entry(s, draft(P("1122", "1", currency="CNY"), P("5001", "-1"), key="x"))


# --- periods ------------------------------------------------------------------------------


def test_locked_period_refuses_posts_with_the_reason(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        lock = service.lock_period(s, "2026-10", actor="boss@acme.test")
        assert service.lock_period(s, "2026-10", actor="other") is lock  # already locked
        assert service.is_locked(s, "2026-10") and not service.is_locked(s, "2026-11")
    with pytest.raises(LedgerError, match=r"period 2026-10 is locked \(by boss@acme.test on 20"):
        post(erp_db, tid, draft(*SALE))
    assert counts(erp_db) == (0, 0)
    post(erp_db, tid, draft(*SALE, day=datetime.date(2026, 11, 1)))
    with erp_db.tenant_session(tid) as s:
        service.unlock_period(s, "2026-10", actor="boss@acme.test")
        with pytest.raises(LedgerError, match="is not locked"):
            service.unlock_period(s, "2026-10", actor="x")
        with pytest.raises(LedgerError, match="like 2026-10"):
            service.lock_period(s, "2026-13", actor="x")
        assert service.locked_periods(s) == []
    post(erp_db, tid, draft(*SALE, key="k2"))
    assert counts(erp_db) == (2, 4)
    with erp_db.session() as s, system_access(s):
        q = select(AuditEvent.action, AuditEvent.target).where(AuditEvent.tenant_id == tid)
        events = [e for e in s.execute(q) if e[0].startswith("ledger.period")]
    assert events == [("ledger.period.locked", "2026-10"), ("ledger.period.unlocked", "2026-10")]


def test_period_locks_are_per_tenant(erp_db, make_tenant):
    a, b = make_tenant("acme").id, make_tenant("bolt").id
    with erp_db.tenant_session(a) as s:
        service.lock_period(s, "2026-10", actor="me")
    post(erp_db, b, draft(*SALE))
    with erp_db.session() as s, system_access(s):
        assert s.scalar(select(func.count()).select_from(PeriodLock)) == 1


# --- balances and dimensions --------------------------------------------------------------


def _profit_data(erp_db, tid):
    rows = [
        ("tmall", "shop-1", "SKU-A", "O-1", "100.00", "60.00", datetime.date(2026, 9, 5)),
        ("tmall", "shop-1", "SKU-B", "O-2", "50.00", "20.00", datetime.date(2026, 10, 5)),
        ("jd", "shop-2", "SKU-A", "O-3", "80.00", "60.00", datetime.date(2026, 10, 6)),
    ]
    for n, (ch, st, sku, order, sale, cost, day) in enumerate(rows):
        dims = {"channel": ch, "store": st, "sku": sku, "order": order}
        post(
            erp_db,
            tid,
            draft(
                P("1122", sale, **dims),
                P("5001", f"-{sale}", **dims),
                P("5401", cost, warehouse="WH-1", **dims),
                P("1405", f"-{cost}", warehouse="WH-1", **dims),
                key=f"order-{n}",
                day=day,
            ),
        )


def test_balances_by_dimension_and_period(erp_db, tid):
    _profit_data(erp_db, tid)
    with erp_db.tenant_session(tid) as s:
        by_channel = {
            (r.account, r.dimensions["channel"]): r.amount
            for r in service.balances(s, group_by=("channel",))
        }
        assert by_channel[("5001", "tmall")] == D("-150")
        assert by_channel[("5001", "jd")] == D("-80")
        assert by_channel[("5401", "tmall")] == D("80")
        by_sku = service.balances(s, account="5401", group_by=("sku",), where={"channel": "tmall"})
        assert [(r.dimensions["sku"], r.amount) for r in by_sku] == [
            ("SKU-A", D("60")),
            ("SKU-B", D("20")),
        ]
        by_period = service.balances(s, account="5001", group_by=("period",))
        assert [(r.period, r.amount) for r in by_period] == [
            ("2026-09", D("-100")),
            ("2026-10", D("-130")),
        ]
        october = service.balances(s, period="2026-10", where={"warehouse": "WH-1"})
        assert {(r.account, r.amount) for r in october} == {("5401", D("80")), ("1405", D("-80"))}
        order = service.balances(s, where={"order": "O-3"}, group_by=("store",))
        assert {r.account for r in order} == {"1122", "5001", "5401", "1405"}
        assert {r.dimensions["store"] for r in order} == {"shop-2"}
        assert service.balances(s, until=datetime.date(2026, 9, 30), account="1122")[0].amount == (
            D("100")
        )
        with pytest.raises(LedgerError, match="cannot group by colour"):
            service.balances(s, group_by=("colour",))
        with pytest.raises(LedgerError, match="unknown account"):
            service.balances(s, account="8888")


def test_balances_of_a_parent_include_its_sub_accounts(erp_db, tid):
    post(erp_db, tid, draft(P("1405", "30"), P("220202", "-30")))
    post(erp_db, tid, draft(P("5602", "20"), P("220201", "-20"), key="k2"))
    with erp_db.tenant_session(tid) as s:
        rows = service.balances(s, account="2202")
        assert [(r.account, r.amount) for r in rows] == [("220201", D("-20")), ("220202", D("-30"))]


def test_trial_balance_sums_to_zero_per_currency(erp_db, tid):
    _profit_data(erp_db, tid)
    post(
        erp_db,
        tid,
        draft(
            P("1012", "12.34", currency="USD", rate=D("7.1")),
            P("5001", "-12.34", currency="USD", rate=D("7.1")),
            key="usd",
        ),
    )
    with erp_db.tenant_session(tid) as s:
        rows = service.trial_balance(s)
        for cur in ("CNY", "USD"):
            assert sum(r.balance for r in rows if r.currency == cur) == 0
        assert sum(r.balance_base for r in rows) == 0
        r1122 = next(r for r in rows if r.account == "1122")
        assert (r1122.debit, r1122.credit, r1122.balance) == (D("230"), D("0"), D("230"))
        assert r1122.name_zh == "应收账款" and r1122.type == "asset"
        early = service.trial_balance(s, until=datetime.date(2026, 9, 30))
        assert {r.account: r.balance for r in early}["1122"] == D("100")


# --- account mapping and stock valuation --------------------------------------------------


def valuation(move_id, kind, value="12.3456", **kw):
    base = dict(
        move_id=move_id,
        kind=kind,
        sku_code="SKU-1",
        warehouse_code="WH-1",
        quantity=D("3"),
        unit_cost=D("4.1152"),
        value=D(value),
        currency="CNY",
        occurred_at=datetime.datetime(2026, 9, 30, 17, 30, tzinfo=UTC),  # 10-01 01:30 Shanghai
    )
    base.update(kw)
    return StockValuation(**base)


@pytest.mark.parametrize(
    ("kind", "debit", "credit"),
    [
        ("receipt", "1405", "220202"),
        ("delivery", "5401", "1405"),
        ("adjustment_gain", "1405", "190101"),
        ("adjustment_loss", "190101", "1405"),
        ("scrap", "5711", "1405"),
        ("customer_return", "1405", "5401"),
        ("supplier_return", "220202", "1405"),
    ],
)
def test_stock_valuation_posts_through_the_mapping(erp_db, tid, kind, debit, credit):
    with erp_db.tenant_session(tid) as s:
        e = service.post_valuation(s, valuation(7, kind, dimensions={"channel": "tmall"}))
        assert e is not None
        assert e.idempotency_key == "stock-move:7"
        assert (e.source_type, e.source_id, e.date) == (
            "stock_move",
            "7",
            datetime.date(2026, 10, 1),
        )
        assert [(p.account.code, p.amount) for p in e.postings] == [
            (debit, D("12.35")),
            (credit, D("-12.35")),
        ]
        assert {(p.sku, p.warehouse, p.channel) for p in e.postings} == {("SKU-1", "WH-1", "tmall")}
        again = service.post_valuation(s, valuation(7, kind, dimensions={"channel": "tmall"}))
        assert again is not None and again.id == e.id


def test_valuations_of_one_operation_post_together(erp_db, tid):
    with erp_db.tenant_session(tid) as s:
        first = service.post_valuation(s, valuation(1, "delivery"))
        assert first is not None
        got = service.post_valuations(
            s,
            [
                valuation(1, "delivery"),  # posted before: answered with its entry
                valuation(2, "delivery", value="0.004"),  # rounds to nothing: no entry
                valuation(3, "delivery", dimensions={"order": "O-3"}),
            ],
        )
        assert got[0] is not None and got[0].id == first.id and got[1] is None
        assert got[2] is not None and got[2].idempotency_key == "stock-move:3"
        assert {p.order_ref for p in got[2].postings} == {"O-3"}
        # the same move valued otherwise is refused, and the batch with it: all or nothing
        with pytest.raises(LedgerError, match=r"entry 2 \('stock-move:3'\).*different content"):
            service.post_valuations(s, [valuation(4, "scrap"), valuation(3, "scrap")])
        keys = set(s.scalars(select(JournalEntry.idempotency_key)))
        assert keys == {"stock-move:1", "stock-move:3"}


def test_stock_valuation_hook_and_remapped_accounts(erp_db, erp_registry, tid):
    with erp_db.tenant_session(tid) as s:
        with pytest.raises(LedgerError, match="unknown purpose colour"):
            service.set_mapping(s, {"colour": "1405"})
        with pytest.raises(LedgerError, match=r"scrap: account 1901 .* has sub-accounts"):
            service.set_mapping(s, {"scrap": "1901"})
        with pytest.raises(LedgerError, match="scrap: unknown account '8888'"):
            service.set_mapping(s, {"scrap": "8888", "cogs": "5401"})
        service.create_account(s, code="571101", name_zh="存货报废", name_en="Scrapped stock")
        assert service.get_mapping(s)["scrap"] == "571101"
        with pytest.raises(LedgerError, match=r"5711 .* has sub-accounts"):
            service.post_entry(s, draft(P("5711", "1"), P("1002", "-1")))
        service.create_account(s, code="571102", name_zh="其他", name_en="Other")
        assert service.set_mapping(s, {"scrap": "5602"}, actor="me")["scrap"] == "5602"
        assert service.set_mapping(s, {"scrap": "571101"}, actor="me")["scrap"] == "571101"
        hooks = erp_registry.hooks_for(())
        hooks.erp_stock_valued(
            session=s,
            tenant_id=tid,
            valuations=[valuation(2, "scrap", source_type="wms_scrap", source_id="SC-9")],
        )
        e = s.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == "stock-move:2"))
        assert e is not None and (e.source_type, e.source_id) == ("wms_scrap", "SC-9")
        assert [p.account.code for p in e.postings] == ["571101", "1405"]
        assert service.post_valuation(s, valuation(3, "receipt", value="0.004")) is None
        with pytest.raises(LedgerError, match="valued in USD"):
            service.post_valuation(s, valuation(4, "receipt", currency="USD"))
        with pytest.raises(LedgerError, match="unknown posting dimension colour"):
            service.post_valuation(s, valuation(5, "receipt", dimensions={"colour": "red"}))
    with erp_db.session() as s, system_access(s):
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.tenant_id == tid)))
    assert "ledger.mapping.changed" in actions
