"""Kernel built-in hook implementations of the inventory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from erp_core.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from erp_core.tenancy.models import Tenant


@hookimpl
def erp_tenant_created(session: Session, tenant: Tenant) -> None:
    """Every tenant gets its virtual locations (supplier, customer, adjustment, scrap,
    transit) at once (older tenants got them from migration 0005)."""
    from erp_core.inventory.service import ensure_virtual_locations

    ensure_virtual_locations(session, tenant)
