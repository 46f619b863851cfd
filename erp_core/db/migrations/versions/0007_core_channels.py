"""core: channel accounts (shops and payment accounts, with encrypted credentials)

Revision ID: c0000003
Revises: c0000002
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0000003"
down_revision = "c0000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "core_channel_account",
        sa.Column("id", big_id, autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("shop_id", sa.String(length=128), nullable=False),
        sa.Column("app_key", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("access_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("refresh_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", big_id, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_core_channel_account_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_channel_account")),
        sa.UniqueConstraint(
            "tenant_id",
            "connector",
            "shop_id",
            name=op.f("uq_core_channel_account_tenant_id_connector_shop_id"),
        ),
    )
    with op.batch_alter_table("core_channel_account", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_core_channel_account_tenant_id"), ["tenant_id"], unique=False
        )
    _restrict_staff()


#: The built-in staff role's patterns before channel accounts existed: a staff role left as
#: created gets channel credentials kept out of its reach, as new tenants' staff roles do.
OLD_STAFF = [
    "*",
    "!core.users.*",
    "!core.roles.*",
    "!core.tokens.*",
    "!core.audit.*",
    "!core.tenant.manage",
    "!core.plugins.manage",
    "!core.ledger.manage",
]


def _restrict_staff() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # row-level security: this step is for every tenant
        bind.execute(sa.text("SELECT set_config('erp.all_tenants', 'on', true)"))
    role = sa.table(
        "core_role",
        sa.column("id", sa.BigInteger()),
        sa.column("name", sa.String()),
        sa.column("builtin", sa.Boolean()),
        sa.column("permissions", sa.JSON()),
    )
    rows = bind.execute(
        sa.select(role.c.id, role.c.permissions).where(
            role.c.name == "staff", role.c.builtin.is_(True)
        )
    ).all()
    for rid, patterns in rows:
        if list(patterns or []) == OLD_STAFF:
            bind.execute(
                sa.update(role)
                .where(role.c.id == rid)
                .values(permissions=[*OLD_STAFF, "!core.channels.manage"])
            )


def downgrade() -> None:
    with op.batch_alter_table("core_channel_account", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_channel_account_tenant_id"))

    op.drop_table("core_channel_account")
