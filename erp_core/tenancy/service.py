"""Creating tenants and enabling or disabling plugins for them."""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from erp_core.audit.service import record
from erp_core.auth.models import Role
from erp_core.auth.permissions import DEFAULT_ROLES
from erp_core.db.base import utcnow
from erp_core.db.cache import forget_epochs, tenant_epochs
from erp_core.db.session import REGISTRY_KEY, bind_tenant, session_tenant, system_access
from erp_core.i18n import N_
from erp_core.plugins.registry import DependencyError
from erp_core.tenancy.models import Tenant, TenantPlugin

if TYPE_CHECKING:
    from erp_core.plugins.registry import PluginRegistry

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
LOCALES = ("zh_CN", "en")


class TenantError(ValueError):
    """Invalid tenant data (bad slug, duplicate, unknown currency ...); ``field`` names the
    setting at fault, when there is one (forms show the message next to it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def validate_settings(currency: str, timezone: str, locale: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise TenantError(
            N_(
                "currency %(value)s must be a three-letter ISO 4217 code like CNY",
                value=repr(currency),
            ),
            "currency",
        )
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise TenantError(
            N_("unknown time zone %(value)s", value=repr(timezone)), "timezone"
        ) from None
    if locale not in LOCALES:
        raise TenantError(
            N_(
                "locale %(value)s must be one of %(choices)s",
                value=repr(locale),
                choices=", ".join(LOCALES),
            ),
            "locale",
        )


def create_tenant(
    session: Session,
    slug: str,
    name: str,
    *,
    currency: str = "CNY",
    timezone: str = "Asia/Shanghai",
    locale: str = "zh_CN",
    registry: PluginRegistry | None = None,
) -> Tenant:
    """Create a tenant with the default roles; binds ``session`` to it. Caller commits."""
    if not SLUG_RE.match(slug):
        raise TenantError(
            f"slug {slug!r} must be 2-63 characters of lower-case letters, digits and '-'"
        )
    if not name.strip():
        raise TenantError(N_("name must not be empty"), "name")
    validate_settings(currency, timezone, locale)
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantError(N_("tenant %(slug)s already exists", slug=repr(slug)))
    tenant = Tenant(
        slug=slug,
        name=name.strip(),
        currency=currency,
        timezone=timezone,
        locale=locale,
        plugin_epoch=0,
    )
    session.add(tenant)
    session.flush()
    bind_tenant(session, tenant.id)
    for role_name, (title, perms) in DEFAULT_ROLES.items():
        session.add(
            Role(tenant_id=tenant.id, name=role_name, title=title, permissions=perms, builtin=True)
        )
    session.flush()
    if registry is not None:
        registry.hooks_for(()).erp_tenant_created(session=session, tenant=tenant)
    return tenant


#: Tenant settings a tenant's managers may change.
TENANT_SETTINGS = ("name", "currency", "timezone", "locale", "theme")


def update_tenant(
    session: Session,
    tenant: Tenant,
    changes: dict[str, str | None],
    *,
    themes: Iterable[str],
    actor: str = "",
    actor_user_id: int | None = None,
) -> dict[str, str]:
    """Change the settings in ``changes`` (``None`` values are left alone), after checking
    them all; ``themes`` are the installed themes. Audited as ``tenant.updated``. Caller
    commits. Returns the changes applied."""
    applied = {k: v for k, v in changes.items() if v is not None}
    unknown = sorted(set(applied) - set(TENANT_SETTINGS))
    if unknown:
        raise TenantError(N_("unknown tenant setting %(name)s", name=", ".join(unknown)))
    if "name" in applied:
        applied["name"] = applied["name"].strip()
        if not applied["name"]:
            raise TenantError(N_("name must not be empty"), "name")
    merged = {**tenant.settings_dict(), **applied}
    validate_settings(merged["currency"], merged["timezone"], merged["locale"])
    installed = sorted(themes)
    if "theme" in applied and applied["theme"] not in installed:
        raise TenantError(
            N_(
                "theme %(value)s is not installed (installed: %(choices)s)",
                value=repr(applied["theme"]),
                choices=", ".join(installed) or "-",
            ),
            "theme",
        )
    for k, v in applied.items():
        setattr(tenant, k, v)
    record(
        session,
        "tenant.updated",
        tenant_id=tenant.id,
        actor=actor,
        actor_user_id=actor_user_id,
        details=dict(applied),
    )
    session.flush()
    return applied


def installed_themes(registry: PluginRegistry) -> list[str]:
    """Names of the installed themes (``erp.themes``), in registry order."""
    return [m.name for m in registry.manifests() if m.kind == "theme"]


def get_tenant(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        raise TenantError(N_("no tenant %(slug)s", slug=repr(slug)))
    return tenant


# --- plugin enablement -------------------------------------------------------------------


class MissingDependencies(DependencyError):
    """``plugin`` cannot be enabled before ``needed`` (in dependency order)."""

    def __init__(self, plugin: str, needed: list[str]) -> None:
        names = {"name": repr(plugin), "needed": ", ".join(needed)}
        if len(needed) == 1:
            message = N_(
                "plugin %(name)s needs %(needed)s enabled first "
                "(enable it, or ask to enable dependencies too)",
                **names,
            )
        else:
            message = N_(
                "plugin %(name)s needs %(needed)s enabled first "
                "(enable them, or ask to enable dependencies too)",
                **names,
            )
        super().__init__(message)
        self.plugin = plugin
        self.needed = needed


class NeededBy(DependencyError):
    """``plugin`` cannot be disabled while the enabled plugins ``users`` need it."""

    def __init__(self, plugin: str, users: list[str]) -> None:
        names = {"name": repr(plugin), "users": ", ".join(users)}
        if len(users) == 1:
            message = N_(
                "plugin %(name)s cannot be disabled: %(users)s needs it (disable that first)",
                **names,
            )
        else:
            message = N_(
                "plugin %(name)s cannot be disabled: %(users)s need it (disable those first)",
                **names,
            )
        super().__init__(message)
        self.plugin = plugin
        self.users = users


@dataclass(frozen=True, slots=True)
class EnabledSet:
    epoch: int
    names: frozenset[str]


_cache: dict[tuple[str, int], EnabledSet] = {}
#: engine -> its database's URL as a string (rendering it took a few µs per transaction)
_URLS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _database_key(engine: Any) -> str:
    key = _URLS.get(engine)
    if key is None:
        key = _URLS[engine] = str(engine.url)
    return key


def _plugin_epoch(session: Session, tenant_id: int) -> int | None:
    """The tenant's plugin epoch, read once per transaction (a transaction works with one
    set of plugins; enabling or disabling one in it forgets what was read)."""
    epochs = tenant_epochs(session, tenant_id)
    return epochs[0] if epochs is not None else None


def enabled_plugins(session: Session, tenant_id: int) -> frozenset[str]:
    """The plugins ``tenant_id`` has enabled: one indexed read of the epoch (per
    transaction), cached rows."""
    epoch = _plugin_epoch(session, tenant_id)
    if epoch is None:
        return frozenset()
    key = (_database_key(session.get_bind().engine), tenant_id)
    hit = _cache.get(key)
    if hit is not None and hit.epoch == epoch:
        return hit.names
    with system_access(session):
        names = frozenset(
            session.scalars(
                select(TenantPlugin.plugin).where(
                    TenantPlugin.tenant_id == tenant_id, TenantPlugin.enabled.is_(True)
                )
            )
        )
    _cache[key] = EnabledSet(epoch, names)
    return names


def tenant_hooks(session: Session, tenant_id: int | None = None) -> Any:
    """The hooks of the plugins that ``tenant_id`` (default: the session's tenant) enabled,
    plus the kernel's built-ins; the built-ins alone without a tenant. None when the session
    does not know the plugin registry (one from a bare ``Database`` with no registry set).

    Kernel services call it when their caller passes no ``hooks``, so that no plugin's
    validation or reaction can be skipped by forgetting them.
    """
    registry = session.info.get(REGISTRY_KEY)
    if registry is None:
        return None
    tid = tenant_id if tenant_id is not None else session_tenant(session)
    return registry.hooks_for(enabled_plugins(session, tid) if tid is not None else ())


def _bump_epoch(session: Session, tenant_id: int) -> None:
    forget_epochs(session)
    session.execute(
        update(Tenant).where(Tenant.id == tenant_id).values(plugin_epoch=Tenant.plugin_epoch + 1)
    )


def enable_plugin(
    session: Session,
    registry: PluginRegistry,
    tenant: Tenant,
    name: str,
    *,
    with_dependencies: bool = False,
    actor: str = "",
    actor_user_id: int | None = None,
) -> list[str]:
    """Enable ``name`` for ``tenant``; return the plugins newly enabled (in order).

    Refuses with :class:`DependencyError` naming what is missing unless ``with_dependencies``.
    Caller commits; the change is visible to every process as soon as it does.
    """
    if name not in registry.plugins:
        broken = next((b for b in registry.broken if b.name == name), None)
        if broken is not None:
            raise DependencyError(
                N_(
                    "plugin %(name)s cannot be enabled: %(error)s",
                    name=repr(name),
                    error=broken.error,
                )
            )
        raise DependencyError(N_("plugin %(name)s is not installed", name=repr(name)))
    if registry.manifest(name).kind == "theme":
        raise DependencyError(
            N_(
                "%(name)s is a theme: themes are not enabled, a tenant chooses one in its settings",
                name=repr(name),
            )
        )
    bind_tenant(session, tenant.id)
    current = set(enabled_plugins(session, tenant.id))
    if name in current:
        return []
    needed = [d for d in registry.requirements(name) if d not in current]
    if needed and not with_dependencies:
        raise MissingDependencies(name, needed)
    newly = [*needed, name]
    rows = {
        r.plugin: r
        for r in session.scalars(
            select(TenantPlugin).where(
                TenantPlugin.tenant_id == tenant.id, TenantPlugin.plugin.in_(newly)
            )
        )
    }
    for n in newly:
        row = rows.get(n)
        if row is None:
            row = TenantPlugin(tenant_id=tenant.id, plugin=n)
            session.add(row)
        row.enabled = True
        row.enabled_version = registry.manifest(n).version
        row.updated_at = utcnow()
    _bump_epoch(session, tenant.id)
    session.flush()
    hooks = registry.hooks_for(current | set(newly))
    for n in newly:
        hooks.erp_tenant_plugin_enabled(session=session, tenant=tenant, plugin=n)
        record(
            session,
            "plugin.enabled",
            tenant_id=tenant.id,
            actor=actor,
            actor_user_id=actor_user_id,
            target=n,
            hooks=hooks,
        )
    session.flush()
    return newly


def disable_plugin(
    session: Session,
    registry: PluginRegistry,
    tenant: Tenant,
    name: str,
    *,
    actor: str = "",
    actor_user_id: int | None = None,
) -> bool:
    """Disable ``name`` for ``tenant`` (data is kept). Returns False if it was not enabled.

    Refuses with :class:`DependencyError` when another enabled plugin needs it.
    """
    bind_tenant(session, tenant.id)
    current = set(enabled_plugins(session, tenant.id))
    if name not in current:
        if name not in registry.plugins and not any(b.name == name for b in registry.broken):
            raise DependencyError(N_("plugin %(name)s is not installed", name=repr(name)))
        return False
    if name in registry.plugins:
        users = registry.dependents(name, current)
        if users:
            raise NeededBy(name, sorted(users))
        hooks = registry.hooks_for(current)
        hooks.erp_tenant_plugin_disabled(session=session, tenant=tenant, plugin=name)
    row = session.scalar(
        select(TenantPlugin).where(TenantPlugin.tenant_id == tenant.id, TenantPlugin.plugin == name)
    )
    assert row is not None
    row.enabled = False
    row.updated_at = utcnow()
    _bump_epoch(session, tenant.id)
    record(
        session,
        "plugin.disabled",
        tenant_id=tenant.id,
        actor=actor,
        actor_user_id=actor_user_id,
        target=name,
        hooks=registry.hooks_for(current - {name}),
    )
    session.flush()
    return True
