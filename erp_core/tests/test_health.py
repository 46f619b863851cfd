"""Liveness and readiness probes, and the OpenAPI document."""

from __future__ import annotations

from fastapi.testclient import TestClient

from erp_core.app import create_app


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_reports_an_unreachable_broker(erp_settings, erp_registry, erp_db):
    settings = erp_settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    app = create_app(settings, registry=erp_registry, db=erp_db)
    with TestClient(app) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["checks"]["broker"].startswith("error")


def test_readyz_reports_an_unreachable_database(erp_settings, erp_registry, tmp_path):
    from erp_core.db.session import Database

    broken = Database(f"sqlite:///{tmp_path}/no/such/dir/erp.sqlite")
    app = create_app(erp_settings, registry=erp_registry, db=broken)
    with TestClient(app) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("error")


def test_openapi_lists_kernel_and_plugin_routes(client):
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/api/v1/tenants/current",
        "/api/v1/users",
        "/api/v1/roles",
        "/api/v1/tokens",
        "/api/v1/plugins",
        "/api/v1/audit",
        "/api/v1/alpha/notes",
    } <= paths
