"""What every page's shell shows: who is signed in, for which tenant, the navigation, the
language, the theme and the flash messages.

The navigation is the menus of the plugins the tenant enabled plus the kernel's administration
pages, each kept only if the user holds its permission. The language is the user's choice (the
``erp_locale`` cookie set by the language switch), else the tenant's locale, else the
``default_locale`` setting.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request
from sqlalchemy.orm import Session

from erp_core.auth.principal import Principal
from erp_core.i18n import DEFAULT_LOCALE, LOCALES, N_
from erp_core.plugins.manifest import MenuItem
from erp_core.tenancy.models import Tenant

log = logging.getLogger(__name__)

LOCALE_COOKIE = "erp_locale"

#: Names of the languages, each in its own language (never translated).
LANGUAGE_NAMES = {"zh_CN": "中文", "en": "English"}

#: The kernel's own pages, each shown in its section ("admin", "ledger") to those allowed to see it.
KERNEL_MENU: tuple[MenuItem, ...] = (
    MenuItem(
        id="core.plugins",
        title=N_("App center"),
        href="/admin/plugins",
        permission="core.plugins.read",
        section="admin",
        order=10,
    ),
    MenuItem(
        id="core.users",
        title=N_("Users"),
        href="/admin/users",
        permission="core.users.read",
        section="admin",
        order=20,
    ),
    MenuItem(
        id="core.roles",
        title=N_("Roles and permissions"),
        href="/admin/roles",
        permission="core.roles.read",
        section="admin",
        order=30,
    ),
    MenuItem(
        id="core.tokens",
        title=N_("API tokens"),
        href="/admin/tokens",
        permission="core.tokens.read",
        section="admin",
        order=40,
    ),
    MenuItem(
        id="core.audit",
        title=N_("Audit log"),
        href="/admin/audit",
        permission="core.audit.read",
        section="admin",
        order=50,
    ),
    MenuItem(
        id="core.settings",
        title=N_("Tenant settings"),
        href="/admin/settings",
        permission="core.tenant.read",
        section="admin",
        order=60,
    ),
    # the ledger (erp_core/web/ledger_views.py)
    MenuItem(
        id="core.ledger.accounts",
        title=N_("Chart of accounts"),
        href="/ledger/accounts",
        permission="core.ledger.read",
        section="ledger",
        order=10,
    ),
    MenuItem(
        id="core.ledger.entries",
        title=N_("Journal"),
        href="/ledger/entries",
        permission="core.ledger.read",
        section="ledger",
        order=20,
    ),
    MenuItem(
        id="core.ledger.trial_balance",
        title=N_("Trial balance"),
        href="/ledger/trial-balance",
        permission="core.ledger.read",
        section="ledger",
        order=30,
    ),
    MenuItem(
        id="core.ledger.periods",
        title=N_("Periods"),
        href="/ledger/periods",
        permission="core.ledger.read",
        section="ledger",
        order=40,
    ),
    # the inventory (erp_core/web/inventory_views.py)
    MenuItem(
        id="core.inventory.skus",
        title=N_("SKUs"),
        href="/inventory/skus",
        permission="core.inventory.read",
        section="inventory",
        order=10,
    ),
    MenuItem(
        id="core.inventory.warehouses",
        title=N_("Warehouses"),
        href="/inventory/warehouses",
        permission="core.inventory.read",
        section="inventory",
        order=20,
    ),
    MenuItem(
        id="core.inventory.stock",
        title=N_("Stock levels"),
        href="/inventory/stock",
        permission="core.inventory.read",
        section="inventory",
        order=30,
    ),
    MenuItem(
        id="core.inventory.moves",
        title=N_("Stock moves"),
        href="/inventory/moves",
        permission="core.inventory.read",
        section="inventory",
        order=40,
    ),
    MenuItem(
        id="core.inventory.count",
        title=N_("Stock count"),
        href="/inventory/count",
        permission="core.inventory.count",
        section="inventory",
        order=50,
    ),
)

#: Titles of the navigation sections the kernel knows; a plugin's own sections are shown
#: through its catalog.
SECTION_TITLES = {
    "main": N_("Business"),
    "admin": N_("Administration"),
    "ledger": N_("Finance"),
    "inventory": N_("Inventory"),
}


@dataclass(frozen=True, slots=True)
class MenuSection:
    name: str
    title: str
    items: tuple[MenuItem, ...]


def plugin_menu(request: Request, db: Session, principal: Principal) -> list[MenuItem]:
    """Manifest menus of the tenant's enabled plugins plus hook menus, filtered by permission."""
    from erp_core.tenancy.service import enabled_plugins

    registry = request.app.state.registry
    enabled = enabled_plugins(db, principal.tenant_id)
    items: list[MenuItem] = [
        mi for name in registry.order if name in enabled for mi in registry.manifest(name).menus
    ]
    tenant = db.get(Tenant, principal.tenant_id)
    for extra in registry.hooks_for(enabled).erp_menu_items(tenant=tenant, principal=principal):
        items.extend(extra or [])
    return sorted(
        (i for i in items if principal.can(i.permission)),
        key=lambda i: (i.section, i.order, i.title),
    )


