"""The ledger pages of the staff UI without a browser: the chart of accounts, the journal (filters,
pages, exports), an entry and its reversal, the manual entry form (errors next to the field,
nothing stored), the trial balance and period locks; permissions, CSRF, htmx fragments and
tenant isolation."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from erp_core.app import route_permission
from erp_core.db.session import system_access
from erp_core.ledger.models import JournalEntry, PeriodLock
from erp_core.testing.fixtures import PASSWORD, csrf_of, login

API = "/api/v1/ledger"
HX = {"HX-Request": "true"}
HTML = {"accept": "text/html"}


@pytest.fixture
def owner(client, make_tenant):
    t = make_tenant("acme")
    login(client, t.email)
    return t


def post_entry(client, t, key: str, *, date="2026-10-03", amount="100.00", **extra: Any) -> int:
    body = {
        "date": date,
        "narration": f"entry {key}",
        "idempotency_key": key,
        "postings": [
            {"account": "1122", "amount": amount, "channel": "tmall", "order": "884"},
            {"account": "5001", "amount": f"-{amount}", "sku": "SKU-1"},
        ],
        **extra,
    }
    r = client.post(f"{API}/entries", json=body, headers=t.auth)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def count_entries(erp_db) -> int:
    with erp_db.session() as s, system_access(s):
        return int(s.scalar(select(func.count()).select_from(JournalEntry)) or 0)


def member(client, t, role: str, email: str | None = None) -> Any:
    """A second browser, logged in as a member of ``t`` with ``role``."""
    email = email or f"{role}@{t.slug}.test"
    r = client.post(
        "/api/v1/users",
        json={"email": email, "role": role, "password": PASSWORD},
        headers=t.auth,
    )
    assert r.status_code == 201, r.text
    other = client.__class__(client.app)
    login(other, email)
    return other


def form_fields(**lines: str) -> dict[str, str]:
    """``lines-0-account="1002"`` style keyword names, spelt ``l0_account``."""
    return {re.sub(r"^l(\d+)_", r"lines-\1-", k): v for k, v in lines.items()}


def entry_form(client, **overrides: str) -> dict[str, str]:
    page = client.get("/ledger/entries/new").text
    key = re.search(r'name="key" value="([^"]+)"', page)
    assert key, "the form has no idempotency key"
    data = {
        "csrf_token": csrf_of(client),
        "key": key.group(1),
        "date": "2026-10-05",
        "narration": "房租 October rent",
        **form_fields(l0_account="5602", l0_debit="3000.00", l1_account="1002", l1_credit="3000"),
    }
    data.update(overrides)
    return data


# --- routes, navigation ------------------------------------------------------------------------


def _routes(app):
    """(path, route) of every route, FastAPI's lazily included routers too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        return [(r.path, r) for r in app.routes]
    return [(c.path, getattr(c, "original_route", c)) for c in iter_route_contexts(app.routes)]


def test_every_ledger_page_declares_a_ledger_permission(erp_app):
    routes = [
        (path, r)
        for path, r in _routes(erp_app)
        if isinstance(r, APIRoute) and path.startswith("/ledger")
    ]
    assert len(routes) >= 12
    for path, r in routes:
        assert str(route_permission(r)).startswith("core.ledger."), path


