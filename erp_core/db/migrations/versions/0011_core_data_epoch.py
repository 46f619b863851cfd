"""core: the tenant's master-data epoch

Revision ID: c0000007
Revises: c0000006
Create Date: 2026-11-30 21:30:00.000000

Bumped by every transaction that writes a row of a master-data model (accounts, SKUs,
warehouses, a plugin's rules and settings); processes cache such rows by tenant and epoch
(``erp_core.db.cache``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0000007"
down_revision = "c0000006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("core_tenant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("data_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("core_tenant", schema=None) as batch_op:
        batch_op.drop_column("data_epoch")
