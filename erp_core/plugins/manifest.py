"""What a plugin, connector or theme declares about itself.

A manifest holds *strings* for anything heavy (routers, hook modules, task modules), so listing
plugins imports neither FastAPI routes nor models. Entry points in ``erp.plugins``,
``erp.connectors`` and ``erp.themes`` resolve to one :class:`PluginManifest` each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from erp_core.i18n import N_

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
TARGET_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
PERMISSION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")

Kind = Literal["plugin", "connector", "theme"]
KINDS: dict[str, Kind] = {
    "erp.plugins": "plugin",
    "erp.connectors": "connector",
    "erp.themes": "theme",
}

#: Rollout stages a merchant follows (MISSION.md): 0 = anytime.
STAGES: dict[int, str] = {
    0: N_("Anytime (office integration, tools)"),
    1: N_("Stage 1: orders and inventory"),
    2: N_("Stage 2: catalogue and purchasing"),
    3: N_("Stage 3: CRM and after-sales"),
    4: N_("Stage 4: finance and reports"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Permission:
    """A permission a plugin contributes, e.g. ``oms.order.read``."""

    name: str
    title: str
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuItem:
    """A navigation entry, shown when the plugin is enabled and the user has ``permission``."""

    id: str
    title: str
    href: str
    permission: str
    section: str = "main"
    order: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterMount:
    """A FastAPI router (``module:attribute``) mounted at ``prefix``.

    ``kind="api"`` routers are mounted under ``/api/v1``; ``kind="ui"`` routers at the root.
    Every route must declare its permission with :func:`erp_core.auth.deps.require`.
    """

    target: str
    prefix: str
    kind: Literal["api", "ui"] = "api"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodicTask:
    """A task the scheduler runs every ``every_seconds`` for each tenant that enabled the plugin."""

    name: str
    task: str
    every_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginManifest:
    """Everything the kernel needs to know about a plugin, connector or theme."""

    name: str
    version: str
    title: str
    description: str = ""
    kind: Kind = "plugin"
    stage: int = 0
    depends: tuple[str, ...] = ()
    permissions: tuple[Permission, ...] = ()
    menus: tuple[MenuItem, ...] = ()
    routers: tuple[RouterMount, ...] = ()
    #: Modules holding ``@hookimpl`` functions.
    hooks: tuple[str, ...] = ()
    #: Modules holding ``@hookspec`` declarations for extension points this plugin owns.
    hookspecs: tuple[str, ...] = ()
    #: Module that defines the plugin's SQLAlchemy models (imported before migrations run).
    models: str | None = None
    #: Alembic versions folder as ``package:relative/path``.
    migrations: str | None = None
    #: Modules that define Celery tasks.
    tasks: tuple[str, ...] = ()
    periodic: tuple[PeriodicTask, ...] = ()
    #: Template and static folders as ``package:relative/path``.
    templates: str | None = None
    static: str | None = None
    #: gettext catalogs as ``package:relative/path``: ``<path>/<locale>/LC_MESSAGES/<name>.po``.
    translations: str | None = None
    #: A sales or payment channel connector class as ``module:Class`` (a subclass of
    #: :class:`erp_core.channels.SalesChannel` or :class:`erp_core.channels.PaymentChannel`).
    #: Its channel accounts are named after this manifest's ``name``.
    channel: str | None = None
    #: The connector's platform simulator as ``module:Class`` (a subclass of
    #: :class:`erp_core.testing.sandbox.Sandbox`): the conformance kit and the demo use it.
    sandbox: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with this manifest (an empty list means it is valid)."""
        out: list[str] = []
        if not NAME_RE.match(self.name):
            out.append(f"name {self.name!r} must match {NAME_RE.pattern}")
        if self.name == "core":
            out.append("name 'core' is reserved for the kernel")
        if not self.version:
            out.append("version is empty")
        if not self.title:
            out.append("title is empty")
        if self.kind not in ("plugin", "connector", "theme"):
            out.append(f"kind {self.kind!r} is not plugin, connector or theme")
        if self.stage not in STAGES:
            out.append(f"stage {self.stage!r} is not one of {sorted(STAGES)}")
        for dep in self.depends:
            if not NAME_RE.match(dep) or dep == self.name:
                out.append(f"invalid dependency {dep!r}")
        seen: set[str] = set()
        for perm in self.permissions:
            if not isinstance(perm, Permission):
                out.append(f"permission {perm!r} is not a Permission")
                continue
            if not PERMISSION_RE.match(perm.name) or not perm.name.startswith(self.name + "."):
                out.append(f"permission {perm.name!r} must look like '{self.name}.<thing>.<verb>'")
            if perm.name in seen:
                out.append(f"permission {perm.name!r} declared twice")
            seen.add(perm.name)
        for menu in self.menus:
            if not isinstance(menu, MenuItem):
                out.append(f"menu {menu!r} is not a MenuItem")
            elif not menu.permission:
                out.append(f"menu {menu.id!r} declares no permission")
        for router in self.routers:
            if not isinstance(router, RouterMount) or ":" not in router.target:
                out.append(f"router {router!r} must be RouterMount('module:attribute', prefix=...)")
            elif not router.prefix.startswith("/"):
                out.append(f"router prefix {router.prefix!r} must start with '/'")
        for p in self.periodic:
            if not isinstance(p, PeriodicTask) or p.every_seconds <= 0:
                out.append(f"periodic task {p!r} must be PeriodicTask with every_seconds > 0")
        for label, value in (
            ("migrations", self.migrations),
            ("templates", self.templates),
            ("static", self.static),
            ("translations", self.translations),
        ):
            if value is not None and ":" not in value:
                out.append(f"{label} must be 'package:relative/path', got {value!r}")
        if self.channel is not None:
            if not isinstance(self.channel, str) or not TARGET_RE.match(self.channel):
                out.append(f"channel must be 'module:Class', got {self.channel!r}")
            elif self.kind == "theme":
                out.append("a theme cannot declare a channel")
        if self.sandbox is not None:
            if not isinstance(self.sandbox, str) or not TARGET_RE.match(self.sandbox):
                out.append(f"sandbox must be 'module:Class', got {self.sandbox!r}")
            elif self.channel is None:
                out.append("a sandbox needs a channel")
        return out


@dataclass(frozen=True, slots=True)
class BrokenPlugin:
    """An entry point that could not be loaded, or whose manifest is invalid."""

    name: str
    group: str
    error: str
    distribution: str = ""


@dataclass(frozen=True, slots=True)
class InstalledPlugin:
    """A loaded manifest and where it came from."""

    manifest: PluginManifest
    group: str
    distribution: str = ""
    extra: dict[str, str] = field(default_factory=dict)
