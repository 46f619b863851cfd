"""The inventory's JSON API: a whole flow, shortages (409), floats (422), permissions (403)."""

from __future__ import annotations

from typing import Any

import pytest

from erp_core.testing.fixtures import PASSWORD

API = "/api/v1/inventory"


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


@pytest.fixture
def acme(client: Any, make_tenant: Any) -> Any:
    t = make_tenant("acme")
    h = t.auth
    ok(client.post(f"{API}/warehouses", json={"code": "HZ", "name": "杭州仓"}, headers=h), 201)
    ok(client.post(f"{API}/warehouses", json={"code": "SH", "name": "上海仓"}, headers=h), 201)
    ok(
        client.post(f"{API}/skus", json={"code": "TEA", "name": "龙井", "unit": "box"}, headers=h),
        201,
    )
    ok(
        client.post(
            f"{API}/receipts",
            json={"sku": "TEA", "quantity": "10", "warehouse": "HZ", "unit_cost": "35.50"},
            headers=h,
        ),
        201,
    )
    return t


def problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def test_flow_receive_reserve_ship_transfer_count(client, acme):
    h = acme.auth
    levels = ok(client.get(f"{API}/stock", params={"sku": "TEA"}, headers=h))
    assert [(x["warehouse"], x["on_hand"], x["available"]) for x in levels] == [("HZ", "10", "10")]
    res = ok(
        client.post(
            f"{API}/reservations",
            json={
                "sku": "TEA",
                "quantity": "4",
                "warehouse": "HZ",
                "source_type": "oms.order",
                "source_id": "SO-1",
            },
            headers=h,
        ),
        201,
    )
    assert (res["requested"], res["reserved"], res["shortage"]) == ("4", "4", "0")
    [move] = res["moves"]
    assert (move["state"], move["from_location"], move["to_location"]) == (
        "reserved",
        "HZ/STOCK",
        "@customer",
    )
    [done] = ok(client.post(f"{API}/moves/{move['id']}/done", headers=h))
    assert done["state"] == "done" and done["value"] == "142"
    t = ok(
        client.post(
            f"{API}/transfers",
            json={"sku": "TEA", "quantity": "2", "from_warehouse": "HZ", "to_warehouse": "SH"},
            headers=h,
        ),
        201,
    )
    assert [m["to_location"] for m in t["outgoing"]] == ["@transit"]
    [incoming] = t["incoming"]
    ok(client.post(f"{API}/moves/{incoming['id']}/done", headers=h))
    wh = ok(client.get(f"{API}/warehouses", headers=h))
    hz = next(w for w in wh if w["code"] == "HZ")
    count = ok(
        client.post(
            f"{API}/warehouses/{hz['id']}/counts",
            json={"lines": [{"sku": "TEA", "counted": "3"}]},
            headers=h,
        ),
        201,
    )
    assert count["lines"][0]["expected"] == "4" and count["losses"] == "1"
    by_wh = {
        x["warehouse"]: x["on_hand"]
        for x in ok(client.get(f"{API}/stock", params={"sku": "TEA"}, headers=h))
    }
    assert by_wh == {"HZ": "3", "SH": "2"}
    moves = ok(client.get(f"{API}/moves", params={"sku": "TEA", "state": "done"}, headers=h))
    assert len(moves["items"]) == 5  # receipt, delivery, out to transit, in from transit, loss
    tree = ok(client.get(f"{API}/warehouses/{hz['id']}/locations", headers=h))
    assert [n["path"] for n in tree] == ["HZ"] and [c["path"] for c in tree[0]["children"]] == [
        "HZ/STOCK"
    ]


