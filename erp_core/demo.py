"""The demo tenant that ``erp serve --demo`` (the README's run command) starts with."""

from __future__ import annotations

import secrets

from erp_core.auth import service
from erp_core.db.session import Database, bind_tenant
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.tenancy.service import TenantError, create_tenant, enable_plugin, get_tenant

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo.example.com"


def ensure_demo(
    db: Database,
    registry: PluginRegistry,
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
) -> list[str]:
    """Create the demo tenant and its owner once; enable every installed plugin for it.

    The owner's password is generated on first run and kept in ``var/demo-login.txt``.
    Returns lines to print.
    """
    cred = settings.var_path / "demo-login.txt"
    with db.session() as s, s.begin():
        try:
            tenant = get_tenant(s, DEMO_SLUG)
            bind_tenant(s, tenant.id)
        except TenantError:
            tenant = create_tenant(s, DEMO_SLUG, "演示商户 Demo Shop", registry=registry)
        user = service.get_user(s, DEMO_EMAIL)
        if user is None or not cred.exists():
            password = secrets.token_urlsafe(12)
            if user is None:
                user = service.create_user(s, DEMO_EMAIL, password, "Demo Admin")
            else:
                service.set_password(user, password)
            cred.parent.mkdir(parents=True, exist_ok=True)
            cred.write_text(password + "\n", encoding="utf-8")
            cred.chmod(0o600)
        service.add_member(s, tenant, user, "owner")
        for name in registry.order:
            if registry.manifest(name).kind == "theme":  # chosen in the settings, not enabled
                continue
            enable_plugin(s, registry, tenant, name, with_dependencies=True, actor="demo")
    password = cred.read_text(encoding="utf-8").strip()
    return [
        f"demo tenant: {DEMO_SLUG}",
        f"log in at http://{host or settings.host}:{port or settings.port}/login as {DEMO_EMAIL} "
        f"with password {password}",
    ]
