"""The staff web UI without a browser: htmx fragments, permissions and CSRF on every page,
flash messages, language and theme per request, the app center, users, roles, tokens, tenant
settings and error pages."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.routing import APIRoute

from erp_core.app import route_permission
from erp_core.testing.fixtures import PASSWORD, csrf_of, login

HX = {"HX-Request": "true"}


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert m, "page has no CSRF token"
    return m.group(1)


@pytest.fixture
def owner(client, make_tenant):
    t = make_tenant("acme", plugins=("test_alpha",))
    login(client, t.email)
    return t


def _member(client, t, email, role, password=PASSWORD):
    r = client.post(
        "/api/v1/users",
        json={"email": email, "role": role, "password": password},
        headers=t.auth,
    )
    assert r.status_code == 201, r.text


# --- the shell -------------------------------------------------------------------------------


def _routes(app):
    """(path, route) of every route, FastAPI's lazily included routers too."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        return [(r.path, r) for r in app.routes]
    return [(c.path, getattr(c, "original_route", c)) for c in iter_route_contexts(app.routes)]


def test_every_ui_route_declares_a_permission(erp_app):
    ui = [
        (path, r)
        for path, r in _routes(erp_app)
        if isinstance(r, APIRoute) and path.startswith(("/admin", "/locale", "/switch-tenant"))
    ]
    assert len(ui) > 20
    missing = [path for path, r in ui if route_permission(r) is None]
    assert missing == []
    # everything under /admin needs a named kernel permission, not just a session
    for path, r in ui:
        if path.startswith("/admin"):
            assert str(route_permission(r)).startswith("core."), path


def test_pages_are_themed_translated_and_show_the_navigation(client, owner):
    home = client.get("/")
    assert home.status_code == 200
    html = home.text
    assert '<html lang="zh-CN"' in html
    assert "/static/default/vendor/htmx/htmx.min.js" in html  # vendored, never a CDN
    assert "http://" not in html.split("<body")[0] and "https://" not in html
    assert 'class="skip-link" href="#main"' in html
    assert "应用中心" in html and 'data-menu="test_alpha.notes"' in html
    assert "菜单" in html  # from the default theme's own catalog (domain "default")
    assert f'"X-CSRF-Token": "{csrf_of(client)}"' in html  # htmx sends it on every request


