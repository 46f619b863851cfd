"""Read-side queries of the order pool, shared by the API and the pages."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from erp_oms.models import Order


def order_page(
    session: Session,
    *,
    status: str | None = None,
    channel_account_id: int | None = None,
    hold_code: str | None = None,
    tag: str | None = None,
    text: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> tuple[list[Order], int | None]:
    """Orders newest first (keyset on id), and the ``after_id`` of the next page."""
    q = select(Order)
    if status:
        q = q.where(Order.status == status)
    if channel_account_id is not None:
        q = q.where(Order.channel_account_id == channel_account_id)
    if hold_code:
        q = q.where(Order.hold_code == hold_code)
    if text:
        t = text.strip()
        q = q.where(
            or_(
                Order.platform_order_id == t,
                Order.buyer_nick == t,
                Order.receiver_phone == t,
                Order.receiver_name == t,
            )
        )
    if after_id is not None:
        q = q.where(Order.id < after_id)
    rows: list[Order] = []
    # tags live in a JSON list: filtered here, page by page, so the keyset stays exact
    batch = q.order_by(Order.id.desc()).limit(limit + 1 if not tag else 500)
    for row in session.scalars(batch):
        if tag and tag not in (row.tags or []):
            continue
        rows.append(row)
        if len(rows) > limit:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
