"""the buyer index leads with the buyer: review's duplicate suspicion looks up the open
orders of a page's buyers through it instead of reading every open order of the tenant

Revision ID: o0000005
Revises: o0000004
Create Date: 2026-12-01 05:10:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "o0000005"
down_revision = "o0000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_oms_order_tenant_buyer", table_name="oms_order")
    op.create_index("ix_oms_order_tenant_buyer", "oms_order", ["tenant_id", "buyer_key", "status"])


def downgrade() -> None:
    op.drop_index("ix_oms_order_tenant_buyer", table_name="oms_order")
    op.create_index(
        "ix_oms_order_tenant_buyer", "oms_order", ["tenant_id", "channel_account_id", "buyer_key"]
    )
