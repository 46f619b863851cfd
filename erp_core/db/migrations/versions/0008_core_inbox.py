"""core: the inbox of pushed channel messages, and the versions it delivered

Revision ID: c0000004
Revises: c0000003
Create Date: 2026-11-30 11:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0000004"
down_revision = "c0000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "core_inbox_message",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("account_id", big_id, nullable=False),
        sa.Column("connector", sa.String(length=40), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("topic", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result", sa.String(length=300), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["core_channel_account.id"],
            name=op.f("fk_core_inbox_message_account_id_core_channel_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_inbox_message_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_inbox_message")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "message_id",
            name=op.f("uq_core_inbox_message_tenant_id_account_id_message_id"),
        ),
    )
    with op.batch_alter_table("core_inbox_message", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_core_inbox_message_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(
            "ix_core_inbox_message_tenant_state", ["tenant_id", "state", "id"], unique=False
        )
    op.create_table(
        "core_inbox_subject",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("account_id", big_id, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["core_channel_account.id"],
            name=op.f("fk_core_inbox_subject_account_id_core_channel_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_inbox_subject_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_inbox_subject")),
        sa.UniqueConstraint(
            "tenant_id",
            "account_id",
            "kind",
            "subject_id",
            name=op.f("uq_core_inbox_subject_tenant_id_account_id_kind_subject_id"),
        ),
    )
    with op.batch_alter_table("core_inbox_subject", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_core_inbox_subject_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("core_inbox_subject", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_inbox_subject_account_id"))
    op.drop_table("core_inbox_subject")
    with op.batch_alter_table("core_inbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_core_inbox_message_tenant_state")
        batch_op.drop_index(batch_op.f("ix_core_inbox_message_account_id"))
    op.drop_table("core_inbox_message")
