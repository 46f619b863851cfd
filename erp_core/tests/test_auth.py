"""Login, sessions, CSRF, lockout, logout, API tokens and the audit trail they leave."""

from __future__ import annotations

from sqlalchemy import select

from erp_core.audit.models import AuditEvent
from erp_core.auth.models import ApiToken
from erp_core.testing.fixtures import PASSWORD, csrf_of, login


def _actions(erp_db, tenant_id=None):
    from erp_core.db.session import system_access

    with erp_db.session() as s, system_access(s):
        q = select(AuditEvent.action).order_by(AuditEvent.id)
        if tenant_id is not None:
            q = q.where(AuditEvent.tenant_id == tenant_id)
        return list(s.scalars(q))


def test_login_sets_httponly_samesite_cookie_and_shows_home(client, make_tenant):
    t = make_tenant("acme")
    r = login(client, t.email)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "erp_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    home = client.get("/")
    assert home.status_code == 200
    assert "Acme" in home.text


def test_wrong_password_is_refused_and_audited(client, make_tenant, erp_db):
    t = make_tenant("acme")
    r = login(client, t.email, "not-the-password")
    assert r.status_code == 401
    assert "邮箱或密码错误" in r.text  # the default language is zh_CN
    assert "erp_session" not in r.headers.get("set-cookie", "")
    assert "login.failed" in _actions(erp_db, t.id)


def test_unknown_user_gets_the_same_answer(client, make_tenant, erp_db):
    make_tenant("acme")
    client.cookies.set("erp_locale", "en")
    r = login(client, "nobody@acme.test", "whatever-password")
    assert r.status_code == 401
    assert "Wrong e-mail or password" in r.text
    assert "login.failed" in _actions(erp_db)


