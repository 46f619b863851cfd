"""The list component: keyset pagination (stable with ties, both directions), search, filters,
column choice, CSV and Excel exports that follow the filters."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from sqlalchemy import select

from erp_core.audit.models import AuditEvent
from erp_core.testing.fixtures import csrf_of, login
from erp_core.web.listing import Column, Filter, ListView, decode_cursor, encode_cursor

HX = {"HX-Request": "true"}
ACTIONS = ("login", "logout", "plugin.enabled")


def _seed(erp_db, tenant_id: int, n: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with erp_db.tenant_session(tenant_id) as s:
        s.add_all(
            AuditEvent(
                tenant_id=tenant_id,
                at=start + timedelta(minutes=i),
                action=ACTIONS[i % 3],
                actor=f"actor{i:04d}@acme.test",
                target="needle" if i % 10 == 0 else "",
                outcome="denied" if i % 7 == 0 else "ok",
            )
            for i in range(n)
        )


TIES = ListView(
    name="ties",
    title="Ties",
    query=select(AuditEvent),
    id_expr=AuditEvent.id,
    columns=(
        Column(key="action", title="Action", expr=AuditEvent.action, sortable=True),
        Column(key="id", title="ID", expr=AuditEvent.id, sortable=True),
    ),
    filters=(Filter(key="outcome_is", title="Outcome", expr=AuditEvent.outcome),),
    sort="action",
    page_size=7,
    path="/x",
)


def _walk(s, view, params, backwards=False):
    """Fetch ``params``' page, then follow the next (or previous) cursors to the end; returns
    the ids of each page in the order visited, and the last page fetched."""
    from dataclasses import replace

    pages = []
    while True:
        page = view.fetch(s, params)
        pages.append([r.id for r in page.rows])
        cursor = page.prev_cursor if backwards else page.next_cursor
        if cursor is None:
            return pages, page
        params = replace(
            params, after="" if backwards else cursor, before=cursor if backwards else ""
        )


@pytest.mark.parametrize("sort", ["action", "-action", "id", "-id"])
def test_keyset_pages_cover_every_row_once_in_order_even_with_ties(erp_db, make_tenant, sort):
    t = make_tenant("acme")
    _seed(erp_db, t.id, 52)
    with erp_db.session(t.id) as s:
        everything = list(s.scalars(select(AuditEvent)))
        key = (lambda e: (e.action, e.id)) if "action" in sort else (lambda e: (e.id,))
        expected = [e.id for e in sorted(everything, key=key, reverse=sort.startswith("-"))]
        pages, last = _walk(s, TIES, TIES.params({"sort": sort}))
        assert [i for p in pages for i in p] == expected
        assert all(len(p) == 7 for p in pages[:-1]) and len(pages) == -(-len(expected) // 7)
        assert last.next_cursor is None
        # and back again from the last page, following the previous-page cursors
        back, first = _walk(s, TIES, last.params, backwards=True)
        assert back == list(reversed(pages))
        assert first.prev_cursor is None


def test_filters_search_and_bad_cursors(erp_db, make_tenant):
    t = make_tenant("acme")
    _seed(erp_db, t.id, 40)
    with erp_db.session(t.id) as s:
        denied = TIES.fetch(s, TIES.params({"outcome_is": "denied", "size": "100"}))
        assert {r.outcome for r in denied.rows} == {"denied"} and len(denied.rows) == 6
        page = TIES.fetch(s, TIES.params({"after": "not-a-cursor"}))
        assert page.prev_cursor is None and len(page.rows) == 7  # ignored: first page
    assert decode_cursor(encode_cursor([datetime(2026, 1, 1, tzinfo=UTC), 5])) == [
        datetime(2026, 1, 1, tzinfo=UTC),
        5,
    ]
    assert TIES.params({"sort": "nope"}).sort == "action"  # only sortable columns
    assert TIES.params({"size": "100000"}).size == 200


def test_list_view_refuses_reserved_or_unsortable_keys():
    with pytest.raises(ValueError, match="reserved"):
        ListView(
            name="x",
            title="x",
            query=select(AuditEvent),
            id_expr=AuditEvent.id,
            columns=(Column(key="q", title="q", expr=AuditEvent.id, sortable=True),),
            sort="q",
        )
    with pytest.raises(ValueError, match="not sortable"):
        ListView(
            name="x",
            title="x",
            query=select(AuditEvent),
            id_expr=AuditEvent.id,
            columns=(Column(key="a", title="a", expr=AuditEvent.action),),
            sort="a",
        )


def test_audit_page_pages_forward_and_back_through_links(client, make_tenant, erp_db):
    t = make_tenant("acme")
    _seed(erp_db, t.id, 130)
    login(client, t.email)
    seen: list[str] = []
    url = "/admin/audit?size=50"
    pages = 0
    while url:
        r = client.get(url, headers=HX)
        assert r.status_code == 200
        rows = re.findall(r'<tr data-id="(\d+)">', r.text)
        seen += rows
        pages += 1
        m = re.search(r'rel="next" href="([^"]+)"', r.text)
        url = unescape(m.group(1)) if m else ""
    assert pages == 3
    assert len(seen) == len(set(seen)) >= 130
    assert seen == sorted(seen, key=int, reverse=True)  # newest first
    # previous from the last page leads back to the second
    m = re.search(r'rel="prev" href="([^"]+)"', r.text)
    assert m is not None
    back = client.get(unescape(m.group(1)), headers=HX)
    assert re.findall(r'<tr data-id="(\d+)">', back.text) == seen[50:100]


def test_search_filter_and_columns_in_the_query_string(client, make_tenant, erp_db):
    t = make_tenant("acme")
    _seed(erp_db, t.id, 60)
    login(client, t.email)
    r = client.get("/admin/audit?q=needle&outcome_is=denied&cols=actor,target", headers=HX)
    rows = re.findall(r'<tr data-id="(\d+)">', r.text)
    assert len(rows) == 1  # i == 0 only: needle (i % 10) and denied (i % 7)
    assert 'data-col="actor"' in r.text and 'data-col="action"' not in r.text
    full = client.get("/admin/audit?cols=actor,target").text
    assert 'name="cols" value="actor" checked' in full and 'name="cols" value="action">' in full


def test_csv_and_xlsx_exports_follow_the_filters(client, make_tenant, erp_db):
    from openpyxl import load_workbook

    t = make_tenant("acme")
    _seed(erp_db, t.id, 1203)  # more than one export batch
    login(client, t.email)
    r = client.get("/admin/audit/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["时间", "操作", "操作人", "对象", "结果"]
    actors = [row[2] for row in rows[1:] if row[2].startswith("actor")]
    assert len(actors) == 1203 and len(set(actors)) == 1203
    denied = client.get("/admin/audit/export.csv?outcome_is=denied&cols=actor,outcome").text
    lines = [x for x in csv.reader(io.StringIO(denied.lstrip("\ufeff")))]
    assert lines[0] == ["操作人", "结果"] and {x[1] for x in lines[1:]} == {"拒绝"}
    assert len(lines) - 1 == len([i for i in range(1203) if i % 7 == 0])
    x = client.get("/admin/audit/export.xlsx?outcome_is=denied")
    assert x.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    wb = load_workbook(io.BytesIO(x.content), read_only=True)
    sheet = list(wb.active.iter_rows(values_only=True))
    assert sheet[0] == ("时间", "操作", "操作人", "对象", "结果")
    assert len(sheet) - 1 == len(lines) - 1
    assert isinstance(sheet[1][0], datetime)  # a real date cell, in the tenant's zone
    # the newest denied event is i = 1197 at 2026-01-01 00:00 UTC + 1197 min, shown in Shanghai
    assert sheet[1][0] == datetime(2026, 1, 1, 8, 0) + timedelta(minutes=1197)


def test_exports_and_lists_stay_in_the_tenant(client, make_tenant, erp_db):
    a = make_tenant("acme")
    b = make_tenant("bolt")
    _seed(erp_db, a.id, 20)
    login(client, b.email)
    assert "actor0001@acme.test" not in client.get("/admin/audit").text
    assert "actor0001@acme.test" not in client.get("/admin/audit/export.csv").text


def test_a_plugin_list_under_its_mount_prefix(client, make_tenant, erp_db):
    from erp_test_alpha.models import AlphaNote

    t = make_tenant("acme", plugins=("test_alpha",))
    with erp_db.tenant_session(t.id) as s:
        s.add_all(AlphaNote(tenant_id=t.id, text=f"note {i:02d}") for i in range(12))
    login(client, t.email)
    r = client.get("/alpha/list", headers=HX)
    assert r.status_code == 200
    assert re.findall(r"note \d\d", r.text) == [
        "note 00",
        "note 01",
        "note 02",
        "note 03",
        "note 04",
    ]
    nxt = re.search(r'rel="next" href="([^"]+)"', r.text)
    assert nxt is not None and nxt.group(1).startswith("/alpha/list?")
    assert 'href="/alpha/list/export.csv' in r.text
    note = re.search(r'href="(/alpha/list/(\d+)/edit/tags)"', r.text)
    assert note is not None
    token = csrf_of(client)
    bad = client.post(note.group(1), data={"value": "x" * 30, "csrf_token": token}, headers=HX)
    assert bad.status_code == 422 and "at most 20 characters" in bad.text
    ok = client.post(
        note.group(1), data={"value": "urgent", "csrf_token": token}, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/alpha/list"
    csv_text = client.get("/alpha/list/export.csv?q=note+0").text
    assert csv_text.count("note 0") == 10
    # disabled for the tenant: the whole list is gone
    client.post("/api/v1/plugins/test_alpha/disable", headers=t.auth)
    assert client.get("/alpha/list", headers={"accept": "text/html"}).status_code == 404


def test_a_users_column_choice_is_kept_per_list_and_user(client, make_tenant, erp_db):
    from erp_core.web.models import ListPreference

    t = make_tenant("acme")
    other = make_tenant("acme-2")
    _seed(erp_db, t.id, 5)
    login(client, t.email)
    chosen = client.get("/admin/audit?cols=actor,target").text
    assert "Keep these columns" in chosen or "保留这些列" in chosen
    token = csrf_of(client)
    back = "/admin/audit?q=actor"
    # a POST without the CSRF token changes nothing
    r = client.post("/admin/audit/columns", data={"cols": "actor,target", "back": back})
    assert r.status_code == 403
    r = client.post(
        "/admin/audit/columns",
        data={"cols": "target,actor,nonsense", "back": back, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == back
    # with no columns in the URL, the kept ones apply, in the list's order
    page = client.get("/admin/audit", headers=HX).text
    assert 'data-col="actor"' in page and 'data-col="action"' not in page
    assert client.get("/admin/audit?cols=action", headers=HX).text.count('data-col="actor"') == 0
    # a foreign "back" is never followed
    r = client.post(
        "/admin/audit/columns",
        data={"cols": "actor", "back": "https://evil.test/", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == "/admin/audit"
    with erp_db.system_session() as s:
        prefs = [(p.tenant_id, p.list_name, p.columns) for p in s.scalars(select(ListPreference))]
    assert prefs == [(t.id, "/admin/audit", "actor")]
    # another tenant's user sees the defaults
    client.cookies.clear()
    login(client, other.email)
    assert 'data-col="action"' in client.get("/admin/audit", headers=HX).text
    # forgetting brings the defaults back
    client.cookies.clear()
    login(client, t.email)
    r = client.post(
        "/admin/audit/columns",
        data={"forget": "1", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert 'data-col="action"' in client.get("/admin/audit", headers=HX).text
    with erp_db.system_session() as s:
        assert s.scalars(select(ListPreference)).all() == []
