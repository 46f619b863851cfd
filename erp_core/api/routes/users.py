"""Members of the current tenant and roles."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from erp_core.api.params import Id
from erp_core.audit.service import record
from erp_core.auth import service
from erp_core.auth.deps import DbSession, require
from erp_core.auth.models import Membership, Role, User
from erp_core.auth.principal import Principal
from erp_core.tenancy.models import Tenant

router = APIRouter(tags=["users"])


class MemberOut(BaseModel):
    id: int
    email: str
    name: str
    role: str
    is_active: bool


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254)
    name: str = Field(default="", max_length=200)
    role: str = Field(max_length=63)
    # at most what the login form accepts, or the user could never sign in
    password: str | None = Field(
        default=None, max_length=1024, description="required when the user is new"
    )


class MemberPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = None
    is_active: bool | None = None


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    title: str
    permissions: list[str]
    builtin: bool


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{1,62}$")
    title: str = Field(default="", max_length=200)
    permissions: list[str]


class RolePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=200)
    permissions: list[str] | None = None


def _members(db: DbSession, user_id: int | None = None) -> list[MemberOut]:
    q = (
        select(Membership, User, Role)
        .join(User, User.id == Membership.user_id)
        .join(Role, Role.id == Membership.role_id)
        .order_by(User.email)
    )
    if user_id is not None:
        q = q.where(User.id == user_id)
    return [
        MemberOut(id=u.id, email=u.email, name=u.name, role=r.name, is_active=m.is_active)
        for m, u, r in db.execute(q)
    ]


def _member(db: DbSession, user_id: int) -> MemberOut:
    found = _members(db, user_id)
    if not found:
        raise HTTPException(404, f"no user {user_id} in this tenant")
    return found[0]


@router.get("/users", response_model=list[MemberOut])
def list_users(
    db: DbSession, p: Principal = Depends(require("core.users.read"))
) -> list[MemberOut]:
    return _members(db)


@router.get("/users/{user_id}", response_model=MemberOut)
def get_user(
    user_id: Id, db: DbSession, p: Principal = Depends(require("core.users.read"))
) -> MemberOut:
    return _member(db, user_id)


@router.post("/users", response_model=MemberOut, status_code=201)
def add_user(
    body: MemberIn, db: DbSession, p: Principal = Depends(require("core.users.manage"))
) -> MemberOut:
    tenant = db.get(Tenant, p.tenant_id)
    assert tenant is not None
    user = service.get_user(db, body.email)
    if user is None:
        if not body.password:
            raise service.AuthError("password is required for a new user")
        user = service.create_user(db, body.email, body.password, body.name)
    service.add_member(db, tenant, user, body.role)
    record(
        db,
        "user.added",
        tenant_id=p.tenant_id,
        actor=p.label,
        actor_user_id=p.user_id,
        target=user.email,
        details={"role": body.role},
    )
    db.commit()
    return _member(db, user.id)


@router.patch("/users/{user_id}", response_model=MemberOut)
def change_user(
    user_id: Id,
    body: MemberPatch,
    db: DbSession,
    p: Principal = Depends(require("core.users.manage")),
) -> MemberOut:
    m = db.scalar(select(Membership).where(Membership.user_id == user_id))
    if m is None:
        raise HTTPException(404, f"no user {user_id} in this tenant")
    details: dict[str, object] = {}
    if body.role is not None:
        m.role_id = service.role_by_name(db, body.role).id
        details["role"] = body.role
    if body.is_active is not None:
        if user_id == p.user_id and not body.is_active:
            raise service.AuthError("you cannot deactivate yourself")
        m.is_active = body.is_active
        details["is_active"] = body.is_active
    record(
        db,
        "permission.changed",
        tenant_id=p.tenant_id,
        actor=p.label,
        actor_user_id=p.user_id,
        target=f"user:{user_id}",
        details=details,
    )
    db.commit()
    return _member(db, user_id)


@router.get("/roles", response_model=list[RoleOut])
def list_roles(db: DbSession, p: Principal = Depends(require("core.roles.read"))) -> list[Role]:
    return list(db.scalars(select(Role).order_by(Role.name)))


@router.get("/roles/{role_id}", response_model=RoleOut)
def get_role(
    role_id: Id, db: DbSession, p: Principal = Depends(require("core.roles.read"))
) -> Role:
    role = db.get(Role, role_id)
    if role is None:
        raise HTTPException(404, f"no role {role_id} in this tenant")
    return role


@router.post("/roles", response_model=RoleOut, status_code=201)
def create_role(
    body: RoleIn,
    request: Request,
    db: DbSession,
    p: Principal = Depends(require("core.roles.manage")),
) -> Role:
    if db.scalar(select(Role.id).where(Role.name == body.name)) is not None:
        raise service.AuthError(f"role {body.name!r} already exists")
    perms = service.validate_patterns(body.permissions, request.app.state.known_permissions)
    role = Role(tenant_id=p.tenant_id, name=body.name, title=body.title, permissions=perms)
    db.add(role)
    db.flush()
    record(
        db,
        "permission.changed",
        tenant_id=p.tenant_id,
        actor=p.label,
        actor_user_id=p.user_id,
        target=f"role:{role.name}",
        details={"permissions": perms},
    )
    db.commit()
    return role


@router.patch("/roles/{role_id}", response_model=RoleOut)
def change_role(
    role_id: Id,
    body: RolePatch,
    request: Request,
    db: DbSession,
    p: Principal = Depends(require("core.roles.manage")),
) -> Role:
    role = db.get(Role, role_id)
    if role is None:
        raise HTTPException(404, f"no role {role_id} in this tenant")
    if body.title is not None:
        role.title = body.title
    if body.permissions is not None:
        if role.name == "owner":
            raise service.AuthError("the owner role always has every permission")
        role.permissions = service.validate_patterns(
            body.permissions, request.app.state.known_permissions
        )
    record(
        db,
        "permission.changed",
        tenant_id=p.tenant_id,
        actor=p.label,
        actor_user_id=p.user_id,
        target=f"role:{role.name}",
        details={"permissions": role.permissions},
    )
    db.commit()
    return role


@router.delete("/roles/{role_id}", status_code=204)
def delete_role(
    role_id: Id, db: DbSession, p: Principal = Depends(require("core.roles.manage"))
) -> None:
    role = db.get(Role, role_id)
    if role is None:
        raise HTTPException(404, f"no role {role_id} in this tenant")
    if role.builtin:
        raise service.AuthError(f"built-in role {role.name!r} cannot be deleted")
    if db.scalar(select(Membership.id).where(Membership.role_id == role.id).limit(1)):
        raise service.AuthError(f"role {role.name!r} is still assigned to users")
    db.delete(role)
    record(
        db,
        "permission.changed",
        tenant_id=p.tenant_id,
        actor=p.label,
        actor_user_id=p.user_id,
        target=f"role:{role.name}",
        details={"deleted": True},
    )
    db.commit()
