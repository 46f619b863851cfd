"""core: the columns each user chose for each list of the web UI

Revision ID: c0000002
Revises: c0000001
Create Date: 2026-11-30 09:16:46.898383
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0000002"
down_revision = "c0000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "core_list_pref",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_name", sa.String(length=100), nullable=False),
        sa.Column("columns", sa.String(length=2000), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_list_pref_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["core_user.id"],
            name=op.f("fk_core_list_pref_user_id_core_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_list_pref")),
        sa.UniqueConstraint(
            "tenant_id",
            "user_id",
            "list_name",
            name=op.f("uq_core_list_pref_tenant_id_user_id_list_name"),
        ),
    )
    with op.batch_alter_table("core_list_pref", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_core_list_pref_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("core_list_pref", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_list_pref_tenant_id"))

    op.drop_table("core_list_pref")