def test_the_finance_section_shows_for_those_who_may_read_the_ledger(client, owner):
    nav = client.get("/").text
    assert '<h2 class="nav-title" id="nav-ledger">财务</h2>' in nav
    for menu, href in (
        ("core.ledger.accounts", "/ledger/accounts"),
        ("core.ledger.entries", "/ledger/entries"),
        ("core.ledger.trial_balance", "/ledger/trial-balance"),
        ("core.ledger.periods", "/ledger/periods"),
    ):
        assert f'<a href="{href}" data-menu="{menu}"' in nav
    assert nav.index('id="nav-ledger"') < nav.index('id="nav-admin"')  # administration last
    r = client.post(
        "/api/v1/roles",
        json={"name": "auditor", "title": "Auditor", "permissions": ["core.audit.read"]},
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    auditor = member(client, owner, "auditor")
    assert "nav-ledger" not in auditor.get("/").text


# --- chart of accounts -------------------------------------------------------------------------


def test_chart_of_accounts_is_a_tree_in_the_ui_language(client, owner):
    page = client.get("/ledger/accounts")
    assert page.status_code == 200
    html = page.text
    rows = re.findall(r'<tr data-account="(\d+)" data-depth="(\d)"', html)
    codes = [c for c, _ in rows]
    assert codes.index("2202") + 1 == codes.index("220201")  # sub-accounts follow their parent
    depth = dict(rows)
    assert depth["2202"] == "0" and depth["220202"] == "1"
    aggregate = re.search(r'<tr data-account="2202"[^>]*>(.*?)</tr>', html, re.S)
    assert aggregate and 'class="is-aggregate"' in aggregate.group(0)
    assert "应付账款" in aggregate.group(1) and "负债" in aggregate.group(1)
    assert "否，汇总其下级科目" in aggregate.group(1)
    assert "（220201 的下级科目）" not in html and "（2202 的下级科目）" in html
    client.cookies.set("erp_locale", "en")
    english = client.get("/ledger/accounts").text
    assert "Accounts payable" in english and "Liability" in english and "应付账款" not in english


def test_chart_shows_balances_rolled_up_to_the_parents(client, owner):
    post_entry(client, owner, "k1", amount="100.00")
    r = client.post(
        f"{API}/entries",
        json={
            "date": "2026-10-04",
            "narration": "GR/IR",
            "idempotency_key": "k2",
            "postings": [
                {"account": "1405", "amount": "40.00"},
                {"account": "220202", "amount": "-40.00"},
            ],
        },
        headers=owner.auth,
    )
    assert r.status_code == 201, r.text
    assert "余额（CNY）" not in client.get("/ledger/accounts").text
    part = client.get("/ledger/accounts?balances=1", headers=HX)
    assert part.status_code == 200 and part.text.lstrip().startswith('<div id="chart">')
    html = part.text

    def balance(code: str) -> str:
        row = re.search(rf'<tr data-account="{code}".*?</tr>', html, re.S)
        assert row, code
        return re.findall(r'<td class="num">([^<]*)</td>', row.group(0))[0]

    assert balance("1122") == "¥100.00 借"
    assert balance("5001") == "¥100.00 贷"
    assert balance("220202") == "¥40.00 贷" and balance("2202") == "¥40.00 贷"  # the parent
    assert balance("1001") == "¥0.00"


# --- journal -----------------------------------------------------------------------------------


def test_journal_filters_search_and_pages(client, owner):
    ids = [
        post_entry(client, owner, "k1", date="2026-09-28"),
        post_entry(
            client, owner, "k2", date="2026-10-03", source_type="oms_order", source_id="884"
        ),
        post_entry(client, owner, "k3", date="2026-10-20", amount="7.50"),
    ]
    r = client.post(
        f"{API}/entries",
        json={
            "date": "2026-10-21",
            "narration": "GR/IR",
            "idempotency_key": "k4",
            "postings": [
                {"account": "1405", "amount": "40.00", "warehouse": "WH-SH"},
                {"account": "220202", "amount": "-40.00", "warehouse": "WH-SH"},
            ],
        },
        headers=owner.auth,
    )
    ids.append(r.json()["id"])

    def listed(query: str) -> list[int]:
        page = client.get(f"/ledger/entries{query}")
        assert page.status_code == 200, page.text[-500:]
        return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', page.text)]

    assert listed("") == ids[::-1]  # newest first
    assert listed("?date_from=2026-10-01") == [ids[3], ids[2], ids[1]]
    assert listed("?date_from=2026-10-01&date_to=2026-10-20") == [ids[2], ids[1]]
    assert listed("?account=2202") == [ids[3]]  # an account includes its sub-accounts
    assert listed("?account=1122") == [ids[2], ids[1], ids[0]]
    assert listed("?source_type=oms_order&source_id=884") == [ids[1]]
    assert listed("?warehouse=WH-SH") == [ids[3]]
    assert listed("?channel=tmall&date_to=2026-09-30") == [ids[0]]
    # each filter keeps the entries with a posting that matches it (here, two postings)
    assert listed("?sku=SKU-1&order=884") == [ids[2], ids[1], ids[0]]
    assert listed("?sku=SKU-1&warehouse=WH-SH") == []
    assert listed("?q=entry+k3") == [ids[2]]
    # keyset pages: two rows, then the next two
    first = client.get("/ledger/entries?size=2").text
    assert [int(x) for x in re.findall(r'<tr data-id="(\d+)"', first)] == [ids[3], ids[2]]
    nxt = re.search(r'rel="next" href="([^"]+)"', first)
    assert nxt
    second = client.get(unescape(nxt.group(1)), headers=HX)
    assert second.text.lstrip().startswith('<div class="list-results" id="list-journal">')
    assert [int(x) for x in re.findall(r'<tr data-id="(\d+)"', second.text)] == [ids[1], ids[0]]
    page = client.get("/ledger/entries").text
    assert "oms_order 884" in page and f'href="/ledger/entries/{ids[0]}"' in page
    assert 'href="/ledger/entries/new"' in page  # the owner may post
    assert '<option value="220202">220202 暂估应付账款</option>' in page


def test_journal_exports_what_is_filtered(client, owner):
    post_entry(client, owner, "k1", date="2026-09-28")
    post_entry(client, owner, "k2", date="2026-10-03", amount="12.50")
    csv = client.get("/ledger/entries/export.csv?date_from=2026-10-01")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    text = csv.content.decode("utf-8-sig")
    assert "凭证号" in text.splitlines()[0]
    assert "entry k2" in text and "12.50" in text and "entry k1" not in text
    xlsx = client.get("/ledger/entries/export.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"


# --- one entry, reversal -----------------------------------------------------------------------


def test_entry_shows_postings_dimensions_and_links_its_source(client, owner):
    moved = post_entry(client, owner, "k1", source_type="stock_move", source_id="42")
    other = post_entry(client, owner, "k2", source_type="oms_order", source_id="884")
    manual = post_entry(client, owner, "k3")
    page = client.get(f"/ledger/entries/{moved}")
    assert page.status_code == 200
    html = page.text
    assert '<a href="/inventory/moves/42">stock_move 42</a>' in html
    assert "应收账款" in html and "主营业务收入" in html
    lines = re.findall(r'<tr data-line="(\d)">(.*?)</tr>', html, re.S)
    assert [n for n, _ in lines] == ["1", "2"]
    assert '<td class="num">¥100.00</td>\n        <td class="num"></td>' in lines[0][1]
    assert 'href="/ledger/entries?channel=tmall"' in lines[0][1] and "渠道" in lines[0][1]
    assert 'href="/ledger/entries?order=884"' in lines[0][1]
    assert "SKU-1" in lines[1][1] and "-¥100.00" in lines[1][1]
    # a source type nobody links: plain text; no source at all: said so
    html = client.get(f"/ledger/entries/{other}").text
    source = re.search(r'<dd id="entry-source">(.*?)</dd>', html, re.S)
    assert source and "oms_order 884" in source.group(1) and "<a" not in source.group(1)
    assert "无（手工录入）" in client.get(f"/ledger/entries/{manual}").text
    part = client.get(f"/ledger/entries/{moved}", headers=HX)
    assert part.text.lstrip().startswith('<div id="entry"') and "<html" not in part.text


def test_reversing_an_entry_from_its_page(client, owner, erp_db):
    eid = post_entry(client, owner, "k1")
    page = client.get(f"/ledger/entries/{eid}").text
    assert 'data-open-dialog="reverse-entry"' in page
    token = csrf_of(client)
    url = f"/ledger/entries/{eid}/reverse"
    r = client.post(url, data={"csrf_token": token, "reason": " "}, headers=HX)
    assert r.status_code == 422 and r.text.lstrip().startswith('<form id="reverse-form"')
    assert 'id="reverse-reason-error"' in r.text and "请说明冲销原因" in r.text
    r = client.post(url, data={"csrf_token": token, "reason": "wrong", "date": "2026-10-01"})
    assert r.status_code == 422 and 'id="reverse-date-error"' in r.text
    assert "<dialog" in r.text and "data-open-modal" in r.text  # the dialog stays open
    assert count_entries(erp_db) == 1
    client.post(f"{API}/periods/lock", json={"period": "2026-11"}, headers=owner.auth)
    r = client.post(url, data={"csrf_token": token, "reason": "wrong", "date": "2026-11-02"})
    assert r.status_code == 422 and "期间 2026-11 已锁定" in r.text
    assert count_entries(erp_db) == 1
    r = client.post(url, data={"csrf_token": token, "reason": "重复录入"}, follow_redirects=False)
    assert r.status_code == 303
    rev = int(r.headers["location"].rsplit("/", 1)[1])
    page = client.get(r.headers["location"]).text
    assert f"已冲销凭证 {eid}，冲销凭证为 {rev}。" in page
    assert f'<dd id="entry-reverses"><a href="/ledger/entries/{eid}">' in page
    assert 'data-open-dialog="reverse-entry"' not in page  # a reversal is not reversed
    original = client.get(f"/ledger/entries/{eid}").text
    assert f'<dd id="entry-reversed-by"><a href="/ledger/entries/{rev}">' in original
    assert 'data-open-dialog="reverse-entry"' not in original
    # asked again anyway: refused with the ledger's reason, nothing more stored
    r = client.post(url, data={"csrf_token": token, "reason": "again"}, headers=HX)
    assert r.status_code == 422 and "already reversed" in r.text
    assert count_entries(erp_db) == 2
    listed = client.get("/ledger/entries").text
    assert f"冲销凭证 {eid}" in listed and f"已被凭证 {rev} 冲销" in listed


# --- the entry form ----------------------------------------------------------------------------


def test_new_entry_form_is_labelled_and_starts_today(client, owner):
    page = client.get("/ledger/entries/new")
    assert page.status_code == 200
    html = page.text
    assert "<legend>分录 1</legend>" in html and "<legend>分录 2</legend>" in html
    assert '<label for="lines-0-account">科目' in html and 'id="lines-1-credit"' in html
    assert '<option value="2202">' not in html  # aggregates take no postings
    assert '<option value="220202">220202 暂估应付账款</option>' in html
    assert re.search(r'id="entry-date" name="date" type="date" value="\d{4}-\d{2}-\d{2}"', html)
    assert 'name="csrf_token"' in html and '<details class="line-dims">' in html


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"l1_credit": "2999.99"}, "entry-balance-error", "借贷不平衡"),
        ({"l0_account": "9999"}, "lines-0-account-error", "未知科目 9999"),
        ({"l0_account": "2202"}, "lines-0-account-error", "科目 2202 有下级科目"),
        ({"l0_account": ""}, "lines-0-account-error", "请选择科目"),
        ({"l0_debit": "abc"}, "lines-0-debit-error", "请输入金额"),
        ({"l0_debit": "-3000"}, "lines-0-debit-error", "请输入正数"),
        ({"l0_debit": "3000.001"}, "lines-0-debit-error", "最多 2 位小数"),
        ({"l1_debit": "5"}, "lines-1-credit-error", "借方和贷方只能填一个"),
        ({"l1_credit": ""}, "lines-1-debit-error", "请填写借方或贷方金额"),
        ({"l0_sku": "x" * 101}, "lines-0-sku-error", "100"),
        ({"date": "2026-13-01"}, "entry-date-error", "请输入日期"),
        ({"narration": ""}, "entry-narration-error", "请填写摘要"),
    ],
)
def test_entry_errors_show_next_to_the_field_and_nothing_is_stored(
    client, owner, erp_db, fields, where, message
):
    data = entry_form(client, **form_fields(**fields))
    r = client.post("/ledger/entries/new", data=data, headers=HX)
    assert r.status_code == 422, r.text[-500:]
    assert r.text.lstrip().startswith('<form id="entry-form"')
    assert f'id="{where}"' in r.text and message in unescape(r.text), r.text
    assert 'role="alert" id="entry-errors"' in r.text
    assert count_entries(erp_db) == 0
    assert 'value="房租 October rent"' in r.text or where == "entry-narration-error"
    if where.startswith("lines-") or where.startswith("entry-date"):
        field = where.removesuffix("-error")
        tag = re.search(rf'<(input|select)[^>]*id="{field}"[^>]*>', r.text)
        assert tag and 'aria-invalid="true"' in tag.group(0) and "autofocus" in tag.group(0)


