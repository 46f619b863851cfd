"""The current tenant and the tenants the caller belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from erp_core.auth.deps import CurrentPrincipal, DbSession, require
from erp_core.auth.principal import Principal
from erp_core.auth.service import user_tenants
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import installed_themes, update_tenant

router = APIRouter(prefix="/tenants", tags=["tenants"])


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    slug: str
    name: str
    currency: str
    timezone: str
    locale: str
    theme: str


class TenantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    currency: str | None = None
    timezone: str | None = None
    locale: str | None = None
    theme: str | None = Field(default=None, max_length=63, description="an installed theme")


@router.get("", response_model=list[TenantOut])
def list_my_tenants(db: DbSession, principal: CurrentPrincipal) -> list[Tenant]:
    """Tenants the authenticated user belongs to (a token sees only its own tenant)."""
    if principal.via == "token":
        t = db.get(Tenant, principal.tenant_id)
        return [t] if t else []
    return user_tenants(db, principal.user_id)


@router.get("/current", response_model=TenantOut)
def get_current(db: DbSession, p: Principal = Depends(require("core.tenant.read"))) -> Tenant:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    return tenant


@router.patch("/current", response_model=TenantOut)
def patch_current(
    body: TenantPatch,
    request: Request,
    db: DbSession,
    p: Principal = Depends(require("core.tenant.manage")),
) -> Tenant:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    update_tenant(
        db,
        tenant,
        body.model_dump(exclude_none=True),
        themes=installed_themes(request.app.state.registry),
        actor=p.label,
        actor_user_id=p.user_id,
    )
    db.commit()
    return tenant
