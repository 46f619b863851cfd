"""Installed plugins and their enablement for the current tenant."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from erp_core.auth.deps import DbSession, require
from erp_core.auth.principal import Principal
from erp_core.plugins.registry import PluginRegistry
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import disable_plugin, enable_plugin, enabled_plugins

router = APIRouter(prefix="/plugins", tags=["plugins"])


class PluginOut(BaseModel):
    name: str
    kind: str
    title: str
    description: str
    version: str
    stage: int
    depends: list[str]
    permissions: list[str]
    state: str  # enabled | available | broken
    error: str | None = None


class EnableResult(BaseModel):
    enabled: list[str]


def _listing(registry: PluginRegistry, enabled: frozenset[str]) -> list[PluginOut]:
    out = [
        PluginOut(
            name=m.name,
            kind=m.kind,
            title=m.title,
            description=m.description,
            version=m.version,
            stage=m.stage,
            depends=list(m.depends),
            permissions=[x.name for x in m.permissions],
            state="enabled" if m.name in enabled else "available",
        )
        for m in registry.manifests()
    ]
    out += [
        PluginOut(
            name=b.name,
            kind=b.group.split(".")[-1].rstrip("s"),
            title=b.name,
            description="",
            version="",
            stage=0,
            depends=[],
            permissions=[],
            state="broken",
            error=b.error,
        )
        for b in registry.broken
    ]
    return out


@router.get("", response_model=list[PluginOut])
def list_plugins(
    request: Request, db: DbSession, p: Principal = Depends(require("core.plugins.read"))
) -> list[PluginOut]:
    return _listing(request.app.state.registry, enabled_plugins(db, p.tenant_id))


@router.post("/{name}/enable", response_model=EnableResult)
def enable(
    name: str,
    request: Request,
    db: DbSession,
    with_dependencies: bool = False,
    p: Principal = Depends(require("core.plugins.manage")),
) -> EnableResult:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    registry: PluginRegistry = request.app.state.registry
    if name not in registry.plugins and not any(b.name == name for b in registry.broken):
        raise HTTPException(404, f"plugin {name!r} is not installed")
    newly = enable_plugin(
        db,
        registry,
        tenant,
        name,
        with_dependencies=with_dependencies,
        actor=p.label,
        actor_user_id=p.user_id,
    )
    db.commit()
    return EnableResult(enabled=newly)


@router.post("/{name}/disable", status_code=204)
def disable(
    name: str,
    request: Request,
    db: DbSession,
    p: Principal = Depends(require("core.plugins.manage")),
) -> None:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    registry: PluginRegistry = request.app.state.registry
    if name not in registry.plugins and not any(b.name == name for b in registry.broken):
        raise HTTPException(404, f"plugin {name!r} is not installed")
    disable_plugin(db, registry, tenant, name, actor=p.label, actor_user_id=p.user_id)
    db.commit()
