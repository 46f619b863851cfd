"""Tenant isolation through the API: tenant B never reads, changes or even sees tenant A's rows.

Two tenants, A and B, each hold data in every tenant-owned thing the API reaches (members,
roles, tokens, audit events, alpha notes, gamma items, channel accounts). Every API route with a
path parameter is discovered from the application, so a route added later is covered (or the
suite fails until an id provider is registered for its parameter). Called by B with A's ids,
every route answers 404 and A's rows stay exactly as they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from erp_test_gamma.models import GammaItem
from fastapi.routing import APIRoute
from sqlalchemy import MetaData, select

from erp_core.audit.models import AuditEvent
from erp_core.db.session import system_access
from erp_core.testing.fixtures import PASSWORD, csrf_of, login

API = "/api/v1"
PLUGINS = ("test_alpha", "test_beta", "test_gamma", "oms")
PARAM_RE = re.compile(r"{(\w+)(?::\w+)?}")

#: Path parameters that do not name a tenant-owned row, with the reason. Routes whose only
#: parameters are listed here are checked by a dedicated test instead of the id walk.
GLOBAL_PARAMS: dict[tuple[str, str], str] = {
    (f"{API}/plugins/{{name}}/enable", "name"): "plugin names are per deployment",
    (f"{API}/plugins/{{name}}/disable", "name"): "plugin names are per deployment",
}

#: A body each route accepts (proved by the positive control with the caller's own ids).
PLAUSIBLE_BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", f"{API}/users/{{user_id}}"): {"role": "viewer", "is_active": False},
    ("PATCH", f"{API}/roles/{{role_id}}"): {"title": "taken over", "permissions": ["*"]},
    # not is_active=False: the positive control reverses an entry on that account afterwards
    ("PATCH", f"{API}/ledger/accounts/{{account_id}}"): {"name_zh": "taken over"},
    ("POST", f"{API}/ledger/entries/{{entry_id}}/reverse"): {"reason": "taken over"},
    ("PATCH", f"{API}/inventory/skus/{{sku_id}}"): {"name": "taken over", "active": False},
    ("POST", f"{API}/inventory/warehouses/{{warehouse_id}}/locations"): {
        "code": "TAKEN",
        "name": "taken over",
    },
    ("POST", f"{API}/inventory/warehouses/{{warehouse_id}}/counts"): {
        "lines": [{"sku": "ISO-TEA", "counted": "7"}]
    },
    ("POST", f"{API}/inventory/moves/{{move_id}}/reserve"): {"strategy": "fifo"},
    ("POST", f"{API}/oms/orders/{{order_id}}/hold"): {"reason": "taken over"},
    ("POST", f"{API}/oms/orders/{{order_id}}/cancel"): {"reason": "taken over"},
    ("PATCH", f"{API}/oms/orders/{{order_id}}/address"): {"city": "杭州市"},
    ("POST", f"{API}/oms/parcels/{{parcel_id}}/ship"): {
        "tracking_no": "SF0000000001",
        "courier_code": "SF",
    },
    ("PUT", f"{API}/oms/rules/{{rule_id}}"): {
        "kind": "amount_over",
        "params": {"amount": "1000"},
        "action": "hold",
        "reason": "taken over",
    },
    # with a refresh token, so that the positive control's refresh afterwards can work
    ("PUT", f"{API}/channels/accounts/{{channel_account_id}}/tokens"): {
        "access_token": "taken-over-access",
        "refresh_token": "taken-over-refresh",
    },
}

#: The id provider the positive control takes a route's parameter from, where the parameter's
#: own first id would not do: one move cannot be cancelled, then completed, then reserved.
#: (The foreign-id walk still tries every id of the parameter's own provider.)
ROUTE_IDS: dict[tuple[str, str], dict[str, str]] = {
    ("POST", f"{API}/inventory/moves/{{move_id}}/cancel"): {"move_id": "move_to_cancel"},
    ("POST", f"{API}/inventory/moves/{{move_id}}/done"): {"move_id": "move_to_complete"},
    ("POST", f"{API}/inventory/moves/{{move_id}}/reserve"): {"move_id": "move_to_reserve"},
    ("POST", f"{API}/inventory/reservations/{{move_id}}/release"): {"move_id": "reservation"},
    ("POST", f"{API}/oms/orders/{{order_id}}/hold"): {"order_id": "order_to_hold"},
    ("POST", f"{API}/oms/orders/{{order_id}}/cancel"): {"order_id": "order_to_cancel"},
}


# --- discovery ---------------------------------------------------------------------------------


def api_operations(app: Any) -> list[tuple[str, str, APIRoute]]:
    """(method, full path, route) for every API route of ``app``, plugin routes included."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes is already flat
        contexts: Any = app.routes
    else:
        contexts = iter_route_contexts(app.routes)
    out = []
    for ctx in contexts:
        route = getattr(ctx, "original_route", ctx)
        if not isinstance(route, APIRoute) or not ctx.path.startswith(API + "/"):
            continue
        for method in sorted(set(ctx.methods) - {"HEAD", "OPTIONS"}):
            out.append((method, ctx.path, route))
    return out