def test_entry_needs_two_lines_and_a_period_that_is_open(client, owner, erp_db):
    data = entry_form(client, **form_fields(l1_account="", l1_credit=""))
    r = client.post("/ledger/entries/new", data=data, headers=HX)
    assert r.status_code == 422 and 'id="entry-lines-error"' in r.text
    assert "一张凭证至少需要两行分录" in r.text
    client.post(f"{API}/periods/lock", json={"period": "2026-10"}, headers=owner.auth)
    r = client.post("/ledger/entries/new", data=entry_form(client))
    assert r.status_code == 422 and "<html" in r.text  # without htmx: the whole page
    error = re.search(r'<p class="field-error" id="entry-date-error">([^<]*)</p>', r.text)
    locked_by = f"期间 2026-10 已锁定（由 {owner.email} via token:1 于"
    assert error and locked_by in unescape(error.group(1))
    assert count_entries(erp_db) == 0


def test_posting_an_entry_redirects_to_it_and_a_second_submit_posts_nothing(client, owner, erp_db):
    data = entry_form(
        client,
        **form_fields(l0_channel="tmall", l0_memo="十月", l1_warehouse="WH-SH", l2_account=""),
    )
    r = client.post("/ledger/entries/new", data=data, follow_redirects=False)
    assert r.status_code == 303
    eid = int(r.headers["location"].rsplit("/", 1)[1])
    page = client.get(r.headers["location"]).text
    assert f"凭证 {eid} 已过账。" in page and "房租 October rent" in page
    got = client.get(f"{API}/entries/{eid}", headers=owner.auth).json()
    assert got["date"] == "2026-10-05" and got["source_type"] is None
    assert got["posted_by"] == owner.email and got["idempotency_key"] == data["key"]
    assert [
        (p["account"], p["amount"], p["channel"], p["warehouse"], p["memo"])
        for p in got["postings"]
    ] == [
        ("5602", "3000.00", "tmall", None, "十月"),
        ("1002", "-3000.00", None, "WH-SH", ""),
    ]
    again = client.post("/ledger/entries/new", data=data, headers=HX)
    assert again.status_code == 200 and again.headers["hx-redirect"] == f"/ledger/entries/{eid}"
    assert count_entries(erp_db) == 1
    # the same form sent back changed: refused, with a new key for a new entry
    changed = {**data, "narration": "another"}
    r = client.post("/ledger/entries/new", data=changed, headers=HX)
    assert r.status_code == 422 and f"此表单已作为凭证 {eid} 过账" in r.text
    assert f'name="key" value="{data["key"]}"' not in r.text
    assert count_entries(erp_db) == 1


