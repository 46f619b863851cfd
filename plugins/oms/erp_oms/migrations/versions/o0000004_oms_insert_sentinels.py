"""insert sentinels: new orders, lines, parcels and timeline events in one INSERT on SQLite

Revision ID: o0000004
Revises: o0000003
Create Date: 2026-11-30 17:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o0000004"
down_revision = "o0000003"
branch_labels = None
depends_on = None

TABLES = ("oms_order", "oms_order_line", "oms_parcel", "oms_parcel_line", "oms_event")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("insert_sentinel", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("insert_sentinel")
