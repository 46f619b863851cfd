"""hold reason kept translatable; index of merged orders

Revision ID: o0000003
Revises: o0000002
Create Date: 2026-11-30 14:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o0000003"
down_revision = "o0000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oms_order") as batch:
        batch.add_column(sa.Column("hold_detail", sa.JSON(), nullable=True))
    op.create_index(
        "ix_oms_order_merged_into",
        "oms_order",
        ["merged_into_id"],
        postgresql_where=sa.text("merged_into_id IS NOT NULL"),
        sqlite_where=sa.text("merged_into_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_oms_order_merged_into", table_name="oms_order")
    with op.batch_alter_table("oms_order") as batch:
        batch.drop_column("hold_detail")
