"""The inventory pages of the staff web UI without a browser: every page and form, filters and
keyset pages, htmx fragments, permissions and CSRF, validation errors next to their field with
nothing stored, the stock count from the form to the books, and tenant isolation."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import event, func, select

from erp_core.app import route_permission
from erp_core.inventory import service
from erp_core.inventory.models import Location, Move, Sku
from erp_core.testing.fixtures import PASSWORD, csrf_of, login

HX = {"HX-Request": "true"}
API = "/api/v1/inventory"


def _ok(r: Any) -> Any:
    assert r.status_code < 300, r.text
    return r.json()


def _stock(client: Any, t: Any) -> dict[str, Any]:
    """Warehouse HZ with zone A and bin A/01, SKUs TEA (untracked), MILK (by lot, 1 decimal)
    and PHONE (serial), some stock of each, and a reservation of 2 TEA."""
    h = t.auth
    wh = _ok(client.post(f"{API}/warehouses", json={"code": "HZ", "name": "杭州仓"}, headers=h))
    zone = _ok(
        client.post(
            f"{API}/warehouses/{wh['id']}/locations",
            json={"code": "A", "name": "Zone A", "kind": "view"},
            headers=h,
        )
    )
    _ok(
        client.post(
            f"{API}/warehouses/{wh['id']}/locations",
            json={"code": "01", "parent_id": zone["id"]},
            headers=h,
        )
    )
    skus = {
        body["code"]: _ok(client.post(f"{API}/skus", json=body, headers=h))
        for body in (
            {"code": "TEA", "name": "龙井 250g", "unit": "box"},
            {"code": "MILK", "name": "Milk", "unit": "l", "decimals": 1, "tracking": "lot"},
            {"code": "PHONE", "name": "Phone", "tracking": "serial"},
        )
    }
    for body in (
        {"sku": "TEA", "quantity": "10", "warehouse": "HZ", "unit_cost": "35.5"},
        {"sku": "TEA", "quantity": "4", "location": "HZ/A/01", "unit_cost": "35.5"},
        {"sku": "MILK", "quantity": "6.5", "warehouse": "HZ", "unit_cost": "2", "lot": "L1"},
        {"sku": "PHONE", "quantity": "1", "warehouse": "HZ", "unit_cost": "900", "serials": ["S1"]},
    ):
        _ok(client.post(f"{API}/receipts", json=body, headers=h))
    res = _ok(
        client.post(
            f"{API}/reservations",
            json={"sku": "TEA", "quantity": "2", "location": "HZ/STOCK"},
            headers=h,
        )
    )
    return {"warehouse": wh, "skus": skus, "reservation": res["moves"][0]}


@pytest.fixture(autouse=True)
def _no_redirects(client: Any) -> None:
    client.follow_redirects = False  # a form's answer is what is tested, not the next page


@pytest.fixture
def owner(client: Any, make_tenant: Any) -> Any:
    t = make_tenant("acme")
    login(client, t.email)
    return t


@pytest.fixture
def stocked(client: Any, owner: Any) -> dict[str, Any]:
    return _stock(client, owner)


def _member(client: Any, t: Any, email: str, role: str) -> Any:
    _ok(
        client.post(
            "/api/v1/users",
            json={"email": email, "role": role, "password": PASSWORD},
            headers=t.auth,
        )
    )
    other = client.__class__(client.app)
    login(other, email)
    return other


def _moves(erp_db: Any, tid: int) -> int:
    with erp_db.tenant_session(tid) as s:
        return int(s.scalar(select(func.count()).select_from(Move)) or 0)


@pytest.fixture
def inventory_writes(erp_db: Any) -> Iterator[list[str]]:
    """The SQL statements that change an ``inv_`` table while the test runs."""
    found: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().split(None, 3)
        if head and head[0].upper() in ("INSERT", "UPDATE", "DELETE") and "inv_" in statement:
            found.append(statement[:120])

    event.listen(erp_db.engine, "before_cursor_execute", listen)
    yield found
    event.remove(erp_db.engine, "before_cursor_execute", listen)


PAGES = [
    "/inventory/skus",
    "/inventory/warehouses",
    "/inventory/stock",
    "/inventory/stock/by-lot",
    "/inventory/stock/by-location",
    "/inventory/stock/by-sku",
    "/inventory/moves",
    "/inventory/count",
]


# --- the shell -------------------------------------------------------------------------------


def _routes(app: Any) -> list[tuple[Any, Any]]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        return [(r.path, r) for r in app.routes]
    return [(c.path, getattr(c, "original_route", c)) for c in iter_route_contexts(app.routes)]


def test_every_inventory_page_declares_an_inventory_permission(erp_app: Any) -> None:
    ui = [
        (path, r)
        for path, r in _routes(erp_app)
        if isinstance(r, APIRoute) and path.startswith("/inventory")
    ]
    assert len(ui) > 25
    for path, r in ui:
        assert str(route_permission(r)).startswith("core.inventory."), path
    # the pages' own forms (the list component's routes check their permissions themselves:
    # an inline edit its column's, a bulk action its own, tested below)
    writes = [
        (path, route_permission(r))
        for path, r in ui
        if "POST" in (r.methods or ()) and r.endpoint.__module__ == "erp_core.web.inventory_views"
    ]
    assert len(writes) == 5
    # creating and changing needs manage, counting needs count: never just read
    assert all(perm in ("core.inventory.manage", "core.inventory.count") for _, perm in writes)


def test_the_navigation_has_an_inventory_section(client: Any, owner: Any) -> None:
    home = client.get("/").text
    assert 'id="nav-inventory"' in home and ">库存<" in home
    for item in ("skus", "warehouses", "stock", "moves", "count"):
        assert f'data-menu="core.inventory.{item}"' in home
    page = client.get("/inventory/stock/by-lot").text
    assert 'href="/inventory/stock" data-menu="core.inventory.stock" aria-current="page"' in page


def test_every_page_renders_and_nothing_is_written_on_get(
    client: Any, stocked: dict[str, Any], inventory_writes: list[str]
) -> None:
    wh = stocked["warehouse"]["id"]
    sku = stocked["skus"]["TEA"]["id"]
    move = stocked["reservation"]["id"]
    extra = [
        f"/inventory/skus/{sku}",
        f"/inventory/warehouses/{wh}",
        f"/inventory/moves/{move}",
        f"/inventory/count?warehouse={wh}",
        "/inventory/moves?location=@customer",
        "/inventory/moves/export.csv",
        "/inventory/moves/export.xlsx",
        "/inventory/skus/export.csv",
        "/inventory/stock/by-lot/export.csv",
    ]
    inventory_writes.clear()
    for path in PAGES + extra:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[-500:])
        if "export" not in path:
            assert "<html" in r.text and r.headers["vary"] == "HX-Request"
    assert inventory_writes == []


# --- SKUs ------------------------------------------------------------------------------------


def test_sku_list_searches_filters_sorts_and_exports(client: Any, stocked: dict[str, Any]) -> None:
    page = client.get("/inventory/skus").text
    assert "龙井 250g" in page and "按批次" in page  # MILK's tracking, translated
    codes = re.findall(r'href="/inventory/skus/\d+">(\w+)</a>', page)
    assert codes == ["MILK", "PHONE", "TEA"]  # by code
    down = client.get("/inventory/skus?sort=-code").text
    assert re.findall(r'href="/inventory/skus/\d+">(\w+)</a>', down) == ["TEA", "PHONE", "MILK"]
    found = client.get("/inventory/skus?q=龙井").text
    assert re.findall(r'href="/inventory/skus/\d+">(\w+)</a>', found) == ["TEA"]
    lots = client.get("/inventory/skus?tracking_is=lot").text
    assert re.findall(r'href="/inventory/skus/\d+">(\w+)</a>', lots) == ["MILK"]
    # on hand across the warehouses, exact decimals without trailing zeros
    assert re.search(r'data-col="on_hand"[^>]*>\s*6\.5\s*</td>', page)
    assert re.search(r'data-col="on_hand"[^>]*>\s*14\s*</td>', page)
    fragment = client.get("/inventory/skus?q=TEA", headers=HX)
    assert "<html" not in fragment.text and 'id="list-skus"' in fragment.text
    rows = list(
        csv.reader(io.StringIO(client.get("/inventory/skus/export.csv").text.lstrip("\ufeff")))
    )
    assert rows[0][:2] == ["编码", "名称"] and len(rows) == 4
    assert rows[3] == ["TEA", "龙井 250g", "box", "0", "不追踪", "14", "是"]


def test_sku_create_shows_errors_next_to_the_field_and_stores_nothing(
    client: Any, owner: Any, erp_db: Any
) -> None:
    token = csrf_of(client)
    base = {"csrf_token": token, "name": "Green tea", "unit": "pcs", "decimals": "0"}
    r = client.post("/inventory/skus", data={**base, "code": "bad code!"}, headers=HX)
    assert r.status_code == 422 and "<html" not in r.text
    assert 'id="new-sku-code-error"' in r.text and "只能使用字母、数字" in unescape(r.text)
    assert 'aria-describedby="new-sku-code-help new-sku-code-error"' in r.text
    assert 'value="bad code!"' in r.text and "autofocus" in r.text
    r = client.post(
        "/inventory/skus",
        data={**base, "code": "SN-1", "tracking": "serial", "decimals": "2"},
        headers=HX,
    )
    assert r.status_code == 422 and 'id="new-sku-decimals-error"' in r.text
    r = client.post(
        "/inventory/skus", data={**base, "code": "T1", "shelf_life_days": "-3"}, headers=HX
    )
    assert r.status_code == 422 and "1 到 36500" in r.text
    with erp_db.tenant_session(owner.id) as s:
        assert s.scalar(select(func.count()).select_from(Sku)) == 0
    # without JavaScript: the whole page comes back, the dialog open
    r = client.post("/inventory/skus", data={**base, "code": ""})
    assert r.status_code == 422 and "<html" in r.text and "data-open-modal" in r.text
    r = client.post("/inventory/skus", data={**base, "code": "GT-1", "tracking": "lot"})
    assert r.status_code == 303
    page = client.get(r.headers["location"])
    assert "已创建 SKU GT-1。" in page.text and "Green tea" in page.text
    r = client.post("/inventory/skus", data={**base, "code": "GT-1"}, headers=HX)
    assert r.status_code == 422 and "SKU GT-1 已存在" in r.text


def test_inline_edit_of_a_sku_goes_through_the_service(
    client: Any, stocked: dict[str, Any], owner: Any
) -> None:
    tea = stocked["skus"]["TEA"]["id"]
    milk = stocked["skus"]["MILK"]["id"]
    token = csrf_of(client)
    editor = client.get(f"/inventory/skus/{tea}/edit/name", headers=HX)
    assert editor.status_code == 200 and editor.text.lstrip().startswith("<td")
    assert 'value="龙井 250g"' in editor.text and "autofocus" in editor.text
    bad = client.post(
        f"/inventory/skus/{tea}/edit/name", data={"value": "  ", "csrf_token": token}, headers=HX
    )
    assert bad.status_code == 422 and "请输入名称" in bad.text and 'aria-invalid="true"' in bad.text
    bad = client.post(
        f"/inventory/skus/{milk}/edit/decimals",
        data={"value": "0", "csrf_token": token},
        headers=HX,
    )
    assert bad.status_code == 422 and "小数位数只能增加" in bad.text
    ok = client.post(
        f"/inventory/skus/{tea}/edit/name",
        data={"value": "龙井 500g", "csrf_token": token},
        headers=HX,
    )
    assert ok.status_code == 200 and "龙井 500g" in ok.text and "已保存。" in ok.text
    ok = client.post(
        f"/inventory/skus/{milk}/edit/active", data={"value": "False", "csrf_token": token}
    )
    assert ok.status_code == 303  # without htmx: back to the list
    got = {s["code"]: s for s in _ok(client.get(f"{API}/skus", headers=owner.auth))["items"]}
    assert got["TEA"]["name"] == "龙井 500g" and got["MILK"]["active"] is False
    assert got["MILK"]["decimals"] == 1


def test_sku_detail_shows_stock_per_place_and_the_valuation(
    client: Any, stocked: dict[str, Any]
) -> None:
    tea = stocked["skus"]["TEA"]["id"]
    page = client.get(f"/inventory/skus/{tea}").text
    wh = page.split('id="stock-per-warehouse"')[1].split("</table>")[0]
    assert re.findall(r"<td>([^<]*)</td>", wh) == ["14", "2", "12"]  # on hand, reserved, available
    loc = page.split('id="stock-per-location"')[1].split("</table>")[0]
    assert "HZ/A/01" in loc and "HZ/STOCK" in loc
    assert 'data-value="average">35.50 CNY' in page and 'data-value="value">497.00 CNY' in page
    assert 'href="/inventory/moves?sku_is=TEA"' in page
    milk = client.get(f"/inventory/skus/{stocked['skus']['MILK']['id']}").text
    assert "L1" in milk and "6.5" in milk


def test_sku_form_refuses_what_the_service_refuses_inline(
    client: Any, stocked: dict[str, Any], owner: Any
) -> None:
    tea = stocked["skus"]["TEA"]["id"]
    token = csrf_of(client)
    form = {
        "csrf_token": token,
        "name": "龙井",
        "unit": "box",
        "decimals": "0",
        "tracking": "lot",
        "shelf_life_days": "",
        "active": "True",
    }
    r = client.post(f"/inventory/skus/{tea}", data=form, headers=HX)
    assert r.status_code == 422 and 'id="f-tracking-error"' in r.text
    assert "追踪方式不能更改" in r.text and "<html" not in r.text
    assert _ok(client.get(f"{API}/skus/{tea}", headers=owner.auth))["tracking"] == "none"
    r = client.post(
        f"/inventory/skus/{tea}", data={**form, "tracking": "none", "decimals": "2"}, headers=HX
    )
    assert r.status_code == 200 and r.headers["hx-redirect"] == f"/inventory/skus/{tea}"
    assert _ok(client.get(f"{API}/skus/{tea}", headers=owner.auth))["decimals"] == 2


# --- warehouses and locations ----------------------------------------------------------------


def test_warehouses_list_create_and_virtual_locations(client: Any, owner: Any) -> None:
    page = client.get("/inventory/warehouses").text
    for path in ("@supplier", "@customer", "@adjustment", "@scrap", "@transit"):
        assert f"<code>{path}</code>" in page
    assert "仓库间在途" in page
    token = csrf_of(client)
    r = client.post("/inventory/warehouses", data={"csrf_token": token, "code": "", "name": "x"})
    assert r.status_code == 422 and 'id="new-warehouse-code-error"' in r.text
    r = client.post(
        "/inventory/warehouses", data={"csrf_token": token, "code": "SH", "name": "上海仓"}
    )
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text
    assert "已创建仓库 SH。" in page and "上海仓" in page and 'data-path="SH/STOCK"' in page
    r = client.post(
        "/inventory/warehouses",
        data={"csrf_token": token, "code": "SH", "name": "again"},
        headers=HX,
    )
    assert r.status_code == 422 and "仓库 SH 已存在" in r.text
    listed = client.get("/inventory/warehouses?q=上海").text
    assert re.findall(r'href="/inventory/warehouses/\d+">(\w+)</a>', listed) == ["SH"]


def test_location_tree_grows_from_the_form(client: Any, stocked: dict[str, Any]) -> None:
    wh = stocked["warehouse"]["id"]
    page = client.get(f"/inventory/warehouses/{wh}").text
    tree = page.split('id="location-tree"')[1].split("</section>")[0]
    # warehouse -> STOCK and zone A -> bin 01, nested
    assert re.search(
        r'data-path="HZ">.*<ul>.*data-path="HZ/A">.*<ul>.*data-path="HZ/A/01"', tree, re.S
    )
    assert "在库 SKU：1" in tree  # HZ/A/01 holds TEA
    ids = dict(
        (path, i) for i, path in re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page)
    )
    token = csrf_of(client)
    url = f"/inventory/warehouses/{wh}/locations"
    r = client.post(
        url,
        data={"csrf_token": token, "parent": ids["HZ/A"], "code": "02", "kind": "stock"},
        headers=HX,
    )
    assert r.status_code == 200 and r.headers["hx-redirect"] == f"/inventory/warehouses/{wh}"
    for bad, field_id, text in (
        ({"parent": ids["HZ/A"], "code": "02"}, "location-code-error", "库位 HZ/A/02 已存在"),
        ({"parent": ids["HZ/A"], "code": "a b"}, "location-code-error", "只能使用字母"),
        ({"parent": "999999", "code": "X"}, "location-parent-error", "请选择本仓库的库位"),
        ({"parent": ids["HZ"], "code": "X", "kind": "bin"}, "location-kind-error", "用途"),
    ):
        r = client.post(url, data={"csrf_token": token, "kind": "stock", **bad}, headers=HX)
        assert r.status_code == 422 and f'id="{field_id}"' in r.text, bad
        assert text in unescape(r.text) and "<html" not in r.text
    page = client.get(f"/inventory/warehouses/{wh}").text
    assert 'data-path="HZ/A/02"' in page and 'data-path="HZ/A/X"' not in page


# --- stock levels ----------------------------------------------------------------------------


def _cells(html: str, col: str) -> list[str]:
    return [
        unescape(re.sub(r"<[^>]+>", "", m)).strip()
        for m in re.findall(rf'data-col="{col}"[^>]*>(.*?)</td>', html, re.S)
    ]


def test_stock_levels_per_sku_warehouse_lot_and_location(
    client: Any, stocked: dict[str, Any], owner: Any
) -> None:
    h = owner.auth
    _ok(client.post(f"{API}/warehouses", json={"code": "SH", "name": "上海仓"}, headers=h))
    _ok(
        client.post(
            f"{API}/receipts",
            json={"sku": "TEA", "quantity": "3", "warehouse": "SH", "unit_cost": "35.5"},
            headers=h,
        )
    )
    by_wh = client.get("/inventory/stock").text
    assert 'aria-current="page">按仓库' in by_wh
    assert list(zip(_cells(by_wh, "sku"), _cells(by_wh, "warehouse"), strict=True)) == [
        ("MILK", "HZ"),
        ("PHONE", "HZ"),
        ("TEA", "HZ"),
        ("TEA", "SH"),
    ]
    assert _cells(by_wh, "on_hand") == ["6.5", "1", "14", "3"]
    assert _cells(by_wh, "reserved") == ["0", "0", "2", "0"]
    assert _cells(by_wh, "available") == ["6.5", "1", "12", "3"]
    by_sku = client.get("/inventory/stock/by-sku?sku_is=TEA").text
    assert _cells(by_sku, "on_hand") == ["17"] and _cells(by_sku, "available") == ["15"]
    sh = client.get("/inventory/stock?warehouse_is=SH").text
    assert _cells(sh, "sku") == ["TEA"]
    lots = client.get("/inventory/stock/by-lot?lot_is=L1").text
    assert _cells(lots, "sku") == ["MILK"] and _cells(lots, "lot") == ["L1"]
    zone = client.get("/inventory/stock/by-location?location_in=HZ/A").text
    assert _cells(zone, "location") == ["HZ/A/01"] and _cells(zone, "on_hand") == ["4"]
    ordered = client.get("/inventory/stock/by-location?sort=-available").text
    assert _cells(ordered, "available") == ["8", "6.5", "4", "3", "1"]
    searched = client.get("/inventory/stock/by-location?q=A/01").text
    assert _cells(searched, "location") == ["HZ/A/01"]
    fragment = client.get("/inventory/stock/by-lot", headers=HX).text
    assert "<html" not in fragment and 'id="list-stock-lot"' in fragment


# --- moves -----------------------------------------------------------------------------------


def test_moves_list_pages_by_keyset_and_filters(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    with erp_db.tenant_session(owner.id) as s:
        for n in range(60):
            service.receive(
                s,
                "TEA",
                1,
                to_location="HZ/A/01",
                unit_cost="1",
                source=("purchase.order", f"PO-{n}"),
                reference=f"batch {n}",
            )
    total = _moves(erp_db, owner.id)
    seen: list[int] = []
    url: str | None = "/inventory/moves"
    pages = 0
    while url:
        page = client.get(url, headers=HX if pages else {}).text
        ids = [int(i) for i in _cells(page, "id")]
        seen += ids
        pages += 1
        m = re.search(r'rel="next" href="([^"]+)"', page)
        url = unescape(m.group(1)) if m else None
    assert pages == 2 and len(seen) == total == len(set(seen))
    assert seen == sorted(seen, reverse=True)  # newest first
    first = client.get("/inventory/moves").text
    assert 'rel="prev"' not in first
    # filters
    assert _cells(client.get("/inventory/moves?state_is=reserved").text, "state") == ["已预留"]
    milk = client.get("/inventory/moves?sku_is=MILK").text
    assert _cells(milk, "sku") == ["MILK"] and _cells(milk, "lot") == ["L1"]
    zone = client.get("/inventory/moves?location=HZ/A&size=200").text
    assert len(_cells(zone, "id")) == 61  # the 60 receipts and TEA's first one into A/01
    assert set(_cells(zone, "to_location")) == {"HZ/A/01"}
    supplier = client.get("/inventory/moves?location=@supplier&size=200").text
    assert len(_cells(supplier, "id")) == total - 1  # everything but the reservation
    po = client.get("/inventory/moves?source_type=purchase.order&source_id=PO-7").text
    assert _cells(po, "source") == ["purchase.order: PO-7"]
    assert _cells(client.get("/inventory/moves?q=batch 59").text, "source") == [
        "purchase.order: PO-59"
    ]
    zone_day = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    today = client.get(f"/inventory/moves?since={zone_day}&until={zone_day}&size=200").text
    assert len(_cells(today, "id")) == total
    tomorrow = (zone_day + timedelta(days=1)).isoformat()
    assert _cells(client.get(f"/inventory/moves?since={tomorrow}").text, "id") == []
    oldest = client.get("/inventory/moves?sort=created_at").text
    ids = [int(i) for i in _cells(oldest, "id")]
    assert ids == sorted(ids) and len(ids) == 50
    export = client.get("/inventory/moves/export.csv?state_is=done").text.lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(export)))
    assert rows[0][:4] == ["编号", "日期", "SKU", "数量"] and len(rows) == total  # minus 1 + header


def test_move_detail_shows_everything_in_the_tenants_zone(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    move_id = stocked["reservation"]["id"]
    page = client.get(f"/inventory/moves/{move_id}").text
    facts = page.split('id="move-facts"')[1].split("</dl>")[0]
    assert 'data-field="state">已预留' in facts and 'data-field="quantity">2 box' in facts
    assert "@customer" in facts and "客户" in facts  # the virtual destination, named
    assert f'href="/inventory/warehouses/{stocked["warehouse"]["id"]}">HZ/STOCK' in facts
    with erp_db.tenant_session(owner.id) as s:
        move = s.get(Move, move_id)
        assert move is not None
        created = move.created_at.astimezone(ZoneInfo("Asia/Shanghai"))
    assert created.strftime("%Y-%m-%d %H:%M:%S") in facts
    receipt = client.get(f"/inventory/moves/{move_id - 1}").text
    assert 'data-field="value">900.00 CNY' in receipt  # the phone, valued at its cost
    assert client.get("/inventory/moves/999999").status_code == 404


# --- the stock count -------------------------------------------------------------------------


def _count_form(client: Any, wh: int) -> tuple[str, dict[str, str]]:
    """The count page of warehouse ``wh`` and its form's fields, as a browser would send them."""
    page = client.get(f"/inventory/count?warehouse={wh}").text
    form = page.split('id="count-form"')[1].split("</form>")[0]
    data: dict[str, str] = {}
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', form):
        data[name] = unescape(value)
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected', body) or re.search(
            r'<option value="([^"]*)"', body
        )
        data[name] = chosen.group(1) if chosen else ""
    return page, data


