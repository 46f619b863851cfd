"""Kernel built-in hook implementations of the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from erp_core.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from erp_core.inventory.types import StockValuation
    from erp_core.tenancy.models import Tenant


@hookimpl
def erp_tenant_created(session: Session, tenant: Tenant) -> None:
    """Every tenant starts with the default chart of accounts and account mapping."""
    from erp_core.ledger.service import ensure_chart

    ensure_chart(session, tenant)


@hookimpl
def erp_stock_valued(
    session: Session, tenant_id: int, valuations: Sequence[StockValuation]
) -> None:
    """Post the entries of valued stock moves (receipt, delivery, count difference, ...),
    together."""
    from erp_core.db.session import session_tenant
    from erp_core.ledger.service import LedgerError, post_valuations

    if session_tenant(session) != tenant_id:
        raise LedgerError(f"stock valuation for tenant {tenant_id} in another tenant's session")
    post_valuations(session, valuations, returning=False)


@hookimpl
def erp_ledger_source_url(source_type: str, source_id: str) -> str | None:
    """Entries of stock valuation (``post_valuation``) link to their stock move."""
    if source_type == "stock_move" and source_id.isdigit():
        return f"/inventory/moves/{source_id}"
    return None
