"""inventory: SKUs, warehouses and locations, lots, moves, quants, valuation

Quantities and money are exact decimals stored as BIGINT scaled by 10**4
(``erp_core.db.types.Quantity`` / ``Money``).

Revision ID: i0000001
Revises:
Create Date: 2026-11-25 03:52:55.374394
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "i0000001"
down_revision = None
branch_labels = ("core_inventory",)
depends_on = "c0000001"


def upgrade() -> None:
    op.create_table(
        "inv_sku",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("decimals", sa.Integer(), nullable=False),
        sa.Column("tracking", sa.String(length=8), nullable=False),
        sa.Column("shelf_life_days", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.CheckConstraint(
            "tracking <> 'serial' OR decimals = 0", name=op.f("ck_inv_sku_serial_whole")
        ),
        sa.CheckConstraint(
            "tracking IN ('none', 'lot', 'serial')", name=op.f("ck_inv_sku_tracking")
        ),
        sa.CheckConstraint("decimals >= 0 AND decimals <= 4", name=op.f("ck_inv_sku_decimals")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_sku_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_sku")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_inv_sku_tenant_id_code")),
    )
    with op.batch_alter_table("inv_sku", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inv_sku_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "inv_warehouse",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_warehouse_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_warehouse")),
        sa.UniqueConstraint("tenant_id", "code", name=op.f("uq_inv_warehouse_tenant_id_code")),
    )
    with op.batch_alter_table("inv_warehouse", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inv_warehouse_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "inv_location",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "warehouse_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("usage", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.CheckConstraint("kind IN ('view', 'stock')", name=op.f("ck_inv_location_kind")),
        sa.CheckConstraint(
            "usage IN ('internal', 'supplier', 'customer', 'adjustment', 'scrap', 'transit')",
            name=op.f("ck_inv_location_usage"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["inv_location.id"],
            name=op.f("fk_inv_location_parent_id_inv_location"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_location_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["inv_warehouse.id"],
            name=op.f("fk_inv_location_warehouse_id_inv_warehouse"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_location")),
        sa.UniqueConstraint("tenant_id", "path", name=op.f("uq_inv_location_tenant_id_path")),
    )
    with op.batch_alter_table("inv_location", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inv_location_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inv_location_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_inv_location_warehouse_id", ["warehouse_id"], unique=False)

    op.create_table(
        "inv_lot",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["sku_id"], ["inv_sku.id"], name=op.f("fk_inv_lot_sku_id_inv_sku"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_lot_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_lot")),
        sa.UniqueConstraint(
            "tenant_id", "sku_id", "code", name=op.f("uq_inv_lot_tenant_id_sku_id_code")
        ),
    )
    with op.batch_alter_table("inv_lot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inv_lot_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "inv_valuation",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("average_cost", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_inv_valuation_quantity_nonnegative")),
        sa.CheckConstraint("value >= 0", name=op.f("ck_inv_valuation_value_nonnegative")),
        sa.ForeignKeyConstraint(
            ["sku_id"],
            ["inv_sku.id"],
            name=op.f("fk_inv_valuation_sku_id_inv_sku"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_valuation_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_valuation")),
        sa.UniqueConstraint("tenant_id", "sku_id", name=op.f("uq_inv_valuation_tenant_id_sku_id")),
    )
    with op.batch_alter_table("inv_valuation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inv_valuation_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "inv_move",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column(
            "from_location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "to_location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("lot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("unit_cost", sa.BigInteger(), nullable=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_type", sa.String(length=63), nullable=True),
        sa.Column("source_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=160), nullable=True),
        sa.Column(
            "origin_move_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.CheckConstraint(
            "state IN ('draft', 'reserved', 'done', 'cancelled')", name=op.f("ck_inv_move_state")
        ),
        sa.CheckConstraint(
            "from_location_id <> to_location_id", name=op.f("ck_inv_move_distinct_locations")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_inv_move_quantity_positive")),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= quantity", name=op.f("ck_inv_move_reserved_range")
        ),
        sa.ForeignKeyConstraint(
            ["from_location_id"],
            ["inv_location.id"],
            name=op.f("fk_inv_move_from_location_id_inv_location"),
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["inv_lot.id"], name=op.f("fk_inv_move_lot_id_inv_lot")
        ),
        sa.ForeignKeyConstraint(
            ["origin_move_id"], ["inv_move.id"], name=op.f("fk_inv_move_origin_move_id_inv_move")
        ),
        sa.ForeignKeyConstraint(
            ["sku_id"], ["inv_sku.id"], name=op.f("fk_inv_move_sku_id_inv_sku")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_move_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["to_location_id"],
            ["inv_location.id"],
            name=op.f("fk_inv_move_to_location_id_inv_location"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_move")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_inv_move_tenant_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("inv_move", schema=None) as batch_op:
        batch_op.create_index("ix_inv_move_lot_id", ["lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inv_move_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_inv_move_tenant_id_sku_id_state", ["tenant_id", "sku_id", "state"], unique=False
        )
        batch_op.create_index(
            "ix_inv_move_tenant_id_source", ["tenant_id", "source_type", "source_id"], unique=False
        )

    op.create_table(
        "inv_quant",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("sku_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "location_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "warehouse_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("lot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("lot_key", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reserved", sa.BigInteger(), nullable=False),
        sa.Column("in_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_inv_quant_quantity_nonnegative")),
        sa.CheckConstraint(
            "reserved >= 0 AND reserved <= quantity", name=op.f("ck_inv_quant_reserved_range")
        ),
        sa.ForeignKeyConstraint(
            ["location_id"], ["inv_location.id"], name=op.f("fk_inv_quant_location_id_inv_location")
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["inv_lot.id"], name=op.f("fk_inv_quant_lot_id_inv_lot")
        ),
        sa.ForeignKeyConstraint(
            ["sku_id"], ["inv_sku.id"], name=op.f("fk_inv_quant_sku_id_inv_sku")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["core_tenant.id"],
            name=op.f("fk_inv_quant_tenant_id_core_tenant"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["inv_warehouse.id"],
            name=op.f("fk_inv_quant_warehouse_id_inv_warehouse"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inv_quant")),
        sa.UniqueConstraint(
            "tenant_id",
            "sku_id",
            "location_id",
            "lot_key",
            name=op.f("uq_inv_quant_tenant_id_sku_id_location_id_lot_key"),
        ),
    )
    with op.batch_alter_table("inv_quant", schema=None) as batch_op:
        batch_op.create_index("ix_inv_quant_location_id", ["location_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inv_quant_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_inv_quant_tenant_id_sku_id_warehouse_id",
            ["tenant_id", "sku_id", "warehouse_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("inv_quant", schema=None) as batch_op:
        batch_op.drop_index("ix_inv_quant_tenant_id_sku_id_warehouse_id")
        batch_op.drop_index(batch_op.f("ix_inv_quant_tenant_id"))
        batch_op.drop_index("ix_inv_quant_location_id")

    op.drop_table("inv_quant")
    with op.batch_alter_table("inv_move", schema=None) as batch_op:
        batch_op.drop_index("ix_inv_move_tenant_id_source")
        batch_op.drop_index("ix_inv_move_tenant_id_sku_id_state")
        batch_op.drop_index(batch_op.f("ix_inv_move_tenant_id"))
        batch_op.drop_index("ix_inv_move_lot_id")

    op.drop_table("inv_move")
    with op.batch_alter_table("inv_valuation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inv_valuation_tenant_id"))

    op.drop_table("inv_valuation")
    with op.batch_alter_table("inv_lot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inv_lot_tenant_id"))

    op.drop_table("inv_lot")
    with op.batch_alter_table("inv_location", schema=None) as batch_op:
        batch_op.drop_index("ix_inv_location_warehouse_id")
        batch_op.drop_index(batch_op.f("ix_inv_location_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_inv_location_parent_id"))

    op.drop_table("inv_location")
    with op.batch_alter_table("inv_warehouse", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inv_warehouse_tenant_id"))

    op.drop_table("inv_warehouse")
    with op.batch_alter_table("inv_sku", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inv_sku_tenant_id"))

    op.drop_table("inv_sku")
