"""inventory: indexes of stock moves for the moves list and for reservations

The moves list pages by keyset over (created_at, id), newest first, within a tenant: the
index (tenant_id, created_at, id) serves every page at the cost of the first one, with or
without the state, location, source and date filters. A move's follow-ups (the moves whose
``origin_move_id`` is it: transfer legs and splits) are found by their own index, which is
also what the foreign key needs when a move is deleted.

A reservation inserts a move, and every index of ``inv_move`` costs it time while the reserved
quant's row is locked: the lot and origin indexes become partial (most moves have neither),
and the index on ``tenant_id`` alone goes, since the indexes that look moves up by tenant all
start with it.

Revision ID: 0004_inventory_list_indexes
Revises: i0000001
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_inventory_list_indexes"
down_revision = "i0000001"
branch_labels = None
depends_on = None


def _not_null(column: str) -> dict[str, Any]:
    cond = sa.text(f"{column} IS NOT NULL")
    return {"postgresql_where": cond, "sqlite_where": cond}


def upgrade() -> None:
    op.create_index(
        "ix_inv_move_tenant_id_created_at",
        "inv_move",
        ["tenant_id", "created_at", "id"],
        unique=False,
    )
    op.create_index(
        "ix_inv_move_origin_move_id", "inv_move", ["origin_move_id"], **_not_null("origin_move_id")
    )
    op.drop_index("ix_inv_move_lot_id", table_name="inv_move")
    op.create_index("ix_inv_move_lot_id", "inv_move", ["lot_id"], **_not_null("lot_id"))
    op.drop_index("ix_inv_move_tenant_id", table_name="inv_move")


def downgrade() -> None:
    op.create_index("ix_inv_move_tenant_id", "inv_move", ["tenant_id"])
    op.drop_index("ix_inv_move_lot_id", table_name="inv_move")
    op.create_index("ix_inv_move_lot_id", "inv_move", ["lot_id"])
    op.drop_index("ix_inv_move_origin_move_id", table_name="inv_move")
    op.drop_index("ix_inv_move_tenant_id_created_at", table_name="inv_move")
