"""Members of the current tenant and roles."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from erp_core.api.params import Id
from erp_core.auth import admin
from erp_core.auth.admin import ROLE_NAME_RE
from erp_core.auth.deps import DbSession, require
from erp_core.auth.models import Role
from erp_core.auth.principal import Principal

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
    name: str = Field(pattern=ROLE_NAME_RE.pattern)
    title: str = Field(default="", max_length=200)
    permissions: list[str]


class RolePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, max_length=200)
    permissions: list[str] | None = None


def _member(db: DbSession, user_id: int) -> MemberOut:
    found = admin.members(db, user_id)
    if not found:
        raise HTTPException(404, f"no user {user_id} in this tenant")
    m = found[0]
    return MemberOut(id=m.id, email=m.email, name=m.name, role=m.role, is_active=m.is_active)


@router.get("/users", response_model=list[MemberOut])
def list_users(
    db: DbSession, p: Principal = Depends(require("core.users.read"))
) -> list[MemberOut]:
    return [
        MemberOut(id=m.id, email=m.email, name=m.name, role=m.role, is_active=m.is_active)
        for m in admin.members(db)
    ]


@router.get("/users/{user_id}", response_model=MemberOut)
def get_user(
    user_id: Id, db: DbSession, p: Principal = Depends(require("core.users.read"))
) -> MemberOut:
    return _member(db, user_id)


@router.post("/users", response_model=MemberOut, status_code=201)
def add_user(
    body: MemberIn, db: DbSession, p: Principal = Depends(require("core.users.manage"))
) -> MemberOut:
    user = admin.add_member(
        db, p, email=body.email, role=body.role, name=body.name, password=body.password
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
    if not admin.change_member(db, p, user_id, role=body.role, is_active=body.is_active):
        raise HTTPException(404, f"no user {user_id} in this tenant")
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
    role = admin.create_role(
        db,
        p,
        name=body.name,
        title=body.title,
        permissions=body.permissions,
        known=request.app.state.known_permissions,
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
    admin.change_role(
        db,
        p,
        role,
        title=body.title,
        permissions=body.permissions,
        known=request.app.state.known_permissions,
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
    admin.delete_role(db, p, role)
    db.commit()