def path_params(path: str) -> list[str]:
    return PARAM_RE.findall(path)


def body_for(app: Any, method: str, path: str, route: APIRoute) -> Any:
    """The plausible body of a route: from the table, else built from its request schema."""
    if (method, path) in PLAUSIBLE_BODIES:
        return PLAUSIBLE_BODIES[(method, path)]
    if route.body_field is None:
        return None
    doc = app.openapi()
    op = doc["paths"][path][method.lower()]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    return _example(schema, doc)


def _example(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example(doc["components"]["schemas"][name], doc)
    if "anyOf" in schema:
        return _example(schema["anyOf"][0], doc)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _example(props[k], doc) for k in schema.get("required", [])}
    return {"string": "x", "integer": 1, "number": 1, "boolean": False, "array": []}.get(str(kind))


# --- the two tenants -----------------------------------------------------------------------------


@dataclass
class Side:
    """One tenant's fixture, its marker text and the ids of its rows per path parameter."""

    t: Any
    marker: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    emails: list[str] = field(default_factory=list)

    @property
    def auth(self) -> dict[str, str]:
        return self.t.auth


def _populate(client: Any, erp_db: Any, t: Any, marker: str) -> Side:
    side = Side(t, marker)
    h = t.auth

    def ok(r: Any) -> Any:
        assert r.status_code < 300, r.text
        return r.json()

    staff_email = f"staff@{t.slug}.test"
    staff = ok(
        client.post(
            f"{API}/users",
            json={
                "email": staff_email,
                "name": f"{marker} person",
                "role": "staff",
                "password": PASSWORD,
            },
            headers=h,
        )
    )
    owner = next(u for u in ok(client.get(f"{API}/users", headers=h)) if u["email"] == t.email)
    role = ok(
        client.post(
            f"{API}/roles",
            json={"name": f"{t.slug}-clerk", "title": f"{marker} clerk", "permissions": ["*"]},
            headers=h,
        )
    )
    roles = ok(client.get(f"{API}/roles", headers=h))
    token = ok(
        client.post(f"{API}/tokens", json={"name": f"{marker} token"}, headers=h),
    )
    tokens = ok(client.get(f"{API}/tokens", headers=h))
    note = ok(client.post(f"{API}/alpha/notes", json={"text": f"{marker} note"}, headers=h))
    notes = ok(client.get(f"{API}/alpha/notes", headers=h))
    with erp_db.tenant_session(t.id) as s:
        item = GammaItem(name=f"{marker} item")
        s.add(item)
        s.flush()
        item_id = item.id
    items = ok(client.get(f"{API}/gamma/items", headers=h))
    account = ok(
        client.post(
            f"{API}/ledger/accounts",
            json={"code": "560104", "name_zh": f"{marker} 科目", "name_en": f"{marker} account"},
            headers=h,
        )
    )
    entries = [
        ok(
            client.post(
                f"{API}/ledger/entries",
                json={
                    "date": f"2026-10-0{n}",
                    "narration": f"{marker} entry {n}",
                    "idempotency_key": f"{marker}-{n}",
                    "postings": [
                        {"account": "560104", "amount": "12.50", "channel": marker},
                        {"account": "1002", "amount": "-12.50", "sku": marker},
                    ],
                },
                headers=h,
            )
        )
        for n in (1, 2)
    ]
    ok(client.post(f"{API}/ledger/periods/lock", json={"period": "2026-09"}, headers=h))
    accounts = ok(client.get(f"{API}/ledger/accounts", headers=h))
    # inventory: a warehouse, two SKUs (one lot-tracked) with stock, moves in every state
    warehouse = ok(
        client.post(
            f"{API}/inventory/warehouses",
            json={"code": "WH-ISO", "name": f"{marker} warehouse"},
            headers=h,
        )
    )
    skus = [
        ok(client.post(f"{API}/inventory/skus", json=body, headers=h))
        for body in (
            {"code": "ISO-TEA", "name": f"{marker} tea"},
            {"code": "ISO-MILK", "name": f"{marker} milk", "tracking": "lot"},
        )
    ]
    receipts = [
        ok(client.post(f"{API}/inventory/receipts", json=body, headers=h))
        for body in (
            {"sku": "ISO-TEA", "quantity": "20", "warehouse": "WH-ISO", "unit_cost": "1.5"},
            {
                "sku": "ISO-MILK",
                "quantity": "5",
                "warehouse": "WH-ISO",
                "unit_cost": "3",
                "lot": f"LOT-{t.slug}",
            },
        )
    ]
    reservation = ok(
        client.post(
            f"{API}/inventory/reservations",
            json={"sku": "ISO-TEA", "quantity": "2", "warehouse": "WH-ISO"},
            headers=h,
        )
    )["moves"][0]
    drafts = [
        ok(
            client.post(
                f"{API}/inventory/moves",
                json={
                    "sku": "ISO-TEA",
                    "quantity": "1",
                    "from_location": "WH-ISO/STOCK",
                    "to_location": "@customer",
                    "reference": f"{marker} move",
                },
                headers=h,
            )
        )
        for _ in range(3)
    ]
    # channel accounts (test_beta's connector): one with secrets, one inactive
    channel_accounts = [
        ok(
            client.post(
                f"{API}/channels/accounts",
                json={
                    "connector": "test_beta",
                    "shop_id": f"shop-{n}",
                    "name": f"{marker} shop {n}",
                    "secrets": {"app_secret": f"{marker}-app-secret-{n}"},
                },
                headers=h,
            )
        )
        for n in (1, 2)
    ]
    ok(client.post(f"{API}/channels/accounts/{channel_accounts[1]['id']}/deactivate", headers=h))
    # orders: four manual orders taken to "reserved", and a review rule
    orders = [
        ok(
            client.post(
                f"{API}/oms/orders",
                json={
                    "number": f"{marker}-SO-{n}",
                    "buyer": f"{marker} buyer",
                    "receiver_name": "王芳",
                    "receiver_phone": "13800000000",
                    "province": "浙江省",
                    "city": "杭州市",
                    "district": "西湖区",
                    "address": f"文三路{n}号",
                    "lines": [{"sku": "ISO-TEA", "quantity": "1", "unit_price": "9.90"}],
                },
                headers=h,
            )
        )
        for n in (1, 2, 3, 4)
    ]
    ok(
        client.post(
            f"{API}/oms/orders/process",
            json={"order_ids": [o["id"] for o in orders]},
            headers=h,
        )
    )
    shipped_later = ok(client.get(f"{API}/oms/orders/{orders[1]['id']}", headers=h))
    assert shipped_later["status"] == "reserved", shipped_later
    rule = ok(
        client.post(
            f"{API}/oms/rules",
            json={
                "kind": "amount_over",
                "params": {"amount": "500"},
                "action": "tag",
                "tag": "big",
            },
            headers=h,
        )
    )
    # the first id of each list is safe to change or delete (used by the positive control)
    side.ids = {
        "user_id": [staff["id"], owner["id"]],
        "role_id": [role["id"]] + [r["id"] for r in roles if r["id"] != role["id"]],
        "token_id": [token["id"]] + [k["id"] for k in tokens if k["id"] != token["id"]],
        "note_id": [note["id"]] + [n["id"] for n in notes if n["id"] != note["id"]],
        "item_id": [item_id] + [i["id"] for i in items if i["id"] != item_id],
        "account_id": [account["id"]]
        + [a["id"] for a in accounts if a["code"] in ("1002", "5601")],
        "entry_id": [e["id"] for e in entries],
        "warehouse_id": [warehouse["id"]],
        "sku_id": [k["id"] for k in skus],
        "lot_id": [receipts[1][0]["lot_id"]],
        "move_id": [reservation["id"]]
        + [d["id"] for d in drafts]
        + [m["id"] for r in receipts for m in r],
        "reservation": [reservation["id"]],
        "move_to_cancel": [drafts[0]["id"]],
        "move_to_complete": [drafts[1]["id"]],
        "move_to_reserve": [drafts[2]["id"]],
        "channel_account_id": [c["id"] for c in channel_accounts],
        "order_id": [o["id"] for o in orders],
        "order_to_hold": [orders[2]["id"]],
        "order_to_cancel": [orders[3]["id"]],
        "parcel_id": [p["id"] for p in shipped_later["parcels"]],
        "rule_id": [rule["id"]],
    }
    side.emails = [t.email, staff_email]
    with erp_db.session(t.id) as s:
        side.ids["audit"] = list(s.scalars(select(AuditEvent.id)))
    assert side.ids["audit"], "setting up the tenant left no audit events"
    return side


