"""The demo tenant that ``erp serve --demo`` (the README's run command) starts with."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.auth import service
from erp_core.db.session import Database, bind_tenant
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings
from erp_core.tenancy.service import (
    TenantError,
    create_tenant,
    enable_plugin,
    enabled_plugins,
    get_tenant,
)

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
    with db.tenant_session(tenant.id) as s:
        seed_demo_stock(s, registry.hooks_for(enabled_plugins(s, tenant.id)))
    password = cred.read_text(encoding="utf-8").strip()
    return [
        f"demo tenant: {DEMO_SLUG}",
        f"log in at http://{host or settings.host}:{port or settings.port}/login as {DEMO_EMAIL} "
        f"with password {password}",
    ]


#: The demo's goods: code, name, unit, tracking, shelf life (days), stock and unit cost per
#: warehouse (Hangzhou, Shanghai).
DEMO_SKUS: tuple[tuple[str, str, str, str, int | None, tuple[int, int], str], ...] = (
    ("TEA-LJ-250", "西湖龙井 250g", "box", "lot", 540, (120, 40), "88.00"),
    ("TEA-PE-357", "普洱饼茶 357g", "cake", "lot", 3650, (60, 0), "126.50"),
    ("CUP-GL-300", "双层玻璃杯 300ml", "pcs", "none", None, (300, 150), "18.90"),
    ("KET-EL-1L", "电热水壶 1L", "pcs", "serial", None, (3, 0), "159.00"),
    ("GIFT-BOX-S", "小号礼盒", "pcs", "none", None, (500, 0), "4.20"),
)


def seed_demo_stock(session: Session, hooks: Any) -> None:
    """Warehouses with a location tree, SKUs and received stock for the demo tenant, once:
    the receipts are valued, so the ledger has its first entries too."""
    from datetime import timedelta

    from erp_core.inventory import service as inv
    from erp_core.inventory.models import Warehouse

    if session.scalar(select(Warehouse.id).limit(1)) is not None:
        return
    for code, name in (("HZ", "杭州仓 Hangzhou"), ("SH", "上海仓 Shanghai")):
        inv.create_warehouse(session, code=code, name=name)
        for zone in ("A", "B"):
            inv.create_location(session, parent=f"{code}/STOCK", code=zone, kind="view")
            for shelf in ("01", "02"):
                inv.create_location(session, parent=f"{code}/STOCK/{zone}", code=shelf)
    today = datetime.now(UTC).date()
    for code, name, unit, tracking, life, stock, cost in DEMO_SKUS:
        inv.create_sku(
            session, code=code, name=name, unit=unit, tracking=tracking, shelf_life_days=life
        )
        for wh, qty in zip(("HZ", "SH"), stock, strict=True):
            if not qty:
                continue
            extra: dict[str, Any] = {}
            if tracking == "lot":
                extra = {"lot": f"{wh}-{today:%Y%m}", "expiry": today + timedelta(days=life or 0)}
            elif tracking == "serial":
                extra = {"serials": [f"{code}-{wh}-{n:04d}" for n in range(1, qty + 1)]}
            inv.receive(
                session,
                code,
                qty,
                to_location=f"{wh}/STOCK/A/01",
                unit_cost=cost,
                reference="demo opening stock",
                idempotency_key=f"demo:{code}:{wh}",
                hooks=hooks,
                **extra,
            )
