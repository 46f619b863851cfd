"""ledger: chart of accounts, journal entries and postings, period locks, account mapping

Journal entries and postings are append-only: triggers refuse every UPDATE and DELETE of
them, on SQLite and on PostgreSQL, so that even SQL that bypasses the ledger service cannot
change the books (corrections are reversing entries).

Revision ID: l0000001
Revises:
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "l0000001"
down_revision = None
branch_labels = ("core_ledger",)
depends_on = "c0000001"

IMMUTABLE = ("ledger_entry", "ledger_posting")
MESSAGE = "rows of %s are immutable: post a reversing entry instead"


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'rows of % are immutable: post a reversing entry instead',
                    TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        for table in IMMUTABLE:
            op.execute(
                f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
    else:
        for table in IMMUTABLE:
            for event in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE % table}'); END"
                )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in IMMUTABLE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    else:
        for table in IMMUTABLE:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")


def upgrade() -> None:
    op.create_table(
        "ledger_account",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name_zh", sa.String(length=200), nullable=False),
        sa.Column("name_en", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_account_parent_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_ledger_account_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_ledger_account_tenant_id_code")),
    )
    op.create_index(
        op.f("ix_ledger_account_parent_id"), "ledger_account", ["parent_id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_account_tenant_id"), "ledger_account", ["tenant_id"], unique=False
    )
    op.create_table(
        "ledger_entry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("narration", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source_type", sa.String(length=63), nullable=True),
        sa.Column("source_id", sa.String(length=200), nullable=True),
        sa.Column(
            "reverses_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("posted_by", sa.String(length=254), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_entry.id"],
            name=op.f("fk_ledger_entry_reverses_id_ledger_entry"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_ledger_entry_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entry")),
        sa.UniqueConstraint("reverses_id", name=op.f("uq_ledger_entry_reverses_id")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_ledger_entry_tenant_id_idempotency_key")
        ),
    )
    op.create_index(
        "ix_ledger_entry_tenant_date", "ledger_entry", ["tenant_id", "date"], unique=False
    )
    op.create_index(op.f("ix_ledger_entry_tenant_id"), "ledger_entry", ["tenant_id"], unique=False)
    op.create_index(
        "ix_ledger_entry_tenant_source",
        "ledger_entry",
        ["tenant_id", "source_type", "source_id"],
        unique=False,
    )
    op.create_table(
        "ledger_period_lock",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("locked_by", sa.String(length=254), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_ledger_period_lock_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_period_lock")),
        sa.UniqueConstraint(
            "tenant_id", "period", name=op.f("uq_ledger_period_lock_tenant_id_period")
        ),
    )
    op.create_index(
        op.f("ix_ledger_period_lock_tenant_id"), "ledger_period_lock", ["tenant_id"], unique=False
    )
    op.create_table(
        "ledger_account_mapping",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_account_mapping_account_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_ledger_account_mapping_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_account_mapping")),
        sa.UniqueConstraint(
            "tenant_id", "purpose", name=op.f("uq_ledger_account_mapping_tenant_id_purpose")
        ),
    )
    op.create_index(
        op.f("ix_ledger_account_mapping_tenant_id"),
        "ledger_account_mapping",
        ["tenant_id"],
        unique=False,
    )
    op.create_table(
        "ledger_posting",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column(
            "account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("rate", sa.BigInteger(), nullable=False),
        sa.Column("amount_base", sa.BigInteger(), nullable=False),
        sa.Column("memo", sa.String(length=500), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=True),
        sa.Column("store", sa.String(length=100), nullable=True),
        sa.Column("sku", sa.String(length=100), nullable=True),
        sa.Column("order_ref", sa.String(length=100), nullable=True),
        sa.Column("warehouse", sa.String(length=100), nullable=True),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_account.id"],
            name=op.f("fk_ledger_posting_account_id_ledger_account"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["ledger_entry.id"], name=op.f("fk_ledger_posting_entry_id_ledger_entry")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_ledger_posting_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_posting")),
        sa.UniqueConstraint("entry_id", "line", name=op.f("uq_ledger_posting_entry_id_line")),
    )
    op.create_index(
        "ix_ledger_posting_tenant_account_date",
        "ledger_posting",
        ["tenant_id", "account_id", "date"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_posting_tenant_channel", "ledger_posting", ["tenant_id", "channel"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_posting_tenant_id"), "ledger_posting", ["tenant_id"], unique=False
    )
    op.create_index(
        "ix_ledger_posting_tenant_order_ref",
        "ledger_posting",
        ["tenant_id", "order_ref"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_posting_tenant_period", "ledger_posting", ["tenant_id", "period"], unique=False
    )
    op.create_index(
        "ix_ledger_posting_tenant_sku", "ledger_posting", ["tenant_id", "sku"], unique=False
    )
    op.create_index(
        "ix_ledger_posting_tenant_store", "ledger_posting", ["tenant_id", "store"], unique=False
    )
    op.create_index(
        "ix_ledger_posting_tenant_warehouse",
        "ledger_posting",
        ["tenant_id", "warehouse"],
        unique=False,
    )
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_index("ix_ledger_posting_tenant_warehouse", table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_store", table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_sku", table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_period", table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_order_ref", table_name="ledger_posting")
    op.drop_index(op.f("ix_ledger_posting_tenant_id"), table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_channel", table_name="ledger_posting")
    op.drop_index("ix_ledger_posting_tenant_account_date", table_name="ledger_posting")
    op.drop_table("ledger_posting")
    op.drop_index(op.f("ix_ledger_account_mapping_tenant_id"), table_name="ledger_account_mapping")
    op.drop_table("ledger_account_mapping")
    op.drop_index(op.f("ix_ledger_period_lock_tenant_id"), table_name="ledger_period_lock")
    op.drop_table("ledger_period_lock")
    op.drop_index("ix_ledger_entry_tenant_source", table_name="ledger_entry")
    op.drop_index(op.f("ix_ledger_entry_tenant_id"), table_name="ledger_entry")
    op.drop_index("ix_ledger_entry_tenant_date", table_name="ledger_entry")
    op.drop_table("ledger_entry")
    op.drop_index(op.f("ix_ledger_account_tenant_id"), table_name="ledger_account")
    op.drop_index(op.f("ix_ledger_account_parent_id"), table_name="ledger_account")
    op.drop_table("ledger_account")