def test_adding_a_line_keeps_what_was_typed_and_stores_nothing(client, owner, erp_db):
    data = entry_form(client, action="add_line")
    r = client.post("/ledger/entries/new", data=data, headers=HX)
    assert r.status_code == 200 and r.text.lstrip().startswith('<form id="entry-form"')
    assert "<legend>分录 3</legend>" in r.text and 'value="3000.00"' in r.text
    assert re.search(r'<select id="lines-2-account"[^>]*autofocus', r.text)
    assert "field-error" not in r.text
    assert count_entries(erp_db) == 0
    three = {
        **data,
        "action": "",
        **form_fields(l1_credit="2000", l2_account="1001", l2_credit="1000"),
    }
    r = client.post("/ledger/entries/new", data=three, follow_redirects=False)
    assert r.status_code == 303 and count_entries(erp_db) == 1


# --- trial balance -----------------------------------------------------------------------------


def test_trial_balance_for_a_period_balances(client, owner):
    post_entry(client, owner, "k1", date="2026-09-28", amount="100.00")
    post_entry(client, owner, "k2", date="2026-10-03", amount="20.00")
    post_entry(client, owner, "k3", date="2026-11-03", amount="5.00")
    page = client.get("/ledger/trial-balance?period=2026-10")
    assert page.status_code == 200
    html = page.text
    assert "2026-10-01 至 2026-10-31" in html
    row = re.search(r'<tr data-account="1122" data-currency="CNY">(.*?)</tr>', html, re.S)
    assert row
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    # opening debit, opening credit, debits, credits, closing debit, closing credit
    assert cells == ["¥100.00", "¥0.00", "¥20.00", "¥0.00", "¥120.00", "¥0.00"]
    total = re.search(
        r'<tr class="totals" data-currency="CNY" data-balanced="yes">(.*?)</tr>', html, re.S
    )
    assert total and "平衡" in total.group(1)
    sums = re.findall(r'<td class="num">([^<]*)</td>', total.group(1))
    assert sums == ["¥100.00", "¥100.00", "¥20.00", "¥20.00", "¥120.00", "¥120.00"]
    everything = client.get("/ledger/trial-balance", headers=HX)
    assert everything.text.lstrip().startswith('<div id="report">')
    assert "全部凭证" in everything.text and "¥125.00" in everything.text
    ranged = client.get("/ledger/trial-balance?date_to=2026-09-30").text
    assert "截至 2026-09-30" in ranged and "¥120.00" not in ranged