def test_anonymous_users_are_sent_to_the_login_page(client, make_tenant):
    make_tenant("acme")
    r = client.get("/admin/users", headers={"accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/admin/users")


def test_htmx_gets_the_block_and_every_answer_varies_on_hx_request(client, owner):
    full = client.get("/admin/audit")
    part = client.get("/admin/audit", headers=HX)
    assert "<html" in full.text and 'id="list-audit"' in full.text
    assert "<html" not in part.text and part.text.lstrip().startswith('<div class="list-results"')
    assert "list-controls" not in part.text  # the search form stays in the page
    assert full.headers["vary"] == part.headers["vary"] == "HX-Request"
    restore = client.get("/admin/audit", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text  # history restore needs the whole page


def test_language_switch_changes_the_text_and_is_remembered(client, owner):
    page = client.get("/admin/users").text
    assert "添加用户" in page
    r = client.post(
        "/locale",
        data={"locale": "en", "next": "/admin/users", "csrf_token": _csrf(page)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/admin/users"
    page = client.get("/admin/users").text
    assert "Add a user" in page and "添加用户" not in page and '<html lang="en"' in page
    # an unknown language is refused; without the CSRF token nothing changes
    assert client.post("/locale", data={"locale": "xx", "csrf_token": _csrf(page)}).status_code
    r = client.post("/locale", data={"locale": "zh_CN"}, follow_redirects=False)
    assert r.status_code == 403
    assert "Add a user" in client.get("/admin/users").text


def test_tenant_locale_is_the_default_language(client, owner):
    client.patch("/api/v1/tenants/current", json={"locale": "en"}, headers=owner.auth)
    assert "App center" in client.get("/").text


def test_flash_message_is_shown_once(client, owner):
    page = client.get("/admin/settings").text
    r = client.post(
        "/admin/settings",
        data={
            "csrf_token": _csrf(page),
            "name": "Acme 新名字",
            "currency": "CNY",
            "timezone": "Asia/Shanghai",
            "locale": "zh_CN",
            "theme": "default",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    first = client.get("/admin/settings").text
    assert "设置已保存。" in first and "Acme 新名字" in first
    assert "设置已保存。" not in client.get("/admin/settings").text


def test_forms_need_the_csrf_token(client, owner):
    r = client.post(
        "/admin/settings",
        data={"name": "x"},
        headers={"accept": "text/html"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert "表单校验码缺失或无效" in r.text  # the 403 page, translated
    r = client.post("/admin/plugins/test_gamma/enable", headers=HX)
    assert r.status_code == 403


# --- permissions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        ("viewer", "/admin/audit", 200),
        ("viewer", "/admin/users/1/edit/role", 403),
        ("staff", "/admin/audit", 403),
        ("staff", "/admin/users", 403),
        ("viewer", "/admin/plugins", 200),
        ("viewer", "/admin/settings", 200),
        ("staff", "/admin/tokens", 403),
        ("staff", "/admin/roles", 403),
        ("staff", "/admin/audit/export.csv", 403),
        ("admin", "/admin/audit", 200),
    ],
)
def test_pages_check_permissions_on_the_server(client, owner, role, path, status):
    _member(client, owner, f"{role}@acme.test", role)
    other = client.__class__(client.app)
    login(other, f"{role}@acme.test")
    r = other.get(path, headers={"accept": "text/html"})
    assert r.status_code == status, r.text[-500:]
    if status == 403:
        assert "没有权限" in r.text  # the theme's 403 page
        # and the navigation does not offer what the page refuses
        assert f'href="{path}"' not in other.get("/").text


def test_read_only_users_see_no_change_buttons_and_cannot_post(client, owner):
    _member(client, owner, "viewer@acme.test", "viewer")
    v = client.__class__(client.app)
    login(v, "viewer@acme.test")
    page = v.get("/admin/plugins").text
    assert "/admin/plugins/test_gamma/enable" not in page
    r = v.post("/admin/plugins/test_gamma/enable", data={"csrf_token": _csrf(page)})
    assert r.status_code == 403
    settings = v.get("/admin/settings").text
    assert "<fieldset disabled>" in settings


# --- app center ------------------------------------------------------------------------------


def test_app_center_lists_plugins_with_stages_and_themes_apart(client, owner):
    page = client.get("/admin/plugins").text
    for name in ("test_alpha", "test_beta", "test_gamma"):
        assert f'data-plugin="{name}"' in page
    assert 'data-plugin="default"' not in page  # themes are not apps
    assert "<code>contrast</code>" in page and "使用中" in page
    assert "test_broken" in page and "broken on purpose" in page
    stages = client.get("/admin/plugins?view=stages").text
    assert stages.index('id="stage-1"') < stages.index('data-plugin="test_alpha"')
    assert stages.index('id="stage-2"') < stages.index('data-plugin="test_beta"')
    assert stages.index('id="stage-3"') < stages.index('data-plugin="test_gamma"')
    assert "第四阶段：财务与报表" in stages and "随时可用（办公集成、工具）" in stages


def test_enabling_explains_missing_dependencies_inline_then_enables_them(client, make_tenant):
    t = make_tenant("bare")
    login(client, t.email)
    page = client.get("/admin/plugins").text
    token = _csrf(page)
    r = client.post("/admin/plugins/test_beta/enable", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 409
    assert 'id="problem-test_beta"' in r.text and "需要先启用 test_alpha" in r.text
    assert "连同 Alpha (test) 一起启用" in r.text
    r = client.post(
        "/admin/plugins/test_beta/enable",
        data={"csrf_token": token, "with_dependencies": "1"},
        headers=HX,
    )
    assert r.status_code == 200
    assert 'id="side-nav" class="side-nav" aria-label="主导航" hx-swap-oob="true"' in r.text
    assert 'data-menu="test_alpha.notes"' in r.text  # the new menu, swapped out of band
    assert "已启用：Alpha (test), Beta (test)。" in r.text
    # disabling what another app needs is refused, with the reason
    r = client.post("/admin/plugins/test_alpha/disable", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 409 and "test_beta 依赖它" in r.text
    # without htmx: redirect and flash
    r = client.post(
        "/admin/plugins/test_beta/disable", data={"csrf_token": token}, follow_redirects=False
    )
    assert r.status_code == 303
    assert "已停用：Beta (test)。" in client.get(r.headers["location"]).text


def test_themes_are_chosen_not_enabled(client, owner):
    r = client.post("/api/v1/plugins/contrast/enable", headers=owner.auth)
    assert r.status_code == 409 and "is a theme" in r.json()["detail"]
    r = client.patch("/api/v1/tenants/current", json={"theme": "nope"}, headers=owner.auth)
    assert r.status_code == 422 and "not installed" in r.json()["detail"]
    r = client.patch("/api/v1/tenants/current", json={"theme": "contrast"}, headers=owner.auth)
    assert r.status_code == 200 and r.json()["theme"] == "contrast"
    page = client.get("/").text
    assert "/static/contrast/contrast.css" in page and 'content="dark"' in page
    assert "/static/default/erp.css" in page  # contrast builds on the default theme
    css = client.get("/static/contrast/contrast.css")
    assert css.status_code == 200 and "--bg: #000000" in css.text


# --- users, roles, tokens, settings ----------------------------------------------------------


def test_add_user_shows_errors_next_to_the_field_then_succeeds(client, owner):
    token = _csrf(client.get("/admin/users").text)
    r = client.post(
        "/admin/users",
        data={"csrf_token": token, "email": "not-an-address", "role": "staff", "password": ""},
        headers=HX,
    )
    assert r.status_code == 422
    assert 'id="new-user-email-error"' in r.text and "不是有效的邮箱地址" in r.text
    assert 'aria-describedby="new-user-email-error"' in r.text
    assert 'value="not-an-address"' in r.text  # what was typed is kept
    r = client.post(
        "/admin/users",
        data={"csrf_token": token, "email": "new@acme.test", "role": "staff", "password": ""},
        headers=HX,
    )
    assert r.status_code == 422 and 'id="new-user-password-error"' in r.text
    r = client.post(
        "/admin/users",
        data={
            "csrf_token": token,
            "email": "new@acme.test",
            "role": "staff",
            "password": "a-long-password",
        },
        headers=HX,
    )
    assert r.status_code == 200 and r.headers["hx-redirect"] == "/admin/users"
    page = client.get("/admin/users").text
    assert "new@acme.test" in page and "已添加 new@acme.test。" in page


def test_inline_edit_of_a_role_with_validation(client, owner):
    _member(client, owner, "clerk@acme.test", "staff")
    users = client.get("/api/v1/users", headers=owner.auth).json()
    clerk = next(u["id"] for u in users if u["email"] == "clerk@acme.test")
    me = next(u["id"] for u in users if u["email"] == owner.email)
    token = csrf_of(client)
    editor = client.get(f"/admin/users/{clerk}/edit/role", headers=HX)
    assert editor.status_code == 200 and editor.text.lstrip().startswith("<td")
    assert 'name="value"' in editor.text and '<option value="viewer"' in editor.text
    bad = client.post(
        f"/admin/users/{clerk}/edit/role", data={"value": "nope", "csrf_token": token}, headers=HX
    )
    assert bad.status_code == 422 and "本商户没有角色 'nope'" in unescape(bad.text)
    assert 'aria-invalid="true"' in bad.text
    ok = client.post(
        f"/admin/users/{clerk}/edit/role",
        data={"value": "viewer", "csrf_token": token},
        headers=HX,
    )
    assert ok.status_code == 200 and "viewer" in ok.text and "已保存。" in ok.text
    assert client.get(f"/api/v1/users/{clerk}", headers=owner.auth).json()["role"] == "viewer"
    # a viewer may not even open the editor
    v = client.__class__(client.app)
    login(v, "clerk@acme.test")
    assert v.get(f"/admin/users/{me}/edit/role", headers=HX).status_code == 403


def test_bulk_action_on_selected_users(client, owner):
    for i in range(3):
        _member(client, owner, f"p{i}@acme.test", "staff")
    users = {u["email"]: u["id"] for u in client.get("/api/v1/users", headers=owner.auth).json()}
    token = csrf_of(client)
    ids = [users["p0@acme.test"], users["p1@acme.test"]]
    r = client.post(
        "/admin/users/bulk",
        data={"csrf_token": token, "action": "deactivate", "ids": ids, "back": "/admin/users"},
        headers=HX,
    )
    assert r.status_code == 200 and "已停用 2 个用户。" in r.text
    state = {
        u["email"]: u["is_active"] for u in client.get("/api/v1/users", headers=owner.auth).json()
    }
    assert state["p0@acme.test"] is False and state["p1@acme.test"] is False
    assert state["p2@acme.test"] is True
    # the rule of the use case holds: nobody deactivates themselves, nothing else changes
    r = client.post(
        "/admin/users/bulk",
        data={
            "csrf_token": token,
            "action": "deactivate",
            "ids": [users["p2@acme.test"], users[owner.email]],
        },
        headers=HX,
    )
    assert "不能停用你自己" in r.text
    state = {
        u["email"]: u["is_active"] for u in client.get("/api/v1/users", headers=owner.auth).json()
    }
    assert state["p2@acme.test"] is True and state[owner.email] is True


def test_roles_show_permissions_grouped_and_errors_next_to_the_field(client, owner):
    page = client.get("/admin/roles/new").text
    assert "系统内核" in page and "Alpha (test)" in page and 'value="test_alpha.note.read"' in page
    assert "查看审计日志" in page  # kernel permission titles are translated
    token = _csrf(page)
    r = client.post(
        "/admin/roles",
        data={"csrf_token": token, "name": "clerk", "title": "Clerk", "extra": "core.nope"},
        headers=HX,
    )
    assert r.status_code == 422
    assert 'id="f-extra-error"' in r.text and "未知权限 'core.nope'" in unescape(r.text)
    r = client.post(
        "/admin/roles",
        data={"csrf_token": token, "name": "Bad Name", "perm": "core.audit.read"},
        headers=HX,
    )
    assert r.status_code == 422 and 'id="f-name-error"' in r.text
    assert 'value="core.audit.read" checked' in r.text  # the choice survives the error
    r = client.post(
        "/admin/roles",
        data={
            "csrf_token": token,
            "name": "clerk",
            "title": "Clerk",
            "perm": ["core.audit.read", "test_alpha.note.read"],
            "extra": "!core.tokens.*",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    roles = {x["name"]: x for x in client.get("/api/v1/roles", headers=owner.auth).json()}
    assert roles["clerk"]["permissions"] == [
        "core.audit.read",
        "test_alpha.note.read",
        "!core.tokens.*",
    ]
    assert "已创建角色 clerk。" in client.get("/admin/roles").text


def test_token_secret_is_shown_once_and_revoking_works(client, owner):
    token = _csrf(client.get("/admin/tokens").text)
    bad = client.post("/admin/tokens", data={"csrf_token": token, "name": " "}, headers=HX)
    assert bad.status_code == 422 and 'id="token-name-error"' in bad.text
    r = client.post(
        "/admin/tokens",
        data={"csrf_token": token, "name": "scanner", "scopes": "core.audit.read"},
        headers=HX,
    )
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'id="token-secret" class="secret" readonly value="([^"]+)"', r.text)
    assert secret and secret.group(1).startswith("erp_")
    assert "erp_flash" not in r.headers.get("set-cookie", "")
    api = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 200
    again = client.get("/admin/tokens").text
    assert secret.group(1) not in again and "scanner" in again
    tid = next(
        t["id"]
        for t in client.get("/api/v1/tokens", headers=owner.auth).json()
        if t["name"] == "scanner"
    )
    r = client.post(f"/admin/tokens/{tid}/revoke", data={"csrf_token": token}, headers=HX)
    assert r.status_code == 200 and "已吊销令牌 scanner。" in r.text
    api = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 401


def test_settings_errors_are_shown_next_to_their_field(client, owner):
    token = _csrf(client.get("/admin/settings").text)
    r = client.post(
        "/admin/settings",
        data={
            "csrf_token": token,
            "name": "Acme",
            "currency": "yuan",
            "timezone": "Asia/Shanghai",
            "locale": "zh_CN",
            "theme": "default",
        },
        headers=HX,
    )
    assert r.status_code == 422 and 'id="f-currency-error"' in r.text
    assert "'YUAN'" in unescape(r.text)
    r = client.post(
        "/admin/settings",
        data={
            "csrf_token": token,
            "name": "Acme",
            "currency": "CNY",
            "timezone": "Mars/Base",
            "locale": "zh_CN",
            "theme": "contrast",
        },
        headers=HX,
    )
    assert r.status_code == 422 and 'id="f-timezone-error"' in r.text
    assert client.get("/api/v1/tenants/current", headers=owner.auth).json()["theme"] == "default"


# --- error pages -----------------------------------------------------------------------------


def test_error_pages_use_the_theme_and_the_language(client, owner, erp_app):
    r = client.get("/no/such/page", headers={"accept": "text/html"})
    assert r.status_code == 404 and "未找到" in r.text and 'id="side-nav"' in r.text
    assert "/static/default/erp.css" in r.text

    def boom() -> None:
        raise RuntimeError("kaput")

    erp_app.add_api_route("/boom", boom, methods=["GET"])
    r = client.get("/boom", headers={"accept": "text/html"})
    assert r.status_code == 500 and "服务器出错了" in r.text and "kaput" not in r.text
    # the JSON API keeps problem documents
    r = client.get("/api/v1/nope", headers={"accept": "text/html"})
    assert r.headers["content-type"].startswith("application/problem+json")


def test_kernel_works_without_any_theme(erp_settings, erp_db, make_tenant):
    from fastapi.testclient import TestClient

    from erp_core.app import create_app
    from erp_core.plugins.registry import PluginRegistry

    registry = PluginRegistry.discover()
    plain = PluginRegistry([p for p in registry.plugins.values() if p.manifest.kind != "theme"])
    app = create_app(erp_settings, registry=plain, db=erp_db)
    t = make_tenant("acme")
    with TestClient(app) as c:
        login(c, t.email)
        page = c.get("/admin/audit")
        assert page.status_code == 200
        assert "/static/core/core.css" in page.text and "htmx" not in page.text
        assert "审计日志" in page.text
        assert c.get("/admin/plugins").status_code == 200


def test_ui_routes_never_reach_another_tenants_rows(client, make_tenant):
    a = make_tenant("acme")
    b = make_tenant("bolt")
    _member(client, a, "clerk@acme.test", "staff")
    a_users = {u["email"]: u["id"] for u in client.get("/api/v1/users", headers=a.auth).json()}
    a_role = client.get("/api/v1/roles", headers=a.auth).json()[0]["id"]
    a_token = client.get("/api/v1/tokens", headers=a.auth).json()[0]["id"]
    clerk = a_users["clerk@acme.test"]
    login(client, b.email)
    token = csrf_of(client)
    html = {"accept": "text/html"}
    assert client.get(f"/admin/roles/{a_role}", headers=html).status_code == 404
    assert (
        client.post(
            f"/admin/roles/{a_role}", data={"csrf_token": token, "title": "x"}, headers=html
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/admin/roles/{a_role}/delete", data={"csrf_token": token}, headers=html
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/admin/tokens/{a_token}/revoke", data={"csrf_token": token}, headers=html
        ).status_code
        == 404
    )
    assert client.get(f"/admin/users/{clerk}/edit/role", headers=html).status_code == 404
    assert (
        client.post(
            f"/admin/users/{clerk}/edit/role",
            data={"csrf_token": token, "value": "viewer"},
            headers=html,
        ).status_code
        == 404
    )
    r = client.post(
        "/admin/users/bulk",
        data={"csrf_token": token, "action": "deactivate", "ids": [clerk]},
        headers=HX,
    )
    assert "已停用 0 个用户。" in r.text
    assert "clerk@acme.test" not in client.get("/admin/users").text
    assert "clerk@acme.test" not in client.get("/admin/audit/export.csv").text
    clerk_now = client.get(f"/api/v1/users/{clerk}", headers=a.auth).json()
    assert clerk_now["role"] == "staff" and clerk_now["is_active"] is True
    assert client.get("/api/v1/tokens", headers=a.auth).json()[0]["revoked_at"] is None
