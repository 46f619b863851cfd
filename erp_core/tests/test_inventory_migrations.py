"""Data migrations of the inventory branch, and reads that never write."""

from __future__ import annotations

import importlib
from typing import Any

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import delete, func, select

from erp_core.inventory.models import Location

VIRTUAL_PATHS = {"@supplier", "@customer", "@adjustment", "@scrap", "@transit"}


def _virtual_count(erp_db: Any) -> int:
    with erp_db.system_session() as s:
        return int(s.scalar(select(func.count()).where(Location.path.in_(VIRTUAL_PATHS))) or 0)


def _run_upgrade(erp_db: Any) -> None:
    module = importlib.import_module(
        "erp_core.db.migrations.versions.0005_inventory_virtual_locations"
    )
    with erp_db.engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
        module.upgrade()


def test_older_tenants_get_virtual_locations_from_the_migration(client, make_tenant, erp_db):
    a, b = make_tenant("older"), make_tenant("newer")
    assert _virtual_count(erp_db) == 10  # created with each tenant
    with erp_db.system_session() as s:  # as if "older" predated the inventory
        s.execute(delete(Location).where(Location.tenant_id == a.id))
    # listing locations is a read: it creates nothing
    r = client.get("/api/v1/inventory/locations", headers=a.auth)
    assert r.status_code == 200, r.text
    assert r.json() == []
    assert _virtual_count(erp_db) == 5

    _run_upgrade(erp_db)
    _run_upgrade(erp_db)  # idempotent
    assert _virtual_count(erp_db) == 10
    paths = {x["path"] for x in client.get("/api/v1/inventory/locations", headers=a.auth).json()}
    assert paths == VIRTUAL_PATHS
    other = {x["path"] for x in client.get("/api/v1/inventory/locations", headers=b.auth).json()}
    assert other == VIRTUAL_PATHS