def navigation(items: Iterable[MenuItem], principal: Principal) -> list[MenuSection]:
    """Plugin items and the kernel's pages the user may see, by section (administration last)."""
    sections: dict[str, list[MenuItem]] = {}
    for item in items:
        sections.setdefault(item.section, []).append(item)
    for kernel_item in KERNEL_MENU:  # each in its own section (admin, ledger, ...)
        if principal.can(kernel_item.permission):
            sections.setdefault(kernel_item.section, []).append(kernel_item)
    order = sorted(sections, key=lambda s: (s == "admin", s != "main", s))
    return [
        MenuSection(
            name=s,
            title=SECTION_TITLES.get(s, s),
            items=tuple(sorted(sections[s], key=lambda i: (i.order, i.title))),
        )
        for s in order
    ]


def _quiet_principal(request: Request, db: Session) -> Principal | None:
    """The signed-in user of a browser request that has not resolved one (an error page for
    an unknown URL, say): looked up from the session cookie only, without side effects."""
    from erp_core.auth.deps import SESSION_COOKIE, _resolve

    if "authorization" in request.headers or not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        return _resolve(request, db)
    except Exception:
        return None


def choose_locale(request: Request, tenant: Tenant | None) -> str:
    wanted = request.cookies.get(LOCALE_COOKIE, "")
    if wanted in LOCALES:
        return wanted
    if tenant is not None and tenant.locale in LOCALES:
        return tenant.locale
    default = getattr(request.app.state.settings, "default_locale", DEFAULT_LOCALE)
    return default if default in LOCALES else DEFAULT_LOCALE


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def tenant_prefs(request: Request, db: Session) -> tuple[str, tzinfo]:
    """The language and time zone of a request acting for a tenant."""
    principal: Principal | None = getattr(request.state, "principal", None)
    tenant = db.get(Tenant, principal.tenant_id) if principal is not None else None
    return choose_locale(request, tenant), _zone(tenant.timezone) if tenant else UTC


def shell_context(request: Request) -> dict[str, Any]:
    """The context every page gets (see the module docstring)."""
    from erp_core.auth.service import user_tenants
    from erp_core.web import flash

    ui = request.app.state.templates
    principal: Principal | None = getattr(request.state, "principal", None)
    tenant: Tenant | None = None
    tenants: list[Tenant] = []
    nav: list[MenuSection] = []
    try:
        with request.app.state.db.session() as db:
            if principal is None:
                principal = _quiet_principal(request, db)
            if principal is not None:
                from erp_core.db.session import bind_tenant

                bind_tenant(db, principal.tenant_id)
                tenant = db.get(Tenant, principal.tenant_id)
                if principal.via == "session":
                    tenants = user_tenants(db, principal.user_id)
                elif tenant is not None:
                    tenants = [tenant]
                nav = navigation(plugin_menu(request, db, principal), principal)
    except Exception:  # the shell must not take the page down (the error page uses it too)
        log.exception("the page shell could not be built")
    locale = choose_locale(request, tenant)
    taken = flash.take(request)
    return {
        "principal": principal,
        "csrf_token": principal.csrf_token if principal is not None else None,
        "tenant": tenant,
        "tenants": tenants,
        "nav": nav,
        "current_path": request.url.path,
        "locale": locale,
        "html_lang": "zh-CN" if locale == "zh_CN" else "en",
        "languages": [(code, LANGUAGE_NAMES[code]) for code in LOCALES],
        "theme": ui.resolve_theme(tenant.theme if tenant is not None else None),
        "translations": ui.catalogs.for_locale(locale),
        "zone": _zone(tenant.timezone) if tenant is not None else UTC,
        "flashes": list(taken),
        "flash_taken": bool(taken),
    }