def test_trial_balance_shows_errors_next_to_its_fields(client, owner):
    r = client.get("/ledger/trial-balance?period=2026-13")
    assert 'id="tb-period-error"' in r.text and 'id="trial-balance"' not in r.text
    r = client.get("/ledger/trial-balance?date_from=2026-10-05&date_to=2026-10-01")
    assert 'id="tb-to-error"' in r.text and "结束日期早于开始日期" in r.text


# --- periods -----------------------------------------------------------------------------------


def test_locking_and_unlocking_periods(client, owner, erp_db):
    page = client.get("/ledger/periods").text
    assert re.search(r'<tr data-period="\d{4}-\d{2}" data-state="open">', page)
    token = csrf_of(client)
    r = client.post(
        "/ledger/periods/lock",
        data={"csrf_token": token, "period": "2026-10"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/ledger/periods").text
    assert "期间 2026-10 已锁定。" in page
    row = re.search(r'<tr data-period="2026-10" data-state="locked">(.*?)</tr>', page, re.S)
    assert row and owner.email in row.group(1) and "/ledger/periods/unlock" in row.group(1)
    r = client.post(
        "/ledger/periods/unlock",
        data={"csrf_token": token, "period": "2026-10", "row": "2026-10"},
        headers=HX,
    )
    assert r.status_code == 200 and r.text.lstrip().startswith('<div id="periods">')
    assert "期间 2026-10 已解锁。" in r.text
    with erp_db.session(owner.id) as s:
        assert s.scalar(select(func.count()).select_from(PeriodLock)) == 0
    # refused, with the reason next to the row or the field
    r = client.post(
        "/ledger/periods/unlock",
        data={"csrf_token": token, "period": "2026-10", "row": "2026-10"},
        headers=HX,
    )
    assert r.status_code == 422 and 'id="problem-2026-10"' in r.text
    assert "期间 2026-10 未锁定" in r.text
    r = client.post(
        "/ledger/periods/lock", data={"csrf_token": token, "period": "October"}, headers=HX
    )
    assert r.status_code == 422 and 'id="lock-period-error"' in r.text
    assert 'value="October"' in r.text


# --- permissions, CSRF, tenants ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("viewer", "GET", "/ledger/accounts", 200),
        ("viewer", "GET", "/ledger/entries", 200),
        ("viewer", "GET", "/ledger/entries/1", 200),
        ("viewer", "GET", "/ledger/trial-balance", 200),
        ("viewer", "GET", "/ledger/periods", 200),
        ("viewer", "GET", "/ledger/entries/new", 403),
        ("viewer", "POST", "/ledger/entries/new", 403),
        ("viewer", "POST", "/ledger/entries/1/reverse", 403),
        ("viewer", "POST", "/ledger/periods/lock", 403),
        ("staff", "GET", "/ledger/entries/new", 200),
        ("staff", "POST", "/ledger/periods/lock", 403),
        ("staff", "POST", "/ledger/periods/unlock", 403),
        ("auditor", "GET", "/ledger/accounts", 403),
        ("auditor", "GET", "/ledger/entries", 403),
        ("auditor", "GET", "/ledger/entries/export.csv", 403),
        ("auditor", "GET", "/ledger/entries/1", 403),
        ("auditor", "GET", "/ledger/trial-balance", 403),
        ("auditor", "GET", "/ledger/periods", 403),
    ],
)
def test_pages_check_permissions_on_the_server(client, owner, erp_db, role, method, path, status):
    post_entry(client, owner, "k1")
    if role == "auditor":
        client.post(
            "/api/v1/roles",
            json={"name": "auditor", "title": "Auditor", "permissions": ["core.audit.read"]},
            headers=owner.auth,
        )
    other = member(client, owner, role)
    data = {"csrf_token": csrf_of(other), "period": "2026-10", "reason": "x"}
    r = other.request(method, path, data=data if method == "POST" else None, headers=HTML)
    assert r.status_code == status, r.text[-500:]
    if status == 403:
        assert "没有权限" in r.text
    assert count_entries(erp_db) == 1


