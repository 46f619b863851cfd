"""The inventory pages in the browser: a stock count whose first try has a mistake, fixed in
place, booked, and seen in the stock levels; then paging through a long list of moves."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from erp_core.testing.fixtures import PASSWORD

API = "/api/v1/inventory"


def _login(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("section.login button[type=submit]").click()
    page.wait_for_url(base + "/")


def _stock(client: Any, t: Any) -> None:
    for path, body in (
        ("/warehouses", {"code": "HZ", "name": "杭州仓"}),
        ("/skus", {"code": "TEA", "name": "龙井 250g", "unit": "box"}),
        ("/receipts", {"sku": "TEA", "quantity": "10", "warehouse": "HZ", "unit_cost": "35.5"}),
    ):
        r = client.post(API + path, json=body, headers=t.auth)
        assert r.status_code == 201, r.text


def _ids(page: Any) -> list[int]:
    return [
        int(x)
        for x in page.locator("#list-moves tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
    ]


def test_a_stock_count_with_a_mistake_then_booked(live_server, page, make_tenant, client):
    t = make_tenant("acme")
    _stock(client, t)
    _login(page, live_server, t.email)
    nav = page.locator("nav#side-nav")
    nav.locator('[data-menu="core.inventory.count"]').click()
    page.wait_for_url(live_server + "/inventory/count")
    expect(page.locator("h1")).to_have_text("库存盘点")
    # choosing the warehouse loads its places (htmx, the URL follows)
    page.select_option("#count-warehouse", label="HZ · 杭州仓")
    counted = page.get_by_label("HZ/STOCK 的 TEA 盘点数量")
    expect(counted).to_be_visible()
    expect(page).to_have_url(re.compile(r"/inventory/count\?warehouse=\d+"))
    row = page.locator("#count-form tbody tr").filter(has_text="TEA").first
    expect(row).to_contain_text("10")  # on the books

    # a negative count: refused in place, focus on the field, nothing booked
    counted.fill("-3")
    page.get_by_role("button", name="盘点记账").click()
    error = page.locator("#count-form .field-error")
    expect(error).to_have_text("盘点数量不能为负数")
    counted = page.get_by_label("HZ/STOCK 的 TEA 盘点数量")
    expect(counted).to_have_attribute("aria-invalid", "true")
    expect(counted).to_be_focused()
    expect(counted).to_have_value("-3")
    r = client.get(f"{API}/stock?sku=TEA", headers=t.auth)
    assert r.json()[0]["on_hand"] == "10"

    # corrected with the keyboard: booked, and the result shown
    counted.fill("7")
    counted.press("Enter")
    page.wait_for_url(re.compile(r"/inventory/counts/CNT-"))
    expect(page.locator(".flash-success")).to_contain_text("盘点已记账：共盘点 1 行，差异 1 行。")
    expect(page.locator('[data-value="losses"]')).to_have_text("3 · 106.50 CNY")
    expect(page.locator("#count-lines")).to_contain_text("−3 box")

    # the stock levels show the new quantity
    nav.locator('[data-menu="core.inventory.stock"]').click()
    page.wait_for_url(live_server + "/inventory/stock")
    tea = page.locator("#list-stock-warehouse tbody tr").filter(has_text="TEA")
    expect(tea.locator('[data-col="on_hand"]')).to_have_text("7")
    expect(tea.locator('[data-col="available"]')).to_have_text("7")
    # and the SKU's page its value at the average cost
    tea.get_by_role("link", name="TEA").click()
    expect(page.locator('[data-value="value"]')).to_have_text("248.50 CNY")


def test_page_through_the_moves(live_server, page, make_tenant, client, erp_db):
    from erp_core.inventory import service

    t = make_tenant("acme")
    _stock(client, t)
    with erp_db.tenant_session(t.id) as s:
        for n in range(120):
            service.receive(
                s, "TEA", 1, warehouse="HZ", unit_cost="1", source=("purchase.order", f"PO-{n}")
            )
    _login(page, live_server, t.email)
    page.goto(live_server + "/inventory/moves")
    first = _ids(page)
    assert len(first) == 50 and first == sorted(first, reverse=True)
    expect(page.locator("a[rel=prev]")).to_have_count(0)
    page.locator("a[rel=next]").click()
    expect(page).to_have_url(re.compile(r"after="))  # htmx pushed the page's URL
    second = _ids(page)
    assert len(second) == 50 and max(second) < min(first)
    page.locator("a[rel=next]").click()
    expect(page.locator("a[rel=next]")).to_have_count(0)
    third = _ids(page)
    assert len(third) == 21 and max(third) < min(second)  # 121 moves in all
    page.locator("a[rel=prev]").click()
    expect(page.locator("a[rel=next]")).to_have_count(1)
    assert _ids(page) == second
    # a filter starts again from the first page; the detail of a move is a click away
    page.fill("#filter-moves-source_id", "PO-7")
    page.locator("#controls-moves").get_by_role("button", name="应用").click()
    expect(page.locator("#list-moves tbody tr")).to_have_count(1)
    page.locator("#list-moves tbody tr a").first.click()
    expect(page.locator("h1")).to_contain_text("库存移动")
    expect(page.locator('[data-field="source"]')).to_have_text("purchase.order: PO-7")