def test_shortage_is_409_with_the_shortage_and_partial_is_201(client, acme):
    h = acme.auth
    body = {"sku": "TEA", "quantity": "12", "warehouse": "HZ"}
    p = problem(client.post(f"{API}/reservations", json=body, headers=h), 409)
    assert (p["sku"], p["requested"], p["available"], p["shortage"]) == ("TEA", "12", "10", "2")
    assert "short by 2" in p["detail"]
    assert ok(client.get(f"{API}/moves", headers=h))["items"][0]["state"] == "done"  # none added
    res = ok(
        client.post(f"{API}/reservations", json=body | {"allow_partial": True}, headers=h), 201
    )
    assert (res["reserved"], res["shortage"]) == ("10", "2")
    released = ok(client.post(f"{API}/reservations/{res['moves'][0]['id']}/release", headers=h))
    assert released["state"] == "cancelled"
    [lv] = ok(client.get(f"{API}/stock", params={"sku": "TEA"}, headers=h))
    assert lv["reserved"] == "0"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/receipts",
            {"sku": "TEA", "quantity": 1.5, "warehouse": "HZ", "unit_cost": "1"},
            "quantity",
        ),
        (
            "/receipts",
            {"sku": "TEA", "quantity": "1", "warehouse": "HZ", "unit_cost": 0.1},
            "unit_cost",
        ),
        ("/reservations", {"sku": "TEA", "quantity": 2.0, "warehouse": "HZ"}, "quantity"),
    ],
)
def test_json_floats_are_refused(client, acme, path, body, field):
    p = problem(client.post(f"{API}{path}", json=body, headers=acme.auth), 422)
    assert field in p["detail"] and "not exact" in p["detail"]
    [lv] = ok(client.get(f"{API}/stock", params={"sku": "TEA"}, headers=acme.auth))
    assert (lv["on_hand"], lv["reserved"]) == ("10", "0")


def test_invalid_input_is_422_with_a_clear_message(client, acme):
    h = acme.auth
    cases = [
        ({"sku": "TEA", "quantity": "-3", "warehouse": "HZ"}, "must be positive"),
        ({"sku": "TEA", "quantity": "1.5", "warehouse": "HZ"}, "whole box"),
        ({"sku": "NOPE", "quantity": "1", "warehouse": "HZ"}, "unknown SKU"),
        ({"sku": "TEA", "quantity": "1", "warehouse": "XX"}, "unknown warehouse"),
        ({"sku": "TEA", "quantity": "1", "warehouse": "HZ", "lot": "L1"}, "not tracked"),
        ({"sku": "TEA", "quantity": "1", "warehouse": "HZ", "source_type": "x"}, "source_id"),
    ]
    for body, message in cases:
        p = problem(client.post(f"{API}/reservations", json=body, headers=h), 422)
        assert message in p["detail"], p
        assert p["errors"]
    assert ok(client.get(f"{API}/moves", params={"state": "reserved"}, headers=h))["items"] == []


def test_viewer_reads_but_cannot_write(client, acme):
    owner = acme.auth
    ok(
        client.post(
            "/api/v1/users",
            json={"email": "viewer@acme.test", "role": "viewer", "password": PASSWORD},
            headers=owner,
        ),
        201,
    )
    from erp_core.auth import service
    from erp_core.tenancy.models import Tenant

    with client.app.state.db.session(acme.id) as s, s.begin():  # the viewer's own API token
        tenant = s.get(Tenant, acme.id)
        user = service.get_user(s, "viewer@acme.test")
        assert user is not None and tenant is not None
        _, secret = service.create_token(
            s,
            tenant,
            user,
            name="viewer",
            scopes=["*"],
            known_permissions=client.app.state.known_permissions,
        )
    v = {"Authorization": f"Bearer {secret}"}
    assert ok(client.get(f"{API}/skus", headers=v))["items"][0]["code"] == "TEA"
    assert client.get(f"{API}/stock", headers=v).status_code == 200
    writes = [
        ("post", "/skus", {"code": "X", "name": "X"}),
        ("post", "/warehouses", {"code": "X", "name": "X"}),
        ("post", "/reservations", {"sku": "TEA", "quantity": "1", "warehouse": "HZ"}),
        ("post", "/receipts", {"sku": "TEA", "quantity": "1", "warehouse": "HZ", "unit_cost": "1"}),
        ("post", "/scrap", {"sku": "TEA", "quantity": "1", "location": "HZ/STOCK"}),
    ]
    for method, path, body in writes:
        problem(client.request(method, f"{API}{path}", json=body, headers=v), 403)
    [lv] = ok(client.get(f"{API}/stock", params={"sku": "TEA"}, headers=owner))
    assert (lv["on_hand"], lv["reserved"]) == ("10", "0")


