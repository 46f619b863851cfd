"""inventory: virtual locations for every tenant that has none yet

Tenants created since the inventory exists get their virtual locations (supplier, customer,
adjustment, scrap, transit) when they are created; this gives them to tenants created before,
so that nothing has to create them lazily (a read never writes).

Revision ID: 0005_inventory_virtual_locations
Revises: 0004_inventory_list_indexes
Create Date: 2026-11-30 09:30:00.000000
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_inventory_virtual_locations"
down_revision = "0004_inventory_list_indexes"
branch_labels = None
depends_on = None

#: usage -> (path, name), as the inventory service defines them at this revision
VIRTUAL = {
    "supplier": ("@supplier", "Suppliers"),
    "customer": ("@customer", "Customers"),
    "adjustment": ("@adjustment", "Inventory adjustment"),
    "scrap": ("@scrap", "Scrap"),
    "transit": ("@transit", "Transit between warehouses"),
}

INSERT = sa.text(
    """
INSERT INTO inv_location (tenant_id, warehouse_id, parent_id, code, path, name, kind, usage,
                          active, created_at)
SELECT t.id, NULL, NULL, :code, :path, :name, 'stock', :usage, :active, :now
  FROM core_tenant t
 WHERE NOT EXISTS (SELECT 1 FROM inv_location l WHERE l.tenant_id = t.id AND l.path = :same_path)
"""
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # row-level security: this step is for every tenant
        bind.execute(sa.text("SELECT set_config('erp.all_tenants', 'on', true)"))
    now = datetime.now(UTC)
    for usage, (path, name) in VIRTUAL.items():
        bind.execute(
            INSERT,
            {
                "code": path[1:],
                "path": path,
                "same_path": path,
                "name": name,
                "usage": usage,
                "active": True,
                "now": now,
            },
        )


def downgrade() -> None:
    """Nothing to undo: the locations are the ones every tenant has (and moves may use them)."""
