"""The demo tenant that ``erp serve --demo`` (the README's run command) starts with."""

from __future__ import annotations

import importlib
import logging
import secrets
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
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
        hooks = registry.hooks_for(enabled_plugins(s, tenant.id))
        seed_demo_stock(s, hooks)
        demo_tenant = get_tenant(s, DEMO_SLUG)
        hooks.erp_demo_tenant(session=s, tenant=demo_tenant)
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


# --- the platforms of the demo ----------------------------------------------------------------

#: Seconds between two steps of the demo's order stream, and before the first.
DEMO_STEP_SECONDS = 8.0
DEMO_FIRST_STEP_AFTER = 3.0
#: The latest API calls each demo sandbox keeps for inspection (see ``Sandbox.history``)
DEMO_SANDBOX_HISTORY = 1000
#: A demo sandbox forgets orders unchanged for this long (``Sandbox.forget``), checked every
#: ``DEMO_FORGET_SECONDS``: at a step every 8 seconds a sandbox would otherwise keep some
#: 22,000 more orders a day for as long as the demo runs.
DEMO_SANDBOX_RETENTION = timedelta(days=2)
DEMO_FORGET_SECONDS = 3600.0
log = logging.getLogger(__name__)


class DemoPlatforms:
    """The sandboxes of the installed connectors, serving on loopback while the demo runs, each
    with a channel account of the demo tenant and a thread driving its steady stream
    (:meth:`erp_core.testing.sandbox.Sandbox.demo_step`) into the ERP's ``/hooks``."""

    def __init__(self, db: Database, registry: PluginRegistry, settings: Settings) -> None:
        self.db, self.registry, self.settings = db, registry, settings
        self._stack = ExitStack()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.lines: list[str] = []

    def start(self, erp_url: str) -> list[str]:
        from erp_core.testing.sandbox import Sandbox, running

        with self.db.session() as s:
            tenant = get_tenant(s, DEMO_SLUG)
            tenant_id = tenant.id
            bind_tenant(s, tenant_id)
            enabled = enabled_plugins(s, tenant_id)
        for manifest in self.registry.manifests():
            if not (manifest.sandbox and manifest.channel and manifest.name in enabled):
                continue
            module, _, name = manifest.sandbox.partition(":")
            try:
                cls = getattr(importlib.import_module(module), name)
                if not (isinstance(cls, type) and issubclass(cls, Sandbox)):
                    raise TypeError(f"{manifest.sandbox} is not a Sandbox")
                box = cls(seed=2026)
                box.history = DEMO_SANDBOX_HISTORY  # the demo runs for days
                self._stack.enter_context(running(box))
                account_id = self._account(tenant_id, manifest.name, box)
            except Exception as exc:  # one broken sandbox must not stop the demo
                log.warning("demo: the %s sandbox did not start: %s", manifest.name, exc)
                continue
            hook = f"{erp_url}/hooks/{manifest.name}/{account_id}"
            thread = threading.Thread(
                target=self._drive, args=(box, hook), name=f"demo:{manifest.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            self.lines.append(f"demo: {manifest.title} sandbox at {box.base_url} → {hook}")
        return self.lines

    def _account(self, tenant_id: int, connector: str, box: Any) -> int:
        """The demo's account at the sandbox, created once and pointed at it at every start
        (its address and keys change from run to run)."""
        from erp_core.channels import service as channels
        from erp_core.channels.interfaces import TokenSet
        from erp_core.channels.models import ChannelAccount

        spec = box.account()
        with self.db.tenant_session(tenant_id) as s:
            account = s.scalar(
                select(ChannelAccount).where(
                    ChannelAccount.connector == connector, ChannelAccount.shop_id == spec.shop_id
                )
            )
            if account is None:
                account = channels.create_account(
                    s,
                    self.registry,
                    self.settings,
                    connector=connector,
                    shop_id=spec.shop_id,
                    name=f"演示 {connector}",
                    app_key=spec.app_key,
                    config=dict(spec.config),
                    secrets=dict(spec.secrets),
                    actor="demo",
                )
            else:
                channels.update_account(
                    s,
                    self.registry,
                    self.settings,
                    account,
                    config=dict(spec.config),
                    secrets=dict(spec.secrets),
                    active=True,
                    actor="demo",
                )
            if spec.access_token:
                channels.set_tokens(
                    s,
                    self.settings,
                    account,
                    TokenSet(
                        access_token=spec.access_token,
                        expires_at=spec.token_expires_at,
                        refresh_token=spec.refresh_token,
                    ),
                    actor="demo",
                )
            self._seed_goods(s, box)
            return int(account.id)

    @staticmethod
    def _seed_goods(session: Session, box: Any) -> None:
        """The shop's goods as SKUs with stock, once; the last one stays unknown to the ERP so
        that the demo shows the "SKU not mapped" exception."""
        from erp_core.inventory import service as inv
        from erp_core.inventory.models import Sku

        items = getattr(box, "stock_items", None)
        if items is None:
            return
        codes = sorted({code for code, _, _ in items()})
        for code in codes[:-1]:
            if session.scalar(select(Sku.id).where(Sku.code == code)) is not None:
                continue
            inv.create_sku(session, code=code, name=code)
            for wh, qty in (("HZ", 400), ("SH", 150)):
                inv.receive(
                    session,
                    code,
                    qty,
                    warehouse=wh,
                    unit_cost="25.00",
                    reference="demo opening stock",
                    idempotency_key=f"demo:{code}:{wh}",
                )

    def _drive(self, box: Any, hook: str) -> None:
        self._stop.wait(DEMO_FIRST_STEP_AFTER)  # let the web server come up
        forget_at = time.monotonic() + DEMO_FORGET_SECONDS
        while not self._stop.is_set():
            try:
                box.demo_step(hook)
                if time.monotonic() >= forget_at:
                    forget_at = time.monotonic() + DEMO_FORGET_SECONDS
                    box.forget(datetime.now(UTC) - DEMO_SANDBOX_RETENTION)
            except Exception as exc:  # keep the demo going; say what broke
                log.warning("demo: a step of %s failed: %s", type(box).__name__, exc)
            self._stop.wait(DEMO_STEP_SECONDS)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._stack.close()
