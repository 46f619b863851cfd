"""Users, memberships, tokens, sessions and login: the rules, independent of HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from erp_core.auth import security
from erp_core.auth.models import ApiToken, LoginThrottle, Membership, Role, User, UserSession
from erp_core.auth.permissions import effective, grants, valid_pattern
from erp_core.auth.principal import Principal
from erp_core.db.base import utcnow
from erp_core.db.session import bind_tenant, system_access
from erp_core.i18n import N_
from erp_core.settings import Settings
from erp_core.tenancy.models import Tenant

IP_FACTOR = 4
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AuthError(ValueError):
    """Invalid input for a user, role, membership or token (message is shown to the user);
    ``field`` names the input at fault, when there is one (forms show the message there)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LoginLocked(Exception):
    """Too many failed logins; try again after ``until``."""

    def __init__(self, until: datetime) -> None:
        super().__init__(
            N_("too many failed logins; try again after %(time)s UTC", time=f"{until:%H:%M:%S}")
        )
        self.until = until


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > 254:
        raise AuthError(N_("%(value)s is not a valid e-mail address", value=repr(email)), "email")
    return email


# --- users and memberships ---------------------------------------------------------------


def get_user(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(session: Session, email: str, password: str | None, name: str = "") -> User:
    email = normalize_email(email)
    if get_user(session, email) is not None:
        raise AuthError(N_("user %(email)s already exists", email=email), "email")
    pw_hash = None
    if password is not None:
        security.check_password_policy(password)
        pw_hash = security.hash_password(password)
    user = User(email=email, name=name.strip(), password_hash=pw_hash, is_active=True)
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    security.check_password_policy(password)
    user.password_hash = security.hash_password(password)


def role_by_name(session: Session, name: str) -> Role:
    role = session.scalar(select(Role).where(Role.name == name))
    if role is None:
        names = ", ".join(session.scalars(select(Role.name).order_by(Role.name)))
        raise AuthError(
            N_("no role %(name)s in this tenant (roles: %(names)s)", name=repr(name), names=names),
            "role",
        )
    return role


def add_member(session: Session, tenant: Tenant, user: User, role_name: str) -> Membership:
    bind_tenant(session, tenant.id)
    role = role_by_name(session, role_name)
    existing = session.scalar(select(Membership).where(Membership.user_id == user.id))
    if existing is not None:
        existing.role_id = role.id
        existing.is_active = True
        session.flush()
        return existing
    m = Membership(tenant_id=tenant.id, user_id=user.id, role_id=role.id)
    session.add(m)
    session.flush()
    return m


def validate_patterns(patterns: Iterable[str], known: Iterable[str]) -> list[str]:
    """Check permission patterns; an exact name must be a known permission."""
    known_set = set(known)
    out: list[str] = []
    for p in patterns:
        p = p.strip()
        if not valid_pattern(p):
            raise AuthError(
                N_("%(value)s is not a valid permission pattern", value=repr(p)), "permissions"
            )
        bare = p.lstrip("!")
        if "*" not in bare and bare not in known_set:
            raise AuthError(N_("unknown permission %(name)s", name=repr(bare)), "permissions")
        out.append(p)
    return out


# --- principals ---------------------------------------------------------------------------


def user_tenants(session: Session, user_id: int) -> list[Tenant]:
    """Tenants a user is an active member of (a cross-tenant lookup, by design)."""
    with system_access(session):
        return list(
            session.scalars(
                select(Tenant)
                .join(Membership, Membership.tenant_id == Tenant.id)
                .where(
                    Membership.user_id == user_id,
                    Membership.is_active.is_(True),
                    Tenant.is_active.is_(True),
                )
                .order_by(Tenant.name)
            )
        )


def principal_for(
    session: Session,
    user: User,
    tenant: Tenant,
    known_permissions: Iterable[str],
    *,
    via: str,
    scopes: list[str] | None = None,
    token_id: int | None = None,
    user_session: UserSession | None = None,
) -> Principal | None:
    """The user's principal in ``tenant``, or None if not an active member."""
    bind_tenant(session, tenant.id)
    row = session.execute(
        select(Membership, Role)
        .join(Role, Role.id == Membership.role_id)
        .where(Membership.user_id == user.id, Membership.is_active.is_(True))
    ).first()
    if row is None or not user.is_active or not tenant.is_active:
        return None
    _, role = row
    known = list(known_permissions)
    perms = effective(role.permissions, known)
    if scopes is not None:
        perms = frozenset(p for p in perms if grants(scopes, p))
    return Principal(
        user_id=user.id,
        email=user.email,
        name=user.name,
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        role=role.name,
        permissions=perms,
        via=via,  # type: ignore[arg-type]
        token_id=token_id,
        session_id=user_session.id if user_session else None,
        csrf_token=user_session.csrf_token if user_session else None,
    )


# --- API tokens ---------------------------------------------------------------------------


def create_token(
    session: Session,
    tenant: Tenant,
    user: User,
    *,
    name: str,
    scopes: list[str],
    known_permissions: Iterable[str],
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret token string (shown once)."""
    bind_tenant(session, tenant.id)
    if (
        session.scalar(
            select(Membership.id).where(
                Membership.user_id == user.id, Membership.is_active.is_(True)
            )
        )
        is None
    ):
        raise AuthError(
            N_(
                "user %(email)s is not a member of tenant %(tenant)s",
                email=user.email,
                tenant=tenant.slug,
            )
        )
    scopes = validate_patterns(scopes or ["*"], known_permissions)
    if expires_at is not None and expires_at <= utcnow():
        raise AuthError(N_("expiry must be in the future"), "expires_at")
    token, key, secret_hash = security.new_api_token()
    row = ApiToken(
        tenant_id=tenant.id,
        user_id=user.id,
        name=name.strip()[:200],
        key=key,
        secret_hash=secret_hash,
        scopes=scopes,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def authenticate_token(session: Session, token: str) -> ApiToken | None:
    """Find a valid token row (not revoked, not expired) for ``token``; None otherwise."""
    parts = security.split_api_token(token)
    if parts is None:
        return None
    key, secret = parts
    with system_access(session):
        row = session.scalar(select(ApiToken).where(ApiToken.key == key))
    if row is None or not security.same(row.secret_hash, security.digest(secret)):
        return None
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    return row


# --- browser sessions ---------------------------------------------------------------------


def create_session(
    session: Session, user: User, tenant: Tenant, settings: Settings
) -> tuple[UserSession, str]:
    key = security.new_session_key()
    row = UserSession(
        key_hash=security.digest(key),
        user_id=user.id,
        active_tenant_id=tenant.id,
        csrf_token=security.new_csrf_token(),
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
    )
    session.add(row)
    session.flush()
    return row, key


def find_session(session: Session, key: str) -> UserSession | None:
    row = session.scalar(select(UserSession).where(UserSession.key_hash == security.digest(key)))
    if row is None or row.expires_at <= utcnow():
        return None
    return row


def end_session(session: Session, key: str) -> None:
    session.execute(delete(UserSession).where(UserSession.key_hash == security.digest(key)))


# --- login throttling ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User
    tenants: list[Tenant]


def _throttle_rows(session: Session, keys: list[str]) -> dict[str, LoginThrottle]:
    return {
        r.key: r for r in session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    }


def check_lock(session: Session, keys: list[str]) -> None:
    now = utcnow()
    for row in _throttle_rows(session, keys).values():
        if row.locked_until is not None and row.locked_until > now:
            raise LoginLocked(row.locked_until)


def note_failure(session: Session, keys: list[str], settings: Settings) -> datetime | None:
    """Count a failure against each key; return the lock expiry if one was just set."""
    now = utcnow()
    rows = _throttle_rows(session, keys)
    locked: datetime | None = None
    window = timedelta(minutes=settings.login_window_minutes)
    for key in keys:
        row = rows.get(key)
        if row is None:
            row = LoginThrottle(key=key, failures=0, window_start=now)
            session.add(row)
        if now - row.window_start > window:
            row.failures, row.window_start, row.locked_until = 0, now, None
        row.failures += 1
        # An address (an office behind one NAT) gets more tries than one account.
        limit = settings.login_max_failures * (IP_FACTOR if key.startswith("ip:") else 1)
        if row.failures >= limit:
            row.locked_until = now + timedelta(minutes=settings.login_lock_minutes)
            locked = row.locked_until
    session.flush()
    return locked


def clear_failures(session: Session, keys: list[str]) -> None:
    session.execute(delete(LoginThrottle).where(LoginThrottle.key.in_(keys)))


def throttle_keys(email: str, ip: str) -> list[str]:
    return [f"email:{email.strip().lower()}", f"ip:{ip}"]