@pytest.fixture
def world(client: Any, make_tenant: Any, erp_db: Any) -> tuple[Side, Side]:
    a = _populate(client, erp_db, make_tenant("acme", plugins=PLUGINS), "zebra-A-7f3")
    b = _populate(client, erp_db, make_tenant("bolt", plugins=PLUGINS), "yak-B-2c9")
    return a, b


def snapshot(erp_db: Any, side: Side) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of A: tenant-owned tables, its tenant row and its members' user rows."""
    md = MetaData()
    md.reflect(erp_db.engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with erp_db.system_session() as s:
        for table in md.sorted_tables:
            if "tenant_id" in table.c:
                q = select(table).where(table.c.tenant_id == side.t.id)
                out[table.name] = sorted(tuple(r) for r in s.execute(q))
        tenant = md.tables["core_tenant"]
        out["core_tenant"] = [
            tuple(r) for r in s.execute(select(tenant).where(tenant.c.id == side.t.id))
        ]
        users = md.tables["core_user"]
        q = select(users).where(users.c.id.in_(side.ids["user_id"])).order_by(users.c.id)
        out["core_user"] = [tuple(r) for r in s.execute(q)]
    return out


def assert_problem(r: Any, status: int) -> None:
    assert r.status_code == status, (r.request.method, r.request.url.path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.json()["status"] == status


# --- every route with a path parameter ----------------------------------------------------------


def _id_routes(app: Any) -> Iterator[tuple[str, str, APIRoute, list[str]]]:
    for method, path, route in api_operations(app):
        names = path_params(path)
        owned = [n for n in names if (path, n) not in GLOBAL_PARAMS]
        if owned:
            yield method, path, route, owned


def test_every_path_parameter_has_an_id_provider(erp_app, world):
    a, _ = world
    unknown = sorted(
        f"{method} {path}: {{{name}}}"
        for method, path, _, owned in _id_routes(erp_app)
        for name in owned
        if name not in a.ids
    )
    assert unknown == [], (
        "routes with a path parameter this suite cannot fill with another tenant's ids; "
        "add an id provider in _populate (or list a global parameter in GLOBAL_PARAMS)"
    )
    covered = {path for _, path, _, _ in _id_routes(erp_app)}
    assert {f"{API}/alpha/notes/{{note_id}}", f"{API}/gamma/items/{{item_id}}"} <= covered
    assert {f"{API}/users/{{user_id}}", f"{API}/roles/{{role_id}}"} <= covered
    assert f"{API}/tokens/{{token_id}}" in covered
    assert f"{API}/channels/accounts/{{channel_account_id}}" in covered


def _url(path: str, values: dict[str, Any]) -> str:
    return PARAM_RE.sub(lambda m: str(values[m.group(1)]), path)


def test_foreign_ids_answer_404_on_every_route_and_method(client, erp_app, erp_db, world):
    a, b = world
    routes = list(_id_routes(erp_app))
    assert routes
    before = snapshot(erp_db, a)
    calls = 0
    for method, path, route, owned in routes:
        body = body_for(erp_app, method, path, route)
        for name in owned:
            for foreign in a.ids[name]:
                values = {n: b.ids[n][0] for n in owned} | {name: foreign}
                r = client.request(method, _url(path, values), json=body, headers=b.auth)
                assert_problem(r, 404)
                assert a.marker not in r.text and a.t.email not in r.text
                calls += 1
    assert calls >= 15
    assert snapshot(erp_db, a) == before
    # positive control: the same requests with B's own ids work, so the 404s above come from
    # tenant isolation and not from a broken request
    order = {"GET": 0, "PATCH": 1, "PUT": 2, "POST": 3, "DELETE": 4}
    for method, path, route, owned in sorted(routes, key=lambda x: (order.get(x[0], 9), x[1])):
        body = body_for(erp_app, method, path, route)
        fresh = ROUTE_IDS.get((method, path), {})
        url = _url(path, {n: b.ids[fresh.get(n, n)][0] for n in owned})
        r = client.request(method, url, json=body, headers=b.auth)
        assert r.status_code < 400, (method, url, r.status_code, r.text)
    assert snapshot(erp_db, a) == before


def test_list_endpoints_never_show_the_other_tenant(client, erp_app, erp_db, world):
    a, b = world
    id_sets = {
        f"{API}/users": a.ids["user_id"],
        f"{API}/roles": a.ids["role_id"],
        f"{API}/tokens": a.ids["token_id"],
        f"{API}/alpha/notes": a.ids["note_id"],
        f"{API}/gamma/items": a.ids["item_id"],
        f"{API}/tenants": [a.t.id],
    }
    own_marker = {f"{API}/users", f"{API}/roles", f"{API}/tokens", f"{API}/alpha/notes"}
    lists = [p for m, p, _ in api_operations(erp_app) if m == "GET" and not path_params(p)]
    assert set(id_sets) <= set(lists)
    for path in lists:
        r = client.get(path, headers=b.auth)
        assert r.status_code == 200, (path, r.text)
        text = r.text
        for secret in (a.marker, a.t.slug, *a.emails):
            assert secret not in text, (path, secret)
        if path in id_sets:
            got = {row["id"] for row in r.json()}
            assert got and not got & set(id_sets[path]), (path, got)
        if path in own_marker:
            assert b.marker in text, path
    audit = client.get(f"{API}/audit", params={"limit": 500}, headers=b.auth).json()
    seen = {e["id"] for e in audit["items"]}
    assert seen and not seen & set(a.ids["audit"])
    with erp_db.session() as s, system_access(s):
        b_events = set(s.scalars(select(AuditEvent.id).where(AuditEvent.tenant_id == b.t.id)))
    assert seen == b_events


def test_browser_session_of_b_cannot_reach_a(client, erp_db, world):
    a, b = world
    before = snapshot(erp_db, a)
    assert login(client, b.t.email).status_code == 303
    csrf = {"X-CSRF-Token": csrf_of(client)}
    note, role, user, item = (a.ids[k][0] for k in ("note_id", "role_id", "user_id", "item_id"))
    assert_problem(client.get(f"{API}/alpha/notes/{note}"), 404)
    assert_problem(client.delete(f"{API}/alpha/notes/{note}", headers=csrf), 404)
    assert_problem(client.get(f"{API}/gamma/items/{item}"), 404)
    assert_problem(client.get(f"{API}/users/{user}"), 404)
    assert_problem(
        client.patch(f"{API}/users/{user}", json={"is_active": False}, headers=csrf), 404
    )
    assert_problem(client.patch(f"{API}/roles/{role}", json={"title": "x"}, headers=csrf), 404)
    assert_problem(client.delete(f"{API}/roles/{role}", headers=csrf), 404)
    assert_problem(client.delete(f"{API}/tokens/{a.ids['token_id'][0]}", headers=csrf), 404)
    page = client.get("/alpha")
    assert page.status_code == 200
    assert b.marker in page.text and a.marker not in page.text
    home = client.get("/")
    assert home.status_code == 200 and "Acme" not in home.text
    listed = client.get(f"{API}/alpha/notes").text
    assert b.marker in listed and a.marker not in listed
    assert snapshot(erp_db, a) == before


def test_plugin_enablement_of_b_does_not_touch_a(client, erp_db, world):
    a, b = world
    before = snapshot(erp_db, a)
    r = client.post(f"{API}/plugins/test_gamma/disable", headers=b.auth)
    assert r.status_code == 204, r.text
    assert_problem(client.get(f"{API}/gamma/items/{b.ids['item_id'][0]}", headers=b.auth), 404)
    assert client.get(f"{API}/gamma/items/{a.ids['item_id'][0]}", headers=a.auth).status_code == 200
    r = client.post(f"{API}/plugins/test_gamma/enable", headers=b.auth)
    assert r.status_code == 200, r.text
    # B disabling test_beta, which A also enabled, changes nothing for A
    assert client.post(f"{API}/plugins/test_beta/disable", headers=b.auth).status_code == 204
    assert client.get(f"{API}/beta/ping", headers=a.auth).status_code == 200
    assert_problem(client.get(f"{API}/beta/ping", headers=b.auth), 404)
    after = snapshot(erp_db, a)
    assert after == before


# --- tokens are bound to their tenant -----------------------------------------------------------


def test_a_token_always_acts_in_its_own_tenant(client, make_tenant, erp_db):
    """One person in two tenants: the token made in A acts in A, whatever B-side context the
    request carries (B's browser session, a tenant header or parameter)."""
    a = make_tenant("acme", plugins=PLUGINS)
    b = make_tenant("bolt", plugins=PLUGINS, email=a.email)  # same person, member of both
    b_note = client.post(f"{API}/alpha/notes", json={"text": "b-only"}, headers=b.auth).json()
    hints = [
        {},
        {"X-Tenant": "bolt", "X-Tenant-Id": str(b.id)},
    ]
    for extra in hints:
        h = a.auth | extra
        assert client.get(f"{API}/tenants/current", headers=h).json()["slug"] == "acme"
        assert [t["slug"] for t in client.get(f"{API}/tenants", headers=h).json()] == ["acme"]
        r = client.get(f"{API}/tenants/current", params={"tenant": "bolt"}, headers=h)
        assert r.json()["slug"] == "acme"
        assert_problem(client.get(f"{API}/alpha/notes/{b_note['id']}", headers=h), 404)
    # a browser session in B plus A's token: the token decides
    assert login(client, a.email, tenant="bolt").status_code == 303
    assert client.get(f"{API}/tenants/current").json()["slug"] == "bolt"
    assert client.get(f"{API}/tenants/current", headers=a.auth).json()["slug"] == "acme"
    made = client.post(f"{API}/alpha/notes", json={"text": "via token"}, headers=a.auth)
    assert made.status_code == 201, made.text
    with erp_db.session() as s, system_access(s):
        from erp_test_alpha.models import AlphaNote

        owner = s.scalar(select(AlphaNote.tenant_id).where(AlphaNote.id == made.json()["id"]))
    assert owner == a.id
    # a token cannot switch tenants (switching is for browser sessions)
    client.cookies.clear()
    r = client.post("/switch-tenant", data={"tenant": "bolt"}, headers=a.auth)
    assert_problem(r, 400)
    assert client.get(f"{API}/tenants/current", headers=a.auth).json()["slug"] == "acme"
    # a token made in B by the same person acts in B only
    made = client.post(f"{API}/tokens", json={"name": "b-token"}, headers=b.auth).json()
    b2 = {"Authorization": f"Bearer {made['token']}"}
    assert client.get(f"{API}/tenants/current", headers=b2).json()["slug"] == "bolt"


def test_token_does_not_fall_back_to_another_membership(client, make_tenant):
    """Deactivated in A, the person's A token is refused; it never acts in B instead."""
    a = make_tenant("acme", plugins=PLUGINS)
    b = make_tenant("bolt", plugins=PLUGINS, email=a.email)
    r = client.post(
        f"{API}/users",
        json={"email": "boss@acme.test", "role": "owner", "password": PASSWORD},
        headers=a.auth,
    )
    assert r.status_code == 201, r.text
    users = client.get(f"{API}/users", headers=a.auth).json()
    shared = next(u["id"] for u in users if u["email"] == a.email)
    assert login(client, "boss@acme.test").status_code == 303
    r = client.patch(
        f"{API}/users/{shared}",
        json={"is_active": False},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert r.status_code == 200, r.text
    client.cookies.clear()
    assert_problem(client.get(f"{API}/tenants/current", headers=a.auth), 401)
    assert_problem(client.get(f"{API}/alpha/notes", headers=a.auth), 401)
    assert client.get(f"{API}/tenants/current", headers=b.auth).json()["slug"] == "bolt"
