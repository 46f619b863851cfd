"""Per-tenant enablement: dependency checks, 404 for disabled plugins, menus, hooks, audit,
and changes that take effect at once in a running server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from erp_core.testing.fixtures import csrf_of, login


def _states(client, t):
    return {p["name"]: p for p in client.get("/api/v1/plugins", headers=t.auth).json()}


def test_plugin_list_shows_installed_and_broken(client, make_tenant):
    t = make_tenant("acme", plugins=("test_alpha",))
    states = _states(client, t)
    assert states["test_alpha"]["state"] == "enabled"
    assert states["test_beta"]["state"] == "available"
    assert states["test_beta"]["depends"] == ["test_alpha"]
    assert states["test_broken"]["state"] == "broken"
    assert "broken on purpose" in states["test_broken"]["error"]
    assert states["test_invalid"]["state"] == "broken"


def test_enable_checks_dependencies_and_says_what_is_missing(client, make_tenant):
    t = make_tenant("acme")
    r = client.post("/api/v1/plugins/test_beta/enable", headers=t.auth)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "needs test_alpha" in r.json()["detail"]
    assert _states(client, t)["test_beta"]["state"] == "available"
    r = client.post("/api/v1/plugins/test_beta/enable?with_dependencies=true", headers=t.auth)
    assert r.status_code == 200
    assert r.json()["enabled"] == ["test_alpha", "test_beta"]


def test_disable_refused_while_needed(client, make_tenant):
    t = make_tenant("acme", plugins=("test_beta",))
    r = client.post("/api/v1/plugins/test_alpha/disable", headers=t.auth)
    assert r.status_code == 409
    assert "test_beta needs it" in r.json()["detail"]
    assert client.post("/api/v1/plugins/test_beta/disable", headers=t.auth).status_code == 204
    assert client.post("/api/v1/plugins/test_alpha/disable", headers=t.auth).status_code == 204


def test_broken_and_unknown_plugins_cannot_be_enabled(client, make_tenant):
    t = make_tenant("acme")
    r = client.post("/api/v1/plugins/test_broken/enable", headers=t.auth)
    assert r.status_code == 409
    assert "broken on purpose" in r.json()["detail"]
    assert client.post("/api/v1/plugins/nope/enable", headers=t.auth).status_code == 404


def test_routes_of_a_disabled_plugin_answer_404(client, make_tenant):
    t = make_tenant("acme")
    assert client.get("/api/v1/alpha/notes", headers=t.auth).status_code == 404
    assert client.get("/alpha", headers=t.auth).status_code == 404
    client.post("/api/v1/plugins/test_alpha/enable", headers=t.auth)
    notes = client.get("/api/v1/alpha/notes", headers=t.auth)
    assert notes.status_code == 200
    # erp_tenant_plugin_enabled seeded a note for the tenant
    assert [n["text"] for n in notes.json()] == ["welcome"]
    assert client.get("/alpha", headers=t.auth).status_code == 200
    client.post("/api/v1/plugins/test_alpha/disable", headers=t.auth)
    assert client.get("/api/v1/alpha/notes", headers=t.auth).status_code == 404
    # re-enabling keeps the data; alpha's enable hook adds a welcome note each time
    client.post("/api/v1/plugins/test_alpha/enable", headers=t.auth)
    assert len(client.get("/api/v1/alpha/notes", headers=t.auth).json()) == 2


def test_one_tenants_choice_does_not_affect_another(client, make_tenant):
    a = make_tenant("acme", plugins=("test_alpha",))
    b = make_tenant("bolt")
    assert client.get("/api/v1/alpha/notes", headers=a.auth).status_code == 200
    assert client.get("/api/v1/alpha/notes", headers=b.auth).status_code == 404


def test_menus_follow_enablement_and_permissions(client, make_tenant):
    t = make_tenant("acme")
    login(client, t.email)
    assert "Alpha notes" not in client.get("/").text
    r = client.post("/api/v1/plugins/test_alpha/enable", headers={"X-CSRF-Token": csrf_of(client)})
    assert r.status_code == 200
    home = client.get("/").text
    assert 'data-menu="test_alpha.notes"' in home
    assert 'data-menu="test_alpha.dynamic"' in home  # from the erp_menu_items hook
    # a role without the alpha permission sees no alpha menu
    client.post(
        "/api/v1/roles", json={"name": "clerk", "permissions": ["core.tenant.read"]}, headers=t.auth
    )
    client.post(
        "/api/v1/users",
        json={"email": "c@acme.test", "role": "clerk", "password": "clerk-password-1"},
        headers=t.auth,
    )
    clerk = client.__class__(client.app)
    login(clerk, "c@acme.test", "clerk-password-1")
    home = clerk.get("/").text
    assert "Acme" in home and "test_alpha.notes" not in home
    assert clerk.get("/alpha").status_code == 403


def test_htmx_request_gets_only_the_fragment(client, make_tenant):
    t = make_tenant("acme", plugins=("test_alpha",))
    full = client.get("/alpha", headers=t.auth)
    part = client.get("/alpha", headers={**t.auth, "HX-Request": "true"})
    assert "<html" in full.text and "<html" not in part.text
    assert part.text.strip().startswith('<ul id="notes">')
    assert part.headers["vary"] == "HX-Request"


def test_enable_and_disable_are_audited(client, make_tenant):
    t = make_tenant("acme")
    client.post("/api/v1/plugins/test_alpha/enable", headers=t.auth)
    client.post("/api/v1/plugins/test_alpha/disable", headers=t.auth)
    actions = [e["action"] for e in client.get("/api/v1/audit", headers=t.auth).json()["items"]]
    assert "plugin.enabled" in actions and "plugin.disabled" in actions


def test_enabled_plugins_cache_follows_epoch(erp_db, make_tenant, erp_registry):
    from erp_core.tenancy.models import Tenant
    from erp_core.tenancy.service import disable_plugin, enable_plugin, enabled_plugins

    t = make_tenant("acme")
    with erp_db.tenant_session(t.id) as s:
        assert enabled_plugins(s, t.id) == frozenset()
        tenant = s.scalar(select(Tenant).where(Tenant.id == t.id))
        enable_plugin(s, erp_registry, tenant, "test_gamma")
        assert enabled_plugins(s, t.id) == {"test_gamma"}
        disable_plugin(s, erp_registry, tenant, "test_gamma")
        assert enabled_plugins(s, t.id) == frozenset()


# --- a real server process ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(erp_settings, erp_db, tmp_path: Path):
    port = _free_port()
    env = {
        **os.environ,
        "ERP_DATABASE_URL": erp_settings.resolved_database_url(),
        "ERP_BROKER_URL": erp_settings.resolved_broker_url(),
        "ERP_VAR_DIR": str(erp_settings.var_path),
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "erp_core.cli", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError((tmp_path / "server.log").read_text())
        yield base, env
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "erp_core.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_enable_takes_effect_in_running_server_without_restart(live_server, make_tenant):
    base, env = live_server
    t = make_tenant("acme")
    assert httpx.get(base + "/api/v1/alpha/notes", headers=t.auth).status_code == 404
    r = _cli(env, "plugins", "enable", "test_alpha", "--tenant", "acme")
    assert r.returncode == 0, r.stderr
    assert httpx.get(base + "/api/v1/alpha/notes", headers=t.auth).status_code == 200
    r = _cli(env, "plugins", "disable", "test_alpha", "--tenant", "acme")
    assert r.returncode == 0, r.stderr
    assert httpx.get(base + "/api/v1/alpha/notes", headers=t.auth).status_code == 404
