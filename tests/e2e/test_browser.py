"""What staff do in the browser: log in, switch tenant and language, enable an app and see its
menu appear, fix a validation error, page through a long list, act on selected rows, export,
and use the keyboard."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from erp_core.testing.fixtures import PASSWORD


def _login(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("section.login button[type=submit]").click()
    page.wait_for_url(base + "/")


def test_login_switch_tenant_and_language(live_server, page, make_tenant):
    make_tenant("acme")
    bolt = make_tenant("bolt", email="owner@acme.test")  # the same person, two tenants
    _login(page, live_server, bolt.email)
    expect(page.locator("h1")).to_have_text("Acme")
    expect(page.locator("nav#side-nav")).to_contain_text("应用中心")
    # the tenant switcher submits on change
    page.select_option("#tenant-switch", "bolt")
    page.wait_for_url(live_server + "/")
    expect(page.locator("h1")).to_have_text("Bolt")
    expect(page.locator(".flash-success")).to_contain_text("你现在在 Bolt 中工作")
    # the language switch
    page.goto(live_server + "/admin/plugins")
    page.select_option("#language-switch", "en")
    page.wait_for_url(live_server + "/admin/plugins")
    expect(page.locator("h1")).to_have_text("App center")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.select_option("#language-switch", "zh_CN")
    expect(page.locator("h1")).to_have_text("应用中心")
    # logging out through the user menu
    page.locator(".user-menu summary").click()
    page.locator(".user-menu button[type=submit]").click()
    page.wait_for_url(live_server + "/login")
    expect(page.locator(".flash-info")).to_contain_text("你已退出登录")


def test_enable_an_app_and_its_menu_appears(live_server, page, make_tenant):
    t = make_tenant("acme")
    _login(page, live_server, t.email)
    page.goto(live_server + "/admin/plugins")
    nav = page.locator("nav#side-nav")
    expect(nav.locator('[data-menu="test_alpha.notes"]')).to_have_count(0)
    beta = page.locator('[data-plugin="test_beta"]')
    beta.get_by_role("button", name="启用").click()
    # the dependency check, explained in place
    problem = page.locator("#problem-test_beta")
    expect(problem).to_contain_text("需要先启用 test_alpha")
    problem.get_by_role("button", name="连同 Alpha (test) 一起启用").click()
    expect(page.locator(".flash-success")).to_contain_text("已启用：Alpha (test), Beta (test)")
    # the menu changed without reloading the page
    link = nav.locator('[data-menu="test_alpha.notes"]')
    expect(link).to_be_visible()
    expect(beta.locator(".badge")).to_have_text("已启用")
    link.click()
    page.wait_for_url(live_server + "/alpha")
    expect(page.locator("#notes")).to_contain_text("welcome")


def test_validation_errors_are_shown_next_to_the_field_then_corrected(
    live_server, page, make_tenant
):
    t = make_tenant("acme")
    _login(page, live_server, t.email)
    page.goto(live_server + "/admin/roles/new")
    page.fill("#f-name", "clerk")
    page.check('input[value="core.audit.read"]')
    page.fill("#f-extra", "core.nope")
    page.get_by_role("button", name="保存").click()
    error = page.locator("#f-extra-error")
    expect(error).to_contain_text("未知权限 'core.nope'")
    expect(page.locator("#f-extra")).to_have_attribute("aria-invalid", "true")
    expect(page.locator('input[value="core.audit.read"]')).to_be_checked()  # kept
    page.fill("#f-extra", "!core.tokens.*")
    page.get_by_role("button", name="保存").click()
    page.wait_for_url(live_server + "/admin/roles")
    expect(page.locator(".flash-success")).to_contain_text("已创建角色 clerk")
    expect(page.locator('tr[data-role="clerk"]')).to_contain_text("core.audit.read !core.tokens.*")

    # a token, in a dialog: the error first, then the secret, shown once
    page.goto(live_server + "/admin/tokens")
    page.get_by_role("button", name="新建令牌").click()
    dialog = page.locator("dialog#new-token")
    expect(dialog).to_be_visible()
    expect(page.locator("#token-name")).to_be_focused()
    page.fill("#token-scopes", "nope.*!")
    page.fill("#token-name", "scanner")
    dialog.get_by_role("button", name="创建令牌").click()
    expect(page.locator("#token-scopes-error")).to_contain_text("不是有效的权限模式")
    page.fill("#token-scopes", "core.audit.read")
    page.locator("dialog#new-token").get_by_role("button", name="创建令牌").click()
    secret = page.locator("#token-secret")
    expect(secret).to_have_value(re.compile(r"^erp_"))
    page.reload()
    expect(page.locator("#token-secret")).to_have_count(0)
    expect(page.locator("tr[data-token]")).to_have_count(2)  # the fixture's and the new one


def _seed_audit(erp_db: Any, tenant_id: int, n: int) -> None:
    from erp_core.audit.models import AuditEvent

    start = datetime(2026, 1, 1, tzinfo=UTC)
    with erp_db.tenant_session(tenant_id) as s:
        s.add_all(
            AuditEvent(
                tenant_id=tenant_id,
                at=start + timedelta(minutes=i),
                action="login",
                actor=f"actor{i:04d}@acme.test",
            )
            for i in range(n)
        )


def _ids(page: Any) -> list[int]:
    return [
        int(x)
        for x in page.locator("#list-audit tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.id)"
        )
    ]


def test_page_through_a_long_list_and_export_it(live_server, page, make_tenant, erp_db):
    from openpyxl import load_workbook

    t = make_tenant("acme")
    _seed_audit(erp_db, t.id, 130)
    _login(page, live_server, t.email)
    page.goto(live_server + "/admin/audit?size=50")
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
    assert third and max(third) < min(second)
    page.locator("a[rel=prev]").click()
    expect(page.locator("a[rel=next]")).to_have_count(1)
    assert _ids(page) == second
    # search narrows the list as you type
    page.fill("#q-audit", "actor0007")
    expect(page.locator("#list-audit tbody tr")).to_have_count(1)

    # both exports download and parse, and follow the search
    with page.expect_download() as dl:
        page.get_by_role("link", name="导出 CSV").click()
    rows = list(csv.reader(io.StringIO(dl.value.path().read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["时间", "操作", "操作人"] and [r[2] for r in rows[1:]] == [
        "actor0007@acme.test"
    ]
    page.goto(live_server + "/admin/audit")
    with page.expect_download() as dl:
        page.get_by_role("link", name="导出 Excel").click()
    assert dl.value.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(dl.value.path().read_bytes()), read_only=True)
    sheet = list(book.active.iter_rows(values_only=True))
    assert sheet[0][0] == "时间" and len(sheet) - 1 >= 131


def test_bulk_action_and_inline_edit(live_server, page, make_tenant, client):
    t = make_tenant("acme")
    for i in range(3):
        r = client.post(
            "/api/v1/users",
            json={"email": f"p{i}@acme.test", "role": "staff", "password": PASSWORD},
            headers=t.auth,
        )
        assert r.status_code == 201
    _login(page, live_server, t.email)
    page.goto(live_server + "/admin/users")
    rows = page.locator("#list-users tbody tr")
    expect(rows).to_have_count(4)
    for email in ("p0@acme.test", "p1@acme.test"):
        rows.filter(has_text=email).locator('input[name="ids"]').check()
    page.select_option("#bulk-action-users", "deactivate")
    page.locator("#bulk-users").get_by_role("button", name="应用").click()
    expect(page.locator(".flash-success")).to_contain_text("已停用 2 个用户")
    expect(rows.filter(has_text="p0@acme.test")).to_contain_text("否")
    expect(rows.filter(has_text="p2@acme.test")).to_contain_text("是")
    # inline edit of a role, with the keyboard
    p2 = rows.filter(has_text="p2@acme.test")
    p2.get_by_role("link", name="修改角色").click()
    select = p2.locator('select[name="value"]')
    expect(select).to_be_focused()
    select.select_option("viewer")
    select.focus()  # on a loaded machine the option pick can land after focus moved on
    expect(select).to_be_focused()  # and htmx's settling is over before the key goes
    page.keyboard.press("Tab")  # to the save button
    expect(p2.get_by_role("button", name="保存")).to_be_focused()
    page.keyboard.press("Enter")
    # a loaded CI machine may take a while to answer the save
    expect(p2.locator('td[data-col="role"]')).to_contain_text("viewer", timeout=15_000)
    expect(p2.locator('select[name="value"]')).to_have_count(0)


def test_keyboard_skip_link_and_dialog(live_server, page, make_tenant):
    t = make_tenant("acme")
    _login(page, live_server, t.email)
    page.goto(live_server + "/admin/users")
    page.keyboard.press("Tab")
    skip = page.locator(".skip-link")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.get_by_role("button", name="添加用户").click()
    dialog = page.locator("dialog#add-user")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
