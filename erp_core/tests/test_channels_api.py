"""``/api/v1/channels/accounts``: secrets go in, never come out; problems on bad input."""

from __future__ import annotations

import logging
from typing import Any

import pytest

API = "/api/v1/channels/accounts"
SECRET = "api-s3cr3t-4c1b9e"


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and SECRET not in r.text
    return body


@pytest.fixture
def acme(make_tenant: Any) -> Any:
    return make_tenant("acme", plugins=("test_beta",))


def body(**kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "connector": "test_beta",
        "shop_id": "shop-1",
        "name": "Flagship",
        "app_key": "12345",
        "config": {"region": "cn"},
        "secrets": {"app_secret": SECRET},
    }
    out.update(kw)
    return out


def test_create_get_list_patch_deactivate(client, acme, caplog):
    caplog.set_level(logging.DEBUG)
    h = acme.auth
    made = ok(client.post(API, json=body(), headers=h), 201)
    assert made["secret_fields_set"] == ["app_secret"] and made["kind"] == "sales"
    assert made["access_token_set"] is False and made["access_token_expires_at"] is None
    assert made["active"] and made["config"] == {"region": "cn"}
    assert "secrets" not in made
    got = ok(client.get(f"{API}/{made['id']}", headers=h))
    assert got == made
    page = ok(client.get(API, headers=h))
    assert [a["id"] for a in page["items"]] == [made["id"]] and page["next_after_id"] is None
    patched = ok(
        client.patch(
            f"{API}/{made['id']}",
            json={"name": "Renamed", "secrets": {"session_key": SECRET + "2"}},
            headers=h,
        )
    )
    assert patched["name"] == "Renamed"
    assert patched["secret_fields_set"] == ["app_secret", "session_key"]
    off = ok(client.post(f"{API}/{made['id']}/deactivate", headers=h))
    assert off["active"] is False
    assert ok(client.get(API, params={"active": "true"}, headers=h))["items"] == []
    assert len(ok(client.get(API, params={"connector": "test_beta"}, headers=h))["items"]) == 1
    texts = [client.get(p, headers=h).text for p in (API, f"{API}/{made['id']}", "/openapi.json")]
    texts.append(client.get("/api/v1/audit", params={"limit": 500}, headers=h).text)
    texts.append("\n".join(r.getMessage() for r in caplog.records))
    assert all(SECRET not in t for t in texts)


def test_paging(client, acme):
    ids = [
        ok(client.post(API, json=body(shop_id=f"s{n}"), headers=acme.auth), 201)["id"]
        for n in range(3)
    ]
    first = ok(client.get(API, params={"limit": 2}, headers=acme.auth))
    assert [a["id"] for a in first["items"]] == ids[:2] and first["next_after_id"] == ids[1]
    rest = ok(
        client.get(API, params={"limit": 2, "after_id": first["next_after_id"]}, headers=acme.auth)
    )
    assert [a["id"] for a in rest["items"]] == ids[2:] and rest["next_after_id"] is None


def test_bad_input_is_a_problem(client, acme):
    h = acme.auth
    p = problem(client.post(API, json=body(connector="nope"), headers=h), 422)
    assert "unknown connector 'nope'" in p["detail"] and "test_beta" in p["detail"]
    p = problem(client.post(API, json=body(secrets={}), headers=h), 422)
    assert "missing required secret field(s): app_secret" in p["detail"]
    problem(client.post(API, json=body(secrets={"app_secret": 5}), headers=h), 422)
    problem(client.post(API, json=body(extra=1), headers=h), 422)
    problem(client.post(API, json=body(shop_id=""), headers=h), 422)
    problem(client.post(API, json=body(config={"region": 1.5}), headers=h), 422)
    ok(client.post(API, json=body(), headers=h), 201)
    p = problem(client.post(API, json=body(), headers=h), 409)
    assert "already has a test_beta account for shop 'shop-1'" in p["detail"]
    problem(client.get(f"{API}/999999", headers=h), 404)
    problem(client.patch(f"{API}/999999", json={}, headers=h), 404)
    problem(client.get(f"{API}/0", headers=h), 422)


def test_permissions(client, make_tenant):
    owner = make_tenant("acme", plugins=("test_beta",))
    ok(client.post(API, json=body(), headers=owner.auth), 201)
    for role, can_manage in (("staff", False), ("viewer", False), ("admin", True)):
        t = make_tenant("acme2" + role, plugins=("test_beta",), role=role)
        assert client.get(API, headers=t.auth).status_code == 200
        r = client.post(API, json=body(), headers=t.auth)
        if can_manage:
            assert r.status_code == 201, r.text
        else:
            assert "core.channels.manage" in problem(r, 403)["detail"]


def test_tokens_are_write_only_and_refresh_needs_support(client, acme, make_tenant, caplog):
    caplog.set_level(logging.DEBUG)
    h = acme.auth
    made = ok(client.post(API, json=body(), headers=h), 201)
    url = f"{API}/{made['id']}/tokens"
    token, refresh = SECRET + "-access", SECRET + "-refresh"
    got = ok(
        client.put(
            url,
            json={
                "access_token": token,
                "expires_at": "2026-12-01T08:00:00+08:00",
                "refresh_token": refresh,
            },
            headers=h,
        )
    )
    assert got["access_token_set"] and got["refresh_token_set"]
    assert got["access_token_expires_at"].startswith("2026-12-01T00:00:00")
    assert token not in client.get(f"{API}/{made['id']}", headers=h).text
    # bad input: nothing changes
    problem(client.put(url, json={"access_token": ""}, headers=h), 422)
    problem(client.put(url, json={"access_token": "x", "expires_at": "soon"}, headers=h), 422)
    problem(client.put(url, json={"access_token": "x", "extra": 1}, headers=h), 422)
    naive = client.put(url, json={"access_token": "x", "expires_at": "2026-12-01T08:00"}, headers=h)
    assert "timezone-aware" in problem(naive, 422)["detail"]
    assert ok(client.get(f"{API}/{made['id']}", headers=h)) == got
    # refreshing exchanges the refresh token at the platform; the new token is stored
    fresh = ok(client.post(f"{API}/{made['id']}/refresh", headers=h))
    assert fresh["access_token_expires_at"] != got["access_token_expires_at"]
    # a platform refusing the refresh: a clear 422, tokens untouched
    ok(client.put(url, json={"access_token": token, "refresh_token": "revoked-1"}, headers=h))
    kept = ok(client.get(f"{API}/{made['id']}", headers=h))
    refused = problem(client.post(f"{API}/{made['id']}/refresh", headers=h), 422)
    assert "refused the token refresh" in refused["detail"]
    assert ok(client.get(f"{API}/{made['id']}", headers=h)) == kept
    # no refresh token at all
    bare = ok(client.post(API, json=body(shop_id="shop-2"), headers=h), 201)
    ok(client.put(f"{API}/{bare['id']}/tokens", json={"access_token": token}, headers=h))
    refused = problem(client.post(f"{API}/{bare['id']}/refresh", headers=h), 422)
    assert "no refresh token" in refused["detail"]
    # another tenant's account is not there
    other = make_tenant("other", plugins=("test_beta",))
    problem(client.put(url, json={"access_token": "x"}, headers=other.auth), 404)
    problem(client.post(f"{API}/{made['id']}/refresh", headers=other.auth), 404)
    assert all(s not in caplog.text for s in (token, refresh))
