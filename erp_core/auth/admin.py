"""Managing a tenant's members, roles and API tokens: the use cases the JSON API and the web UI
both call. Each checks its rules, makes the change and records it in the audit log; the caller
commits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.audit.service import record
from erp_core.auth import service
from erp_core.auth.models import ApiToken, Membership, Role, User
from erp_core.auth.principal import Principal
from erp_core.auth.service import AuthError
from erp_core.db.base import utcnow
from erp_core.i18n import N_
from erp_core.tenancy.models import Tenant

ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{1,62}$")


@dataclass(frozen=True, slots=True)
class Member:
    """A user as a member of the current tenant."""

    id: int
    email: str
    name: str
    role: str
    is_active: bool


def members(session: Session, user_id: int | None = None) -> list[Member]:
    q = (
        select(Membership, User, Role)
        .join(User, User.id == Membership.user_id)
        .join(Role, Role.id == Membership.role_id)
        .order_by(User.email)
    )
    if user_id is not None:
        q = q.where(User.id == user_id)
    return [
        Member(id=u.id, email=u.email, name=u.name, role=r.name, is_active=m.is_active)
        for m, u, r in session.execute(q)
    ]


def add_member(
    session: Session,
    by: Principal,
    *,
    email: str,
    role: str,
    name: str = "",
    password: str | None = None,
) -> User:
    """Add a user to the tenant with ``role``; a new user needs a password."""
    tenant = session.get(Tenant, by.tenant_id)
    assert tenant is not None
    email = service.normalize_email(email)
    user = service.get_user(session, email)
    if user is None:
        if not password:
            raise AuthError(N_("password is required for a new user"), "password")
        user = service.create_user(session, email, password, name)
    service.add_member(session, tenant, user, role)
    record(
        session,
        "user.added",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=user.email,
        details={"role": role},
    )
    return user


def change_member(
    session: Session,
    by: Principal,
    user_id: int,
    *,
    role: str | None = None,
    is_active: bool | None = None,
) -> bool:
    """Change a member's role or (de)activate them; False if no such member in this tenant."""
    m = session.scalar(select(Membership).where(Membership.user_id == user_id))
    if m is None:
        return False
    details: dict[str, object] = {}
    if role is not None:
        m.role_id = service.role_by_name(session, role).id
        details["role"] = role
    if is_active is not None:
        if user_id == by.user_id and not is_active:
            raise AuthError(N_("you cannot deactivate yourself"), "is_active")
        m.is_active = is_active
        details["is_active"] = is_active
    record(
        session,
        "permission.changed",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=f"user:{user_id}",
        details=details,
    )
    session.flush()
    return True


def create_role(
    session: Session,
    by: Principal,
    *,
    name: str,
    title: str,
    permissions: Iterable[str],
    known: Iterable[str],
) -> Role:
    if not ROLE_NAME_RE.match(name):
        raise AuthError(
            N_(
                "role name %(value)s must be 2-63 lower-case letters, digits, '-' or '_', "
                "starting with a letter",
                value=repr(name),
            ),
            "name",
        )
    if session.scalar(select(Role.id).where(Role.name == name)) is not None:
        raise AuthError(N_("role %(name)s already exists", name=repr(name)), "name")
    perms = service.validate_patterns(permissions, known)
    role = Role(tenant_id=by.tenant_id, name=name, title=title.strip(), permissions=perms)
    session.add(role)
    session.flush()
    record(
        session,
        "permission.changed",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=f"role:{role.name}",
        details={"permissions": perms},
    )
    return role


def change_role(
    session: Session,
    by: Principal,
    role: Role,
    *,
    title: str | None = None,
    permissions: Iterable[str] | None = None,
    known: Iterable[str],
) -> Role:
    if title is not None:
        role.title = title.strip()
    if permissions is not None:
        if role.name == "owner":
            raise AuthError(N_("the owner role always has every permission"), "permissions")
        role.permissions = service.validate_patterns(permissions, known)
    record(
        session,
        "permission.changed",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=f"role:{role.name}",
        details={"permissions": role.permissions},
    )
    session.flush()
    return role


def delete_role(session: Session, by: Principal, role: Role) -> None:
    if role.builtin:
        raise AuthError(N_("built-in role %(name)s cannot be deleted", name=repr(role.name)))
    if session.scalar(select(Membership.id).where(Membership.role_id == role.id).limit(1)):
        raise AuthError(N_("role %(name)s is still assigned to users", name=repr(role.name)))
    session.delete(role)
    record(
        session,
        "permission.changed",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=f"role:{role.name}",
        details={"deleted": True},
    )
    session.flush()


def issue_token(
    session: Session,
    by: Principal,
    *,
    name: str,
    scopes: list[str],
    known: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create an API token for the caller; returns the row and the secret (shown once)."""
    if not name.strip():
        raise AuthError(N_("a token needs a name"), "name")
    if expires_at is not None and expires_at.tzinfo is None:
        raise AuthError(N_("expires_at must include a time zone"), "expires_at")
    tenant = session.get(Tenant, by.tenant_id)
    user = session.get(User, by.user_id)
    assert tenant is not None and user is not None
    row, secret = service.create_token(
        session,
        tenant,
        user,
        name=name,
        scopes=scopes,
        known_permissions=known,
        expires_at=expires_at,
    )
    record(
        session,
        "token.created",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=row.name,
        details={"token_id": row.id, "scopes": row.scopes},
    )
    return row, secret


def revoke_token(session: Session, by: Principal, row: ApiToken) -> bool:
    """Revoke ``row``; False if it was revoked already."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    record(
        session,
        "token.revoked",
        tenant_id=by.tenant_id,
        actor=by.label,
        actor_user_id=by.user_id,
        target=row.name,
        details={"token_id": row.id},
    )
    session.flush()
    return True
