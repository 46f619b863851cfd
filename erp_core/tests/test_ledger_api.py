"""The ledger's JSON API: accounts, entries, reversals, balances, trial balance, periods,
account mapping; money as strings; problems as problem+json; permissions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from erp_core.db.session import system_access
from erp_core.ledger.models import JournalEntry
from erp_core.testing.fixtures import PASSWORD

API = "/api/v1/ledger"


def entry(key="k1", amount="100.00", date="2026-10-03", **extra: Any) -> dict[str, Any]:
    return {
        "date": date,
        "narration": '天猫订单 "884" 结算\nsettlement',
        "idempotency_key": key,
        "source_type": "oms_order",
        "source_id": "884",
        "postings": [
            {"account": "1122", "amount": amount, "channel": "tmall", "order": "884"},
            {"account": "5001", "amount": f"-{amount}", "channel": "tmall", "sku": "SKU-1"},
        ],
        **extra,
    }


def problem(r, status=422):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()["detail"]


def count(erp_db):
    with erp_db.session() as s, system_access(s):
        return s.scalar(select(func.count()).select_from(JournalEntry))


def test_post_get_list_and_replay(client, make_tenant, erp_db):
    t = make_tenant("acme")
    r = client.post(f"{API}/entries", json=entry(), headers=t.auth)
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["period"] == "2026-10" and e["narration"].startswith('天猫订单 "884"')
    assert [(p["account"], p["amount"], p["amount_base"], p["rate"]) for p in e["postings"]] == [
        ("1122", "100.00", "100.00", "1"),
        ("5001", "-100.00", "-100.00", "1"),
    ]
    assert e["postings"][0]["order"] == "884" and e["postings"][1]["sku"] == "SKU-1"
    assert e["postings"][0]["account_name_zh"] == "应收账款"
    assert e["posted_by"] == f"{t.email} via token:1"
    again = client.post(f"{API}/entries", json=entry(), headers=t.auth)
    assert again.status_code == 200 and again.json()["id"] == e["id"]
    detail = problem(client.post(f"{API}/entries", json=entry(amount="99.00"), headers=t.auth))
    assert "already used by entry" in detail
    assert count(erp_db) == 1
    got = client.get(f"{API}/entries/{e['id']}", headers=t.auth)
    assert got.status_code == 200 and got.json() == e
    assert problem(client.get(f"{API}/entries/999999", headers=t.auth), 404)


def test_entry_filters_and_pages(client, make_tenant):
    t = make_tenant("acme")
    ids = []
    for n in range(1, 6):
        body = entry(key=f"k{n}", date=f"2026-10-0{n}")
        body["postings"][0]["channel"] = "jd" if n % 2 else "tmall"
        body["source_id"] = str(n)
        ids.append(client.post(f"{API}/entries", json=body, headers=t.auth).json()["id"])

    def listed(**params):
        r = client.get(f"{API}/entries", params=params, headers=t.auth)
        assert r.status_code == 200, r.text
        return r.json()

    assert [e["id"] for e in listed()["items"]] == ids[::-1]
    page = listed(limit=2)
    assert [e["id"] for e in page["items"]] == ids[:2:-1][:2]
    rest = listed(limit=2, before_id=page["next_before_id"])
    assert [e["id"] for e in rest["items"]] == [ids[2], ids[1]]
    assert [e["id"] for e in listed(channel="jd")["items"]] == [ids[4], ids[2], ids[0]]
    assert [e["id"] for e in listed(date_from="2026-10-02", date_to="2026-10-03")["items"]] == [
        ids[2],
        ids[1],
    ]
    assert [e["id"] for e in listed(source_type="oms_order", source_id="4")["items"]] == [ids[3]]
    assert len(listed(account="1122")["items"]) == 5
    assert listed(account="1405")["items"] == []
    assert listed(sku="SKU-1", order="884")["next_before_id"] is None
    assert "unknown account" in problem(client.get(f"{API}/entries?account=8888", headers=t.auth))


def lines(*postings: dict[str, Any]) -> dict[str, Any]:
    return {"postings": list(postings)}


CREDIT = {"account": "5001", "amount": "-1"}
BAD_BODIES = [
    (lines({"account": "1122", "amount": 100.5}, CREDIT), "strings"),
    (lines({"account": "1122", "amount": "abc"}, CREDIT), "not a decimal"),
    (lines({"account": "1122", "amount": "NaN"}, CREDIT), "finite"),
    (lines({"account": "1122", "amount": "1"}, {**CREDIT, "amount": "-2"}), "does not balance"),
    (lines({"account": "1122", "amount": "1"}, {**CREDIT, "account": "9999"}), "unknown account"),
    (lines({"account": "1122", "amount": "1"}), "at least 2"),
    (lines({"account": "1122", "amount": "1", "rate": 7.1, "currency": "USD"}, CREDIT), "strings"),
    ({"date": "2026-13-01"}, "date"),
    ({"idempotency_key": ""}, "idempotency_key"),
]


@pytest.mark.parametrize(("patch", "message"), BAD_BODIES)
def test_bad_entries_are_422_and_store_nothing(client, make_tenant, erp_db, patch, message):
    t = make_tenant("acme")
    r = client.post(f"{API}/entries", json=entry() | patch, headers=t.auth)
    detail = problem(r)
    assert message in detail or message in str(r.json()["errors"]), r.text
    assert count(erp_db) == 0


def test_reverse(client, make_tenant, erp_db):
    t = make_tenant("acme")
    e = client.post(f"{API}/entries", json=entry(), headers=t.auth).json()
    r = client.post(
        f"{API}/entries/{e['id']}/reverse",
        json={"reason": "duplicate", "date": "2026-10-31"},
        headers=t.auth,
    )
    assert r.status_code == 201, r.text
    rev = r.json()
    assert rev["reverses_id"] == e["id"] and rev["date"] == "2026-10-31"
    assert [p["amount"] for p in rev["postings"]] == ["-100.00", "100.00"]
    assert (
        client.get(f"{API}/entries/{e['id']}", headers=t.auth).json()["reversed_by_id"]
        == (rev["id"])
    )
    detail = problem(
        client.post(f"{API}/entries/{e['id']}/reverse", json={"reason": "x"}, headers=t.auth)
    )
    assert "already reversed" in detail
    assert problem(
        client.post(f"{API}/entries/999999/reverse", json={"reason": "x"}, headers=t.auth), 404
    )
    assert count(erp_db) == 2


def test_balances_and_trial_balance(client, make_tenant):
    t = make_tenant("acme")
    client.post(f"{API}/entries", json=entry(), headers=t.auth)
    usd = entry(key="usd", amount="10.00", date="2026-11-02")
    for p in usd["postings"]:
        p.update(currency="USD", rate="7.1234")
    assert client.post(f"{API}/entries", json=usd, headers=t.auth).status_code == 201
    tb = client.get(f"{API}/trial-balance", headers=t.auth).json()
    assert tb["tenant_currency"] == "CNY"
    assert {(x["currency"], x["balance"], x["balance_base"]) for x in tb["totals"]} == {
        ("CNY", "0.00", "0.00"),
        ("USD", "0.00", "0.00"),
    }
    row = next(x for x in tb["rows"] if x["account"] == "1122" and x["currency"] == "USD")
    assert (row["debit"], row["balance"], row["balance_base"]) == ("10.00", "10.00", "71.23")
    early = client.get(f"{API}/trial-balance", params={"until": "2026-10-31"}, headers=t.auth)
    assert {x["currency"] for x in early.json()["rows"]} == {"CNY"}
    r = client.get(
        f"{API}/balances",
        params=[("account", "5001"), ("group_by", "channel"), ("group_by", "period")],
        headers=t.auth,
    )
    assert r.status_code == 200, r.text
    assert [(b["currency"], b["amount"], b["period"], b["dimensions"]) for b in r.json()] == [
        ("CNY", "-100.00", "2026-10", {"channel": "tmall"}),
        ("USD", "-10.00", "2026-11", {"channel": "tmall"}),
    ]
    r = client.get(f"{API}/balances", params={"sku": "SKU-1", "period": "2026-10"}, headers=t.auth)
    assert [(b["account"], b["amount"]) for b in r.json()] == [("5001", "-100.00")]
    assert "cannot group by" in problem(
        client.get(f"{API}/balances?group_by=colour", headers=t.auth)
    )
    assert "2026-10" in problem(client.get(f"{API}/balances?period=10-2026", headers=t.auth))


def test_periods(client, make_tenant, erp_db):
    t = make_tenant("acme")
    r = client.post(f"{API}/periods/lock", json={"period": "2026-10"}, headers=t.auth)
    assert r.status_code == 200 and r.json()["locked_by"].startswith(f"{t.email} via token:")
    assert [p["period"] for p in client.get(f"{API}/periods", headers=t.auth).json()] == ["2026-10"]
    detail = problem(client.post(f"{API}/entries", json=entry(), headers=t.auth))
    assert detail.startswith(f"period 2026-10 is locked (by {t.email} via token:")
    assert count(erp_db) == 0
    assert (
        client.post(f"{API}/periods/unlock", json={"period": "2026-10"}, headers=t.auth).status_code
        == 204
    )
    assert "is not locked" in problem(
        client.post(f"{API}/periods/unlock", json={"period": "2026-10"}, headers=t.auth)
    )
    assert client.post(f"{API}/entries", json=entry(), headers=t.auth).status_code == 201
    audit = client.get("/api/v1/audit", headers=t.auth).json()["items"]
    assert {"ledger.period.locked", "ledger.period.unlocked"} <= {a["action"] for a in audit}


def test_accounts(client, make_tenant):
    t = make_tenant("acme")
    accounts = client.get(f"{API}/accounts", headers=t.auth).json()
    by_code = {a["code"]: a for a in accounts}
    assert by_code["2202"]["postable"] is False and by_code["220202"]["depth"] == 1
    assert by_code["220202"]["parent_code"] == "2202"
    r = client.post(
        f"{API}/accounts",
        json={"code": "560104", "name_zh": "直播佣金", "name_en": "Live-stream commissions"},
        headers=t.auth,
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["type"], new["parent_code"], new["postable"]) == ("expense", "5601", True)
    assert problem(
        client.post(
            f"{API}/accounts",
            json={"code": "560104", "name_zh": "x", "name_en": "x"},
            headers=t.auth,
        )
    )
    r = client.patch(
        f"{API}/accounts/{new['id']}", json={"name_en": "Live commissions"}, headers=t.auth
    )
    assert r.status_code == 200 and r.json()["name_en"] == "Live commissions"
    assert (
        client.get(f"{API}/accounts/{new['id']}", headers=t.auth).json()["name_en"]
        == "Live commissions"
    )
    body = entry()
    body["postings"][0]["account"] = "560104"
    assert client.post(f"{API}/entries", json=body, headers=t.auth).status_code == 201
    detail = problem(
        client.patch(f"{API}/accounts/{new['id']}", json={"type": "asset"}, headers=t.auth)
    )
    assert "has postings" in detail
    assert problem(client.get(f"{API}/accounts/999999", headers=t.auth), 404)


def test_account_mapping(client, make_tenant):
    t = make_tenant("acme")
    mapping = {
        m["purpose"]: m["account"]
        for m in client.get(f"{API}/account-mapping", headers=t.auth).json()
    }
    assert mapping["inventory"] == "1405" and mapping["grir"] == "220202"
    r = client.put(
        f"{API}/account-mapping", json={"stock_gain": "5301", "stock_loss": "5711"}, headers=t.auth
    )
    assert r.status_code == 200, r.text
    after = {m["purpose"]: m["account"] for m in r.json()}
    assert after == mapping | {"stock_gain": "5301", "stock_loss": "5711"}
    assert "has sub-accounts" in problem(
        client.put(f"{API}/account-mapping", json={"cogs": "5601"}, headers=t.auth)
    )
    assert problem(client.put(f"{API}/account-mapping", json={"colour": "5601"}, headers=t.auth))


def test_permissions(client, make_tenant):
    t = make_tenant("acme")
    client.post(
        "/api/v1/users",
        json={"email": "viewer@acme.test", "role": "viewer", "password": PASSWORD},
        headers=t.auth,
    )
    client.post(
        "/api/v1/users",
        json={"email": "staff@acme.test", "role": "staff", "password": PASSWORD},
        headers=t.auth,
    )
    from erp_core.testing.fixtures import login

    e = client.post(f"{API}/entries", json=entry(), headers=t.auth).json()
    assert login(client, "viewer@acme.test").status_code == 303
    from erp_core.testing.fixtures import csrf_of

    csrf = {"X-CSRF-Token": csrf_of(client)}
    assert client.get(f"{API}/entries").status_code == 200
    assert client.get(f"{API}/trial-balance").status_code == 200
    for method, path, body in [
        ("POST", "/entries", entry(key="viewer")),
        ("POST", f"/entries/{e['id']}/reverse", {"reason": "x"}),
        ("POST", "/periods/lock", {"period": "2026-10"}),
        ("PUT", "/account-mapping", {"cogs": "5401"}),
        ("POST", "/accounts", {"code": "560104", "name_zh": "x", "name_en": "x"}),
    ]:
        r = client.request(method, f"{API}{path}", json=body, headers=csrf)
        assert "core.ledger." in problem(r, 403)
    client.cookies.clear()
    assert login(client, "staff@acme.test").status_code == 303
    csrf = {"X-CSRF-Token": csrf_of(client)}
    assert client.post(f"{API}/entries", json=entry(key="staff"), headers=csrf).status_code == 201
    r = client.post(f"{API}/periods/lock", json={"period": "2026-10"}, headers=csrf)
    assert "core.ledger.manage" in problem(r, 403)
    client.cookies.clear()
    assert client.get(f"{API}/accounts").status_code == 401
