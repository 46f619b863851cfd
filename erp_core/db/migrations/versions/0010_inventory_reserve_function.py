"""inventory: PostgreSQL function for the single-quant reservation

Revision ID: c0000006
Revises: c0000005
Create Date: 2026-11-30 14:30:00.000000

The reservation of an untracked SKU that one quant can serve in full, in one round trip:
look up the SKU, warehouse and destination, take the oldest quant with stock (FIFO), if it can serve
it all, without locking it; insert the reserved move, and only then take the quantity with a
conditional update. So the hot quant's row lock is taken by the transaction's last write and
held only from there to COMMIT: the move's insert, index entries and foreign-key checks run
before it. Row-level security applies (the function runs as its caller). Quantities are raw
scaled integers. A returned row without ``move_id`` means "not served here": the caller's
general statements decide (and nothing was written). No row: unknown SKU or warehouse.
"""

from __future__ import annotations

from alembic import op

revision = "c0000006"
down_revision = "c0000005"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE FUNCTION erp_inv_reserve_one(
    p_tid bigint, p_sku text, p_wh text, p_dst text, p_take bigint, p_places integer,
    p_now timestamptz, p_stype text, p_sid text, p_key text, p_ref text
) RETURNS TABLE (sku_id bigint, warehouse_id bigint, move_id bigint,
                 from_location_id bigint, quant_id bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_decimals integer;
    v_tracking text;
    v_dst bigint;
    v_quant bigint;
    v_loc bigint;
    v_free bigint;
    v_move bigint;
BEGIN
    SELECT k.id, k.decimals, k.tracking, w.id,
           (SELECT l.id FROM inv_location l
             WHERE l.tenant_id = p_tid AND l.path = p_dst AND l.kind = 'stock')
      INTO sku_id, v_decimals, v_tracking, warehouse_id, v_dst
      FROM inv_sku k
      JOIN inv_warehouse w ON w.tenant_id = k.tenant_id AND w.code = p_wh
     WHERE k.tenant_id = p_tid AND k.code = p_sku;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF v_tracking <> 'none' OR v_decimals < p_places OR v_dst IS NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT q.id, q.location_id, q.quantity - q.reserved INTO v_quant, v_loc, v_free
      FROM inv_quant q
     WHERE q.tenant_id = p_tid AND q.sku_id = erp_inv_reserve_one.sku_id
       AND q.warehouse_id = erp_inv_reserve_one.warehouse_id
       AND q.quantity > q.reserved
     ORDER BY q.in_date, q.id
     LIMIT 1;
    IF NOT FOUND OR v_free < p_take THEN  -- FIFO: the oldest stock must serve it all
        RETURN NEXT;
        RETURN;
    END IF;
    INSERT INTO inv_move (tenant_id, sku_id, quantity, reserved, from_location_id,
                          to_location_id, lot_id, state, created_at, source_type, source_id,
                          idempotency_key, origin_move_id, reference)
    VALUES (p_tid, erp_inv_reserve_one.sku_id, p_take, p_take, v_loc, v_dst, NULL, 'reserved',
            p_now, p_stype, p_sid, p_key, NULL, p_ref)
    RETURNING id INTO v_move;
    UPDATE inv_quant q SET reserved = q.reserved + p_take
     WHERE q.id = v_quant AND q.tenant_id = p_tid AND q.quantity - q.reserved >= p_take;
    IF NOT FOUND THEN  -- taken by a concurrent reservation since the look-up
        DELETE FROM inv_move m WHERE m.id = v_move;
        RETURN NEXT;
        RETURN;
    END IF;
    move_id := v_move;
    from_location_id := v_loc;
    quant_id := v_quant;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS erp_inv_reserve_one("
            "bigint, text, text, text, bigint, integer, timestamptz, text, text, text, text)"
        )