def test_skus_page_by_keyset_and_search(client, acme):
    h = acme.auth
    for n in range(5):
        ok(
            client.post(f"{API}/skus", json={"code": f"RICE-{n}", "name": f"大米 {n}"}, headers=h),
            201,
        )
    page = ok(client.get(f"{API}/skus", params={"limit": 4}, headers=h))
    assert [s["code"] for s in page["items"]] == ["TEA", "RICE-0", "RICE-1", "RICE-2"]
    rest = ok(
        client.get(f"{API}/skus", params={"limit": 4, "after_id": page["next_after_id"]}, headers=h)
    )
    assert [s["code"] for s in rest["items"]] == ["RICE-3", "RICE-4"]
    assert rest["next_after_id"] is None
    found = ok(client.get(f"{API}/skus", params={"q": "大米 3"}, headers=h))
    assert [s["code"] for s in found["items"]] == ["RICE-3"]
    sku = found["items"][0]
    patched = ok(
        client.patch(f"{API}/skus/{sku['id']}", json={"name": "新米", "decimals": 2}, headers=h)
    )
    assert (patched["name"], patched["decimals"]) == ("新米", 2)
    problem(client.patch(f"{API}/skus/{sku['id']}", json={"decimals": 1}, headers=h), 422)
    problem(client.get(f"{API}/skus/987654321", headers=h), 404)


def test_serial_trace_through_the_api(client, acme):
    h = acme.auth
    ok(
        client.post(
            f"{API}/skus", json={"code": "PH", "name": "Phone", "tracking": "serial"}, headers=h
        ),
        201,
    )
    ok(
        client.post(
            f"{API}/receipts",
            json={
                "sku": "PH",
                "quantity": "2",
                "warehouse": "HZ",
                "unit_cost": "9",
                "serials": ["A", "B"],
            },
            headers=h,
        ),
        201,
    )
    p = problem(
        client.post(
            f"{API}/receipts",
            json={
                "sku": "PH",
                "quantity": "1",
                "warehouse": "HZ",
                "unit_cost": "9",
                "serials": ["A"],
            },
            headers=h,
        ),
        409,
    )
    assert "already in stock" in p["detail"]
    res = ok(
        client.post(
            f"{API}/reservations",
            json={"sku": "PH", "quantity": "1", "warehouse": "HZ", "serials": ["B"]},
            headers=h,
        ),
        201,
    )
    ok(client.post(f"{API}/moves/{res['moves'][0]['id']}/done", headers=h))
    sku = ok(client.get(f"{API}/skus", params={"q": "PH"}, headers=h))["items"][0]
    lots = ok(client.get(f"{API}/skus/{sku['id']}/lots", headers=h))
    b = next(x for x in lots if x["code"] == "B")
    trace = ok(client.get(f"{API}/lots/{b['id']}", headers=h))
    assert [(m["from_location"], m["to_location"]) for m in trace["moves"]] == [
        ("@supplier", "HZ/STOCK"),
        ("HZ/STOCK", "@customer"),
    ]


def test_draft_move_reserve_done_cancel(client, acme):
    h = acme.auth
    body = {"sku": "TEA", "quantity": "3", "from_location": "HZ", "to_location": "@customer"}
    draft = ok(client.post(f"{API}/moves", json=body, headers=h), 201)
    assert (draft["state"], draft["from_location"]) == ("draft", "HZ")
    [reserved] = ok(client.post(f"{API}/moves/{draft['id']}/reserve", headers=h))  # no body
    assert (reserved["state"], reserved["from_location"], reserved["reserved"]) == (
        "reserved",
        "HZ/STOCK",
        "3",
    )
    p = problem(client.post(f"{API}/moves/{draft['id']}/reserve", json={}, headers=h), 409)
    assert "only a draft move" in p["detail"]
    big = ok(client.post(f"{API}/moves", json=body | {"quantity": "8"}, headers=h), 201)
    [part] = ok(
        client.post(f"{API}/moves/{big['id']}/reserve", json={"allow_partial": True}, headers=h)
    )
    assert part["quantity"] == "7"
    cancelled = ok(client.post(f"{API}/moves/{big['id']}/cancel", headers=h))
    assert cancelled["state"] == "cancelled"
    [done] = ok(client.post(f"{API}/moves/{draft['id']}/done", headers=h))
    assert done["state"] == "done"
    problem(client.post(f"{API}/moves/{draft['id']}/cancel", headers=h), 409)
    got = ok(client.get(f"{API}/moves/{draft['id']}", headers=h))
    assert got["state"] == "done" and got["value"] == "106.5"
