"""FastAPI dependencies: database session, the request's principal, permission checks.

Every route declares what it needs: ``Depends(require("core.users.read"))`` (which implies an
authenticated principal acting for one tenant), or ``Depends(public)`` for the few routes
anyone may call (health checks, the login form).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from erp_core.audit.service import record
from erp_core.auth import service
from erp_core.auth.models import User
from erp_core.auth.principal import Principal
from erp_core.auth.security import same
from erp_core.db.base import utcnow
from erp_core.db.session import bind_tenant, system_access
from erp_core.i18n import N_
from erp_core.tenancy.models import Tenant
from erp_core.tenancy.service import enabled_plugins

SESSION_COOKIE = "erp_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_USE_AUDIT_EVERY = timedelta(hours=1)


def get_db(request: Request) -> Iterator[Session]:
    """A session for this request. Handlers commit what they change; the rest is rolled back."""
    db = request.app.state.db.session()
    try:
        yield db
    finally:
        db.close()


DbSession = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def public() -> None:
    """Marks a route that needs no authentication."""


public.erp_public = True  # type: ignore[attr-defined]


async def _check_csrf(request: Request, expected: str | None) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # cached on the request; handlers can still read it
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not same(sent, expected):
        raise HTTPException(403, N_("CSRF token missing or invalid; reload the page and try again"))


def _resolve(request: Request, db: Session) -> Principal | None:
    state = request.app.state
    known = state.known_permissions
    auth = request.headers.get("authorization", "")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(
                401,
                "Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        row = service.authenticate_token(db, token.strip())
        if row is None:
            record(
                db,
                "token.rejected",
                tenant_id=None,
                ip=client_ip(request),
                outcome="denied",
                details={"path": request.url.path},
            )
            db.commit()
            raise HTTPException(
                401, "invalid, expired or revoked API token", headers={"WWW-Authenticate": "Bearer"}
            )
        with system_access(db):
            user = db.get(User, row.user_id)
            tenant = db.get(Tenant, row.tenant_id)
        assert user is not None and tenant is not None
        principal = service.principal_for(
            db, user, tenant, known, via="token", scopes=row.scopes, token_id=row.id
        )
        if principal is None:
            raise HTTPException(
                401,
                "the token's user is no longer a member of its tenant",
                headers={"WWW-Authenticate": "Bearer"},
            )
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > TOKEN_USE_AUDIT_EVERY:
            row.last_used_at = now
            record(
                db,
                "token.used",
                tenant_id=tenant.id,
                actor=principal.label,
                actor_user_id=user.id,
                actor_token_id=row.id,
                ip=client_ip(request),
                target=row.name,
                details={"path": request.url.path},
            )
            db.commit()
            bind_tenant(db, tenant.id)
        return principal
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        return None
    us = service.find_session(db, key)
    if us is None:
        return None
    user = db.get(User, us.user_id)
    tenant = db.get(Tenant, us.active_tenant_id)
    if user is None or tenant is None:
        return None
    return service.principal_for(db, user, tenant, known, via="session", user_session=us)


async def optional_principal(request: Request, db: DbSession) -> Principal | None:
    """The principal if the request is authenticated; binds ``db`` to its tenant."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    from starlette.concurrency import run_in_threadpool

    principal = await run_in_threadpool(_resolve, request, db)
    if principal is not None:
        if principal.via == "session":
            await _check_csrf(request, principal.csrf_token)
        request.state.principal = principal
        bind_tenant(db, principal.tenant_id)
    return principal


async def current_principal(
    request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]
) -> Principal:
    if principal is None:
        raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return principal


current_principal.erp_authenticated = True  # type: ignore[attr-defined]

CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[..., Any]:
    """Dependency: the request's principal must hold ``permission`` (403 otherwise)."""

    async def _require(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise HTTPException(403, N_("permission %(name)s is required", name=repr(permission)))
        return principal

    _require.erp_permission = permission  # type: ignore[attr-defined]
    _require.__name__ = f"require_{permission.replace('.', '_')}"
    return _require


def require_plugin(name: str) -> Callable[..., Any]:
    """Dependency on every route of plugin ``name``: 404 unless the tenant enabled it."""

    def _require_plugin(request: Request, principal: CurrentPrincipal, db: DbSession) -> None:
        if name not in enabled_plugins(db, principal.tenant_id):
            raise HTTPException(404, "Not Found")
        request.state.plugin = name

    _require_plugin.erp_plugin = name  # type: ignore[attr-defined]
    return _require_plugin


def get_hooks(request: Request, principal: CurrentPrincipal, db: DbSession) -> Any:
    """The hooks of the kernel and the plugins the principal's tenant enabled."""
    return request.app.state.registry.hooks_for(enabled_plugins(db, principal.tenant_id))


Hooks = Annotated[Any, Depends(get_hooks)]
