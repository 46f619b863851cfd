"""``erp ledger export --format beancount``: bean-check accepts the file, and its balances are
the trial balance, exactly."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest
from beancount import loader
from beancount.core import data

from erp_core.ledger import service
from erp_core.ledger.types import EntryDraft, PostingDraft

BEAN_CHECK = Path(sys.executable).with_name("bean-check")
NASTY = '天猫订单 "884" 结算\n第二行 \\ back\tslash «引号» "'


@pytest.fixture
def cli(erp_cli):
    return erp_cli


def P(account, amount, currency=None, rate=None, **kw):
    return PostingDraft(
        account=account,
        amount=D(amount),
        currency=currency,
        rate=None if rate is None else D(rate),
        **kw,
    )


def build_ledger(erp_db, tid):
    """Several currencies, sub-accounts, a new account with an awkward name, dimensions,
    reversals, Chinese narrations with quotes, newlines, tabs and backslashes."""
    with erp_db.tenant_session(tid) as s:
        service.create_account(
            s, code="560104", name_zh="达人佣金", name_en='KOL & "live" fees (直播)'
        )
        service.create_account(s, code="100201", name_zh="工商银行", name_en="ICBC")
        service.create_account(s, code="100202", name_zh="汇丰美元户", name_en="HSBC USD")
        entries = [
            (
                datetime.date(2026, 9, 1),
                "实收资本 capital",
                [P("100201", "50000.00"), P("3001", "-50000.00")],
            ),
            (
                datetime.date(2026, 9, 2),
                NASTY,
                [
                    P("1012", "95.00", channel="tmall", store="旗舰店", order="884"),
                    P("560101", "5.00", channel="tmall", order="884"),
                    P("5001", "-100.00", channel="tmall", sku="SKU-红色", order="884"),
                ],
            ),
            (
                datetime.date(2026, 9, 15),
                "Amazon US sale",
                [
                    P("1122", "19.99", "USD", "7.1234", channel="amazon", order="A-1"),
                    P("5001", "-19.99", "USD", "7.1234", channel="amazon", sku="SKU-1"),
                ],
            ),
            (
                datetime.date(2026, 10, 2),
                "楽天 sale",
                [
                    P("1122", "1500", "JPY", "0.0478", channel="rakuten"),
                    P("5001", "-1500", "JPY", "0.0478", channel="rakuten"),
                ],
            ),
            (
                datetime.date(2026, 10, 3),
                "EUR rounding",
                [
                    P("1122", "0.01", "EUR", "0.5"),
                    P("1122", "0.01", "EUR", "0.5"),
                    P("5001", "-0.02", "EUR", "0.5"),
                ],
            ),
            (
                datetime.date(2026, 10, 4),
                "USD conversion 换汇",
                [
                    P("100202", "1000.00", "USD", "7.1"),
                    P("1221", "-1000.00", "USD", "7.1", memo="clearing"),
                    P("1221", "7100.00", memo="clearing"),
                    P("100201", "-7100.00"),
                ],
            ),
            (
                datetime.date(2026, 10, 5),
                "KOL fee",
                [P("560104", "300.00", channel="douyin"), P("2241", "-300.00")],
            ),
        ]
        ids = []
        for n, (day, narration, postings) in enumerate(entries):
            e = service.post_entry(
                s,
                EntryDraft(
                    date=day,
                    narration=narration,
                    postings=tuple(postings),
                    idempotency_key=f"e{n}",
                    source_type="test",
                    source_id=str(n),
                ),
            )
            ids.append(e.id)
        service.reverse_entry(
            s, ids[2], reason='客户取消 "cancelled"', date=datetime.date(2026, 10, 6)
        )
        service.reverse_entry(s, ids[6], reason="wrong KOL")
    return ids


def bean_balances(path: Path) -> tuple[dict[tuple[str, str], D], list[Any]]:
    entries, errors, _options = loader.load_file(str(path))
    assert errors == [], errors
    codes = {e.account: e.meta["code"] for e in entries if isinstance(e, data.Open)}
    out: dict[tuple[str, str], D] = defaultdict(D)
    for e in entries:
        if isinstance(e, data.Transaction):
            for p in e.postings:
                units: Any = p.units
                out[(codes[p.account], units.currency)] += units.number
    return dict(out), entries


def erp_balances(erp_db, tid, until=None) -> dict[tuple[str, str], D]:
    with erp_db.tenant_session(tid) as s:
        return {(r.account, r.currency): r.balance for r in service.trial_balance(s, until=until)}


def bean_check(path: Path) -> None:
    r = subprocess.run([str(BEAN_CHECK), str(path)], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r.stdout + r.stderr


def test_export_passes_bean_check_and_matches_the_trial_balance(cli, erp_db, make_tenant, tmp_path):
    tid = make_tenant("acme").id
    build_ledger(erp_db, tid)
    r = cli("ledger", "export", "--tenant", "acme", "--format", "beancount")
    assert r.exit_code == 0, r.output
    path = tmp_path / "acme.beancount"
    path.write_text(r.output, encoding="utf-8")
    assert 'option "operating_currency" "CNY"' in r.output
    assert "@" not in "".join(line for line in r.output.splitlines() if line.startswith("  "))
    bean_check(path)
    balances, entries = bean_balances(path)
    expected = erp_balances(erp_db, tid)
    assert balances == expected
    assert {c for _, c in balances} == {"CNY", "USD", "JPY", "EUR"}
    for cur in ("CNY", "USD", "JPY", "EUR"):
        assert sum(v for (_, c), v in balances.items() if c == cur) == 0
    txns: list[Any] = [e for e in entries if isinstance(e, data.Transaction)]
    assert NASTY in [t.narration for t in txns]
    assert any('客户取消 "cancelled"' in t.narration and "reverses" in t.meta for t in txns)
    opens = {e.meta["code"]: e for e in entries if isinstance(e, data.Open)}
    assert opens["220202"].account.startswith("Liabilities:2202-")
    assert opens["1405"].meta["name_zh"] == "库存商品"
    assert opens["560104"].account.startswith("Expenses:5601-Selling-expenses:560104-KOL-live-")
    assert "2202" not in opens  # aggregates are not opened
    sku = [p.meta.get("sku") for t in txns for p in t.postings if p.meta and "sku" in p.meta]
    assert "SKU-红色" in sku
    rated = [p.meta for t in txns for p in t.postings if p.units.currency == "USD"]
    assert all(m["rate"] for m in rated) and any(m["amount_base"] == "142.40 CNY" for m in rated)


def test_export_until_a_date(cli, erp_db, make_tenant, tmp_path):
    tid = make_tenant("acme").id
    build_ledger(erp_db, tid)
    r = cli("ledger", "export", "--tenant", "acme", "--until", "2026-09-30")
    assert r.exit_code == 0, r.output
    path = tmp_path / "september.beancount"
    path.write_text(r.output, encoding="utf-8")
    bean_check(path)
    balances, _ = bean_balances(path)
    assert balances == erp_balances(erp_db, tid, until=datetime.date(2026, 9, 30))
    assert {c for _, c in balances} == {"CNY", "USD"}


def test_empty_ledger_and_unknown_tenant(cli, make_tenant, tmp_path):
    make_tenant("acme")
    r = cli("ledger", "export", "--tenant", "acme", "--format", "beancount")
    assert r.exit_code == 0
    path = tmp_path / "empty.beancount"
    path.write_text(r.output, encoding="utf-8")
    bean_check(path)
    r = cli("ledger", "export", "--tenant", "nope")
    assert r.exit_code == 1 and "no tenant 'nope'" in r.output


def test_init_seeds_missing_accounts(cli, make_tenant):
    make_tenant("acme")
    r = cli("ledger", "init", "--tenant", "acme")
    assert r.exit_code == 0 and "0 account(s) added" in r.output
