"""parcel logistics trail

Revision ID: o0000002
Revises: o0000001
Create Date: 2026-11-30 14:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o0000002"
down_revision = "o0000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oms_parcel") as batch:
        batch.add_column(sa.Column("trail", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("trail_courier", sa.String(length=100), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("trail_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("oms_parcel") as batch:
        batch.create_index("ix_oms_parcel_trail", ["tenant_id", "state", "delivered_at", "id"])


def downgrade() -> None:
    with op.batch_alter_table("oms_parcel") as batch:
        batch.drop_index("ix_oms_parcel_trail")
        batch.drop_column("delivered_at")
        batch.drop_column("trail_checked_at")
        batch.drop_column("trail_courier")
        batch.drop_column("trail")