def test_read_only_users_see_no_buttons_to_change_anything(client, owner):
    eid = post_entry(client, owner, "k1")
    viewer = member(client, owner, "viewer")
    assert 'href="/ledger/entries/new"' not in viewer.get("/ledger/entries").text
    assert 'data-open-dialog="reverse-entry"' not in viewer.get(f"/ledger/entries/{eid}").text
    periods = viewer.get("/ledger/periods").text
    assert "/ledger/periods/lock" not in periods and "需要管理账簿的权限" in periods


@pytest.mark.parametrize(
    "path", ["/ledger/entries/new", "/ledger/entries/1/reverse", "/ledger/periods/lock"]
)
def test_forms_need_the_csrf_token(client, owner, erp_db, path):
    post_entry(client, owner, "k1")
    data = entry_form(client, reason="x", period="2026-10")
    data.pop("csrf_token")
    r = client.post(path, data=data, headers=HTML, follow_redirects=False)
    assert r.status_code == 403
    assert count_entries(erp_db) == 1
    with erp_db.session(owner.id) as s:
        assert s.scalar(select(func.count()).select_from(PeriodLock)) == 0


def test_another_tenants_entries_are_out_of_reach(client, make_tenant, erp_db):
    a = make_tenant("acme")
    b = make_tenant("bolt")
    a_entry = post_entry(client, a, "a-secret-1", amount="77.00")
    b_entry = post_entry(client, b, "b-1", amount="5.00")
    login(client, b.email)
    token = csrf_of(client)
    assert client.get(f"/ledger/entries/{a_entry}", headers=HTML).status_code == 404
    r = client.post(
        f"/ledger/entries/{a_entry}/reverse",
        data={"csrf_token": token, "reason": "taken over"},
        headers=HTML,
    )
    assert r.status_code == 404
    assert count_entries(erp_db) == 2
    journal = client.get("/ledger/entries").text
    assert "a-secret" not in journal and f'<tr data-id="{b_entry}"' in journal
    assert f'<tr data-id="{a_entry}"' not in journal
    assert "entry a-secret-1" not in client.get("/ledger/entries/export.csv").text
    report = client.get("/ledger/trial-balance").text
    assert "¥77.00" not in report and "¥5.00" in report
    assert "¥77.00" not in client.get("/ledger/accounts?balances=1").text
