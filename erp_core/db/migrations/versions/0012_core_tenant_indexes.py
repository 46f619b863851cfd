"""core: no index on tenant_id alone where another index starts with it

Revision ID: c0000008
Revises: c0000007
Create Date: 2026-12-02 15:10:00.000000

Journal entries, postings, quants and audit events each have indexes (or a unique
constraint) that start with ``tenant_id``: they serve every look-up by tenant, so the index on
``tenant_id`` alone only cost each insert one more b-tree to write (a posting is written with
nine indexes otherwise). Nothing reads through it: SQLite's planner is told it selects nothing
(``erp_core.db.migrate.sqlite_planner_hints``).
"""

from __future__ import annotations

from alembic import op

revision = "c0000008"
down_revision = "c0000007"
branch_labels = None
#: the ledger and inventory branches made the tables
depends_on = ("l0000001", "0005_inventory_virtual_locations")

#: (table, index) dropped
INDEXES = (
    ("ledger_entry", "ix_ledger_entry_tenant_id"),
    ("ledger_posting", "ix_ledger_posting_tenant_id"),
    ("inv_quant", "ix_inv_quant_tenant_id"),
    ("core_audit_event", "ix_core_audit_event_tenant_id"),
)


def upgrade() -> None:
    for table, index in INDEXES:
        op.drop_index(index, table_name=table)


def downgrade() -> None:
    for table, index in INDEXES:
        op.create_index(index, table, ["tenant_id"], unique=False)