def _row(data: dict[str, str], sku: str, location: str, lot: str = "") -> int:
    for k, v in data.items():
        if k.startswith("sku-") and v == sku:
            i = int(k[4:])
            if data.get(f"path-{i}") == location and data.get(f"lot-{i}", "") == lot:
                return i
    raise AssertionError(f"no row for {sku} at {location}")


def test_count_form_lists_the_books_and_needs_a_warehouse(
    client: Any, stocked: dict[str, Any]
) -> None:
    empty = client.get("/inventory/count").text
    assert 'id="count-form"' not in empty and 'id="count-warehouse"' in empty
    wh = stocked["warehouse"]["id"]
    page, data = _count_form(client, wh)
    assert data["warehouse"] == str(wh) and int(data["rows"]) == 4 + 5  # 4 places + 5 free lines
    i = _row(data, "TEA", "HZ/STOCK")
    assert data[f"book-{i}"] == "10"
    assert f'for="count-{i}-counted"' in page and "HZ/STOCK 的 TEA 盘点数量" in page
    fragment = client.get(f"/inventory/count?warehouse={wh}", headers=HX).text
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="count-area">')
    more = client.get(f"/inventory/count?warehouse={wh}&extra=15").text
    assert 'name="rows" value="19"' in more


def test_count_with_errors_books_nothing_then_the_corrected_count_is_booked(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    wh = stocked["warehouse"]["id"]
    _, data = _count_form(client, wh)
    data["csrf_token"] = csrf_of(client)
    tea = _row(data, "TEA", "HZ/STOCK")
    milk = _row(data, "MILK", "HZ/STOCK", "L1")
    free = int(data["rows"]) - 5  # the first free line
    before = _moves(erp_db, owner.id)
    bad = {
        **data,
        f"counted-{tea}": "-1",
        f"counted-{milk}": "6.25",
        f"sku-{free}": "NOPE",
        f"counted-{free}": "3",
        f"sku-{free + 1}": "MILK",
        f"counted-{free + 1}": "1",
    }
    r = client.post("/inventory/count", data=bad, headers=HX)
    assert r.status_code == 422 and "<html" not in r.text
    text = unescape(r.text)
    assert f'id="count-{tea}-counted-error"' in r.text and "盘点数量不能为负数" in text
    assert "MILK 最多 1 位小数" in text
    assert f'id="count-{free}-sku-error"' in r.text and "未知 SKU NOPE" in text
    assert f'id="count-{free + 1}-lot-error"' in r.text and "请输入盘点到的批次" in text
    assert 'value="-1"' in r.text and 'value="NOPE"' in r.text  # what was typed is kept
    # the first line with an error (by location, SKU, lot: MILK before TEA) gets the focus
    assert re.search(rf'id="count-{milk}-counted"[^>]*autofocus', r.text)
    assert r.text.count("autofocus") == 1
    assert _moves(erp_db, owner.id) == before
    # without JavaScript: the whole page, the same errors
    r = client.post("/inventory/count", data=bad)
    assert r.status_code == 422 and "<html" in r.text and "盘点数量不能为负数" in unescape(r.text)
    # nothing filled in
    r = client.post("/inventory/count", data=data, headers=HX)
    assert r.status_code == 422 and "请至少输入一个盘点数量" in r.text
    # corrected: 9 TEA found (1 lost), 6.5 MILK (matches), 2 TEA in bin A/01 (2 lost)
    good = {
        **data,
        f"counted-{tea}": "9",
        f"counted-{milk}": "6.5",
        f"counted-{_row(data, 'TEA', 'HZ/A/01')}": "2",
    }
    r = client.post("/inventory/count", data={**good, "reference": "CS-7"}, headers=HX)
    assert r.status_code == 200, r.text[-800:]
    result_url = r.headers["hx-redirect"]
    assert re.fullmatch(r"/inventory/counts/CNT-[0-9]{14}-[0-9a-f]{6}", result_url)
    assert _moves(erp_db, owner.id) == before + 2
    result = client.get(result_url).text
    assert "盘点已记账：共盘点 3 行，差异 2 行。" in result
    assert 'data-value="losses">3 · 106.50 CNY' in result
    assert 'data-value="gains">0 · 0.00 CNY' in result and "CS-7" in result
    lines = result.split('id="count-lines"')[1]
    assert "−1 box" in lines and "−2 box" in lines and "HZ/A/01" in lines
    levels = {
        (lv["sku"], lv["location"], lv["lot"]): lv["on_hand"]
        for lv in _ok(client.get(f"{API}/stock?group_by=lot", headers=owner.auth))
    }
    assert levels[("TEA", "HZ/STOCK", None)] == "9"
    assert levels[("TEA", "HZ/A/01", None)] == "2"
    assert levels[("MILK", "HZ/STOCK", "L1")] == "6.5"


def test_count_of_a_new_place_and_a_count_that_matches(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    wh = stocked["warehouse"]["id"]
    _, data = _count_form(client, wh)
    data["csrf_token"] = csrf_of(client)
    free = int(data["rows"]) - 5
    bin_id = next(
        v
        for k, v in data.items()
        if k.startswith("location-") and data.get(f"path-{k[9:]}") == "HZ/A/01"
    )
    # 5 PHONE? a serial number is one unit
    r = client.post(
        "/inventory/count",
        data={**data, f"sku-{free}": "PHONE", f"lot-{free}": "S1", f"counted-{free}": "5"},
        headers=HX,
    )
    assert r.status_code == 422 and "序列号只能盘点为 0 或 1" in r.text
    # the same place twice
    tea = _row(data, "TEA", "HZ/STOCK")
    r = client.post(
        "/inventory/count",
        data={
            **data,
            f"counted-{tea}": "10",
            f"sku-{free}": "TEA",
            f"location-{free}": data[f"location-{tea}"],
            f"counted-{free}": "1",
        },
        headers=HX,
    )
    assert r.status_code == 422 and f'id="count-{free}-counted-error"' in r.text
    assert "该库位已在另一行盘点" in r.text
    # MILK found in the bin, a gain at the average cost
    r = client.post(
        "/inventory/count",
        data={
            **data,
            f"sku-{free}": "MILK",
            f"location-{free}": bin_id,
            f"lot-{free}": "L1",
            f"counted-{free}": "1.5",
        },
    )
    assert r.status_code == 303
    result = client.get(r.headers["location"]).text
    assert 'data-value="gains">1.5 · 3.00 CNY' in result and "+1.5 l" in result
    # the same count again matches the books now: nothing is booked
    before = _moves(erp_db, owner.id)
    _, data = _count_form(client, wh)
    data["csrf_token"] = csrf_of(client)
    r = client.post(
        "/inventory/count",
        data={**data, f"counted-{_row(data, 'MILK', 'HZ/A/01', 'L1')}": "1.5"},
    )
    assert r.status_code == 303 and r.headers["location"] == f"/inventory/count?warehouse={wh}"
    assert "盘点数量与账面一致，未记账。" in client.get(r.headers["location"]).text
    assert _moves(erp_db, owner.id) == before


def test_count_below_what_is_reserved_is_refused_on_its_line(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    wh = stocked["warehouse"]["id"]
    _, data = _count_form(client, wh)
    data["csrf_token"] = csrf_of(client)
    tea = _row(data, "TEA", "HZ/STOCK")
    before = _moves(erp_db, owner.id)
    r = client.post("/inventory/count", data={**data, f"counted-{tea}": "1"}, headers=HX)
    assert r.status_code == 409 and f'id="count-{tea}-counted-error"' in r.text
    assert "reserved" in r.text  # the service's own words
    assert _moves(erp_db, owner.id) == before


# --- permissions, CSRF, tenants --------------------------------------------------------------


def test_viewers_read_but_cannot_change_or_count(
    client: Any, stocked: dict[str, Any], owner: Any
) -> None:
    v = _member(client, owner, "viewer@acme.test", "viewer")
    html = {"accept": "text/html"}
    for path in PAGES[:-1]:
        assert v.get(path, headers=html).status_code == 200, path
    sku = stocked["skus"]["TEA"]["id"]
    page = v.get("/inventory/skus").text
    assert "new-sku" not in page and "/edit/name" not in page
    assert "change-sku" not in v.get(f"/inventory/skus/{sku}").text
    assert 'id="sku-form"' not in v.get(f"/inventory/skus/{sku}").text
    assert v.get("/inventory/count", headers=html).status_code == 403
    assert 'data-menu="core.inventory.count"' not in v.get("/").text
    token = csrf_of(v)
    for path, data in (
        ("/inventory/skus", {"code": "X", "name": "x"}),
        (f"/inventory/skus/{sku}", {"name": "x"}),
        (f"/inventory/skus/{sku}/edit/name", {"value": "x"}),
        ("/inventory/warehouses", {"code": "X", "name": "x"}),
        (f"/inventory/warehouses/{stocked['warehouse']['id']}/locations", {"code": "X"}),
        ("/inventory/count", {"warehouse": str(stocked["warehouse"]["id"])}),
    ):
        r = v.post(path, data={**data, "csrf_token": token}, headers=html)
        assert r.status_code == 403, path
    assert v.get(f"/inventory/skus/{sku}/edit/name", headers=HX).status_code == 403
    assert _ok(client.get(f"{API}/skus/{sku}", headers=owner.auth))["name"] == "龙井 250g"


def test_without_the_read_permission_every_page_answers_403(
    client: Any, stocked: dict[str, Any], owner: Any
) -> None:
    _ok(
        client.post(
            "/api/v1/roles",
            json={"name": "clerk", "title": "Clerk", "permissions": ["core.tenant.read"]},
            headers=owner.auth,
        )
    )
    c = _member(client, owner, "clerk@acme.test", "clerk")
    html = {"accept": "text/html"}
    ids = {
        "sku": stocked["skus"]["TEA"]["id"],
        "wh": stocked["warehouse"]["id"],
        "move": stocked["reservation"]["id"],
    }
    for path in [
        *PAGES,
        f"/inventory/skus/{ids['sku']}",
        f"/inventory/warehouses/{ids['wh']}",
        f"/inventory/moves/{ids['move']}",
        "/inventory/moves/export.csv",
    ]:
        r = c.get(path, headers=html)
        assert r.status_code == 403 and "没有权限" in r.text, path
    assert "nav-inventory" not in c.get("/").text


def test_forms_need_the_csrf_token(
    client: Any, stocked: dict[str, Any], owner: Any, erp_db: Any
) -> None:
    html = {"accept": "text/html"}
    wh = stocked["warehouse"]["id"]
    sku = stocked["skus"]["TEA"]["id"]
    before = _moves(erp_db, owner.id)
    for path, data in (
        ("/inventory/skus", {"code": "CSRF", "name": "x"}),
        (f"/inventory/skus/{sku}", {"name": "x", "unit": "box", "decimals": "0"}),
        (f"/inventory/skus/{sku}/edit/name", {"value": "x"}),
        ("/inventory/warehouses", {"code": "CSRF", "name": "x"}),
        (f"/inventory/warehouses/{wh}/locations", {"code": "CSRF"}),
        ("/inventory/count", {"warehouse": str(wh), "rows": "1", "sku-0": "TEA", "counted-0": "1"}),
    ):
        r = client.post(path, data={**data, "csrf_token": "forged"}, headers=html)
        assert r.status_code == 403 and "表单校验码缺失或无效" in r.text, path
        assert client.post(path, data=data, headers=html).status_code == 403
    assert _moves(erp_db, owner.id) == before
    assert _ok(client.get(f"{API}/skus/{sku}", headers=owner.auth))["name"] == "龙井 250g"


def test_another_tenants_ids_answer_404(client: Any, make_tenant: Any, erp_db: Any) -> None:
    a = make_tenant("acme")
    b = make_tenant("bolt")
    mine = _stock(client, a)
    # a count in A, to have a count result of A's
    login(client, a.email)
    _, data = _count_form(client, mine["warehouse"]["id"])
    tea = _row(data, "TEA", "HZ/A/01")
    r = client.post(
        "/inventory/count", data={**data, f"counted-{tea}": "3", "csrf_token": csrf_of(client)}
    )
    assert r.status_code == 303
    count_url = r.headers["location"]
    client.cookies.clear()
    login(client, b.email)
    token = csrf_of(client)
    html = {"accept": "text/html"}
    sku = mine["skus"]["TEA"]["id"]
    wh = mine["warehouse"]["id"]
    move = mine["reservation"]["id"]
    for path in (
        f"/inventory/skus/{sku}",
        f"/inventory/skus/{sku}/edit/name",
        f"/inventory/skus/{sku}/cell/name",
        f"/inventory/warehouses/{wh}",
        f"/inventory/moves/{move}",
        count_url,
    ):
        assert client.get(path, headers=html).status_code == 404, path
    for path, data in (
        (f"/inventory/skus/{sku}", {"name": "taken", "unit": "box", "decimals": "0"}),
        (f"/inventory/skus/{sku}/edit/name", {"value": "taken"}),
        (f"/inventory/warehouses/{wh}/locations", {"code": "TAKEN", "parent": "1"}),
        ("/inventory/count", {"warehouse": str(wh), "rows": "1", "sku-0": "TEA", "counted-0": "0"}),
    ):
        r = client.post(path, data={**data, "csrf_token": token}, headers=html)
        assert r.status_code == 404, path
    # B's lists and exports show none of A's rows
    for path in PAGES:
        page = client.get(path).text
        assert "龙井" not in page and "杭州仓" not in page and ">TEA<" not in page, path
    assert "TEA" not in client.get("/inventory/moves/export.csv").text
    assert "@customer" in client.get("/inventory/warehouses").text  # B's own virtual locations
    # and nothing of A's changed
    assert _ok(client.get(f"{API}/skus/{sku}", headers=a.auth))["name"] == "龙井 250g"
    with erp_db.tenant_session(a.id) as s:
        assert (
            s.scalar(select(func.count()).select_from(Location).where(Location.code == "TAKEN"))
            == 0
        )


# --- accessibility of the pages with data ------------------------------------------------


class _Controls(HTMLParser):
    """Form controls without a label, and ids used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.ids: list[str] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.labels.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") not in (
            "hidden",
            "submit",
            "button",
        ):
            self.controls.append({**a, "wrapped": "1" if self._in_label else ""})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label = max(0, self._in_label - 1)

    def problems(self) -> list[str]:
        out = [
            f"unlabelled {c.get('name')!r}"
            for c in self.controls
            if not (c["wrapped"] or c.get("id") in self.labels or c.get("aria-label"))
        ]
        out += [f"id {i!r} twice" for i in sorted({i for i in self.ids if self.ids.count(i) > 1})]
        return out


def test_pages_with_data_label_every_control(client: Any, stocked: dict[str, Any]) -> None:
    wh = stocked["warehouse"]["id"]
    _, data = _count_form(client, wh)
    errors = client.post(
        "/inventory/count",
        data={**data, "csrf_token": csrf_of(client), "counted-0": "x", "sku-5": "NOPE"},
    )
    assert errors.status_code == 422
    pages = [
        errors.text,
        *(
            client.get(path).text
            for path in (
                f"/inventory/skus/{stocked['skus']['TEA']['id']}",
                f"/inventory/warehouses/{wh}",
                f"/inventory/moves/{stocked['reservation']['id']}",
                f"/inventory/count?warehouse={wh}",
                "/inventory/skus",
                "/inventory/stock/by-lot",
                "/inventory/moves?state_is=done",
            )
        ),
    ]
    for html in pages:
        parser = _Controls()
        parser.feed(html)
        assert parser.problems() == [], html[html.find("<title>") : html.find("</title>")]
        assert 'class="skip-link" href="#main"' in html and '<html lang="zh-CN"' in html
