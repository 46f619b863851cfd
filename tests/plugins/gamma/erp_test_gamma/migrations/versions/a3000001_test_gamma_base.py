"""test_gamma base

Revision ID: a3000001
Revises:
Create Date: 2026-11-25 02:50:51.447986
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a3000001"
down_revision = None
branch_labels = ("test_gamma",)
depends_on = "c0000001"


def upgrade() -> None:
    op.create_table(
        "test_gamma_item",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_test_gamma_item_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_gamma_item")),
    )
    with op.batch_alter_table("test_gamma_item", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_test_gamma_item_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("test_gamma_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_gamma_item_tenant_id"))

    op.drop_table("test_gamma_item")