def test_login_without_csrf_is_refused(client, make_tenant):
    t = make_tenant("acme")
    r = client.post("/login", data={"email": t.email, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    assert "erp_session" not in r.headers.get("set-cookie", "")


def test_lockout_after_repeated_failures(client, make_tenant, erp_db):
    t = make_tenant("acme")
    for _ in range(5):
        assert login(client, t.email, "wrong-password!").status_code == 401
    # even the right password is refused while locked
    r = login(client, t.email)
    assert r.status_code == 429
    assert "登录失败次数过多" in r.text
    assert "login.locked" in _actions(erp_db)


def test_state_changing_form_needs_csrf_token(client, make_tenant):
    t = make_tenant("acme", plugins=("test_alpha",))
    login(client, t.email)
    r = client.post("/api/v1/alpha/notes", json={"text": "no csrf"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    token = csrf_of(client)
    r = client.post(
        "/api/v1/alpha/notes", json={"text": "with csrf"}, headers={"X-CSRF-Token": token}
    )
    assert r.status_code == 201, r.text


def test_logout_ends_the_session(client, make_tenant, erp_db):
    t = make_tenant("acme")
    login(client, t.email)
    token = csrf_of(client)
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/api/v1/tenants/current").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert "logout" in _actions(erp_db, t.id)


def test_logout_without_csrf_is_refused(client, make_tenant):
    t = make_tenant("acme")
    login(client, t.email)
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/api/v1/tenants/current").status_code == 200


def test_user_in_two_tenants_switches(client, make_tenant):
    a = make_tenant("acme")
    make_tenant("bolt", email=a.email)
    login(client, a.email)
    assert client.get("/api/v1/tenants/current").json()["slug"] == "acme"
    slugs = {t["slug"] for t in client.get("/api/v1/tenants").json()}
    assert slugs == {"acme", "bolt"}
    r = client.post(
        "/switch-tenant",
        data={"tenant": "bolt", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert client.get("/api/v1/tenants/current").json()["slug"] == "bolt"


def test_switch_to_foreign_tenant_is_404(client, make_tenant):
    a = make_tenant("acme")
    make_tenant("bolt")
    login(client, a.email)
    r = client.post(
        "/switch-tenant",
        data={"tenant": "bolt", "csrf_token": csrf_of(client)},
        follow_redirects=False,
    )
    assert r.status_code == 404


def test_bearer_token_works_without_csrf_and_is_audited(client, make_tenant, erp_db):
    t = make_tenant("acme", plugins=("test_alpha",))
    r = client.post("/api/v1/alpha/notes", json={"text": "by token"}, headers=t.auth)
    assert r.status_code == 201
    assert "token.used" in _actions(erp_db, t.id)


def test_token_is_stored_hashed(make_tenant, erp_db):
    t = make_tenant("acme")
    from erp_core.db.session import system_access

    with erp_db.session() as s, system_access(s):
        rows = list(s.scalars(select(ApiToken)))
    secret = t.token.split("_", 2)[2]  # the random part may itself contain "_"
    assert len(secret) >= 20
    assert rows and all(secret not in r.secret_hash for r in rows)


def test_revoked_token_is_refused(client, make_tenant):
    t = make_tenant("acme")
    created = client.post("/api/v1/tokens", json={"name": "ci"}, headers=t.auth)
    assert created.status_code == 201
    body = created.json()
    other = {"Authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/tenants/current", headers=other).status_code == 200
    listed = client.get("/api/v1/tokens", headers=t.auth).json()
    assert all("token" not in row for row in listed)
    assert client.delete(f"/api/v1/tokens/{body['id']}", headers=t.auth).status_code == 204
    r = client.get("/api/v1/tenants/current", headers=other)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")


def test_token_scopes_limit_permissions(client, make_tenant):
    t = make_tenant("acme", plugins=("test_alpha",))
    created = client.post(
        "/api/v1/tokens", json={"name": "ro", "scopes": ["*.read"]}, headers=t.auth
    ).json()
    ro = {"Authorization": f"Bearer {created['token']}"}
    assert client.get("/api/v1/alpha/notes", headers=ro).status_code == 200
    r = client.post("/api/v1/alpha/notes", json={"text": "x"}, headers=ro)
    assert r.status_code == 403
    assert "test_alpha.note.write" in r.json()["detail"]


def test_garbage_tokens_are_401_not_500(client, make_tenant):
    make_tenant("acme")
    for value in (
        "Bearer",
        "Bearer nonsense",
        "Basic abc",
        "Bearer erp_x_y",
        "Bearer erp_0123456789abcdef_wrong",
    ):
        r = client.get("/api/v1/tenants/current", headers={"Authorization": value})
        assert r.status_code == 401, value


def test_unknown_scope_is_rejected(client, make_tenant):
    t = make_tenant("acme")
    r = client.post(
        "/api/v1/tokens", json={"name": "x", "scopes": ["no.such.permission"]}, headers=t.auth
    )
    assert r.status_code == 422
    assert "unknown permission" in r.json()["detail"]


def test_viewer_cannot_manage_users(client, make_tenant, erp_registry):
    t = make_tenant("acme")
    r = client.post(
        "/api/v1/users",
        json={"email": "v@acme.test", "role": "viewer", "password": "viewer-password-1"},
        headers=t.auth,
    )
    assert r.status_code == 201
    login(client, "v@acme.test", "viewer-password-1")
    assert client.get("/api/v1/users").status_code == 200
    r = client.post(
        "/api/v1/users",
        json={"email": "x@acme.test", "role": "owner", "password": "another-password"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert r.status_code == 403


def test_role_change_is_audited(client, make_tenant, erp_db):
    t = make_tenant("acme")
    r = client.post(
        "/api/v1/roles",
        json={"name": "packer", "title": "Packer", "permissions": ["core.tenant.read"]},
        headers=t.auth,
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = client.patch(f"/api/v1/roles/{rid}", json={"permissions": ["*.read"]}, headers=t.auth)
    assert r.status_code == 200
    assert _actions(erp_db, t.id).count("permission.changed") >= 2


def test_audit_events_reach_the_enabled_plugins_hooks(client, make_tenant):
    from erp_test_gamma.hooks import AUDIT_SEEN

    a = make_tenant("acme", plugins=("test_gamma",))
    b = make_tenant("bolt")
    AUDIT_SEEN.clear()
    login(client, a.email)
    login(client.__class__(client.app), b.email)
    login(client.__class__(client.app), a.email, "wrong-password!")
    assert (a.id, "login") in AUDIT_SEEN
    assert (a.id, "login.failed") in AUDIT_SEEN
    # tenant b has not enabled test_gamma: its events never reach gamma's hook
    assert all(tid != b.id for tid, _ in AUDIT_SEEN)
