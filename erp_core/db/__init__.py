"""Database layer: declarative base, tenant scoping, engines and sessions."""

from erp_core.db.base import Base, TenantScoped, utcnow
from erp_core.db.session import Database, TenantValue, bind_tenant, system_access

__all__ = [
    "Base",
    "Database",
    "TenantScoped",
    "TenantValue",
    "bind_tenant",
    "system_access",
    "utcnow",
]
