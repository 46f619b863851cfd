"""no index on tenant_id alone where another index starts with it: orders, order lines,
parcels and the stock-push marks each have one (or a unique constraint) that serves a look-up
by tenant, so the lone one only cost every insert one more b-tree to write

Revision ID: o0000006
Revises: o0000005
Create Date: 2026-12-02 15:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "o0000006"
down_revision = "o0000005"
branch_labels = None
depends_on = None

#: (table, index) dropped
INDEXES = (
    ("oms_order", "ix_oms_order_tenant_id"),
    ("oms_order_line", "ix_oms_order_line_tenant_id"),
    ("oms_parcel", "ix_oms_parcel_tenant_id"),
    ("oms_stock_dirty", "ix_oms_stock_dirty_tenant_id"),
)


def upgrade() -> None:
    for table, index in INDEXES:
        op.drop_index(index, table_name=table)


def downgrade() -> None:
    for table, index in INDEXES:
        op.create_index(index, table, ["tenant_id"], unique=False)
