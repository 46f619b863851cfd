"""core: channel sync cursors and delivered object versions

Revision ID: c0000005
Revises: c0000004
Create Date: 2026-11-30 10:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0000005"
down_revision = "c0000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "core_channel_cursor",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("account_id", big_id, nullable=False),
        sa.Column("stream", sa.String(length=16), nullable=False),
        sa.Column("synced_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("page_token", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["core_channel_account.id"],
            name=op.f("fk_core_channel_cursor_account_id_core_channel_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_channel_cursor_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_channel_cursor")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "stream",
            name=op.f("uq_core_channel_cursor_tenant_id_account_id_stream"),
        ),
    )
    op.create_table(
        "core_channel_object",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("account_id", big_id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("platform_id", sa.String(length=128), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["core_channel_account.id"],
            name=op.f("fk_core_channel_object_account_id_core_channel_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_channel_object_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_channel_object")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "kind",
            "platform_id",
            name=op.f("uq_core_channel_object_tenant_id_account_id_kind_platform_id"),
        ),
    )
    with op.batch_alter_table("core_channel_object", schema=None) as batch_op:
        batch_op.create_index("ix_core_channel_object_account_id", ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("core_channel_object", schema=None) as batch_op:
        batch_op.drop_index("ix_core_channel_object_account_id")
    op.drop_table("core_channel_object")
    op.drop_table("core_channel_cursor")
