"""The plugin registry: validated manifests in dependency order, wired into pluggy."""

from __future__ import annotations

import graphlib
import importlib
import logging
from collections.abc import Iterable
from functools import lru_cache
from types import ModuleType
from typing import Any

import pluggy

from erp_core.plugins import hookspecs as kernel_hookspecs
from erp_core.plugins.manifest import BrokenPlugin, InstalledPlugin, Permission, PluginManifest

log = logging.getLogger(__name__)

#: Kernel modules registered as plugins (the kernel uses its own extension points).
BUILTIN_HOOK_MODULES = ("erp_core.audit.hooks", "erp_core.ledger.hooks", "erp_core.inventory.hooks")


class DependencyError(Exception):
    """Enabling or disabling a plugin would break a dependency."""


class TenantHooks:
    """``pm.hook`` restricted to one set of enabled plugins.

    Implementations registered by plugins outside the set are skipped; kernel built-ins always run.
    """

    def __init__(self, pm: pluggy.PluginManager, remove: frozenset[object]) -> None:
        self._pm = pm
        self._remove = remove

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        caller = self._pm.subset_hook_caller(name, remove_plugins=self._remove)
        self.__dict__[name] = caller
        return caller


class PluginRegistry:
    """Installed plugins (validated, ordered) and the pluggy manager that calls them."""

    def __init__(
        self, installed: Iterable[InstalledPlugin], broken: Iterable[BrokenPlugin] = ()
    ) -> None:
        self.broken: list[BrokenPlugin] = list(broken)
        candidates = {p.manifest.name: p for p in installed}
        self.pm = pluggy.PluginManager("erp")
        self.pm.add_hookspecs(kernel_hookspecs)
        self._modules: dict[str, list[object]] = {}

        # 1. drop plugins whose dependencies are missing (transitively) or form a cycle
        changed = True
        while changed:
            changed = False
            for name, p in list(candidates.items()):
                missing = [d for d in p.manifest.depends if d not in candidates]
                if missing:
                    self._break(p, f"missing dependency: {', '.join(missing)}")
                    del candidates[name]
                    changed = True
        sorter = graphlib.TopologicalSorter({n: p.manifest.depends for n, p in candidates.items()})
        try:
            order = list(sorter.static_order())
        except graphlib.CycleError as exc:
            cycle = exc.args[1]
            for name in set(cycle):
                if name in candidates:
                    self._break(candidates.pop(name), f"dependency cycle: {' -> '.join(cycle)}")
            order = list(
                graphlib.TopologicalSorter(
                    {n: p.manifest.depends for n, p in candidates.items()}
                ).static_order()
            )

        # 2. hookspecs first (a plugin's hookspecs may be implemented by plugins loaded earlier
        #    in the order only if they depend on it, but pluggy accepts specs added late too)
        for name in list(order):
            p = candidates[name]
            try:
                for mod in p.manifest.hookspecs:
                    self.pm.add_hookspecs(importlib.import_module(mod))
            except Exception as exc:  # a broken plugin must not stop the others
                self._break(p, f"hookspecs failed to load: {type(exc).__name__}: {exc}")
                del candidates[name]
                order.remove(name)

        # 3. kernel built-ins, then every plugin's hook implementations
        for modname in BUILTIN_HOOK_MODULES:
            self.pm.register(importlib.import_module(modname), name=f"core:{modname}")
        for name in list(order):
            p = candidates[name]
            if any(d not in candidates for d in p.manifest.depends):
                self._break(p, "a dependency failed to load")
                del candidates[name]
                order.remove(name)
                continue
            registered: list[object] = []
            try:
                for modname in p.manifest.hooks:
                    module: ModuleType = importlib.import_module(modname)
                    self.pm.register(module, name=f"{name}:{modname}")
                    registered.append(module)
            except Exception as exc:
                for m in registered:
                    self.pm.unregister(m)
                self._break(p, f"hooks failed to load: {type(exc).__name__}: {exc}")
                del candidates[name]
                order.remove(name)
                continue
            self._modules[name] = registered
        while True:  # drop every plugin that implements a hook nobody declared
            try:
                self.pm.check_pending()
                break
            except pluggy.PluginValidationError as exc:
                pname = self.pm.get_name(exc.plugin) or ""
                offender = pname.split(":", 1)[0]
                if offender not in candidates:
                    raise
                for m in self._modules.pop(offender, []):
                    self.pm.unregister(m)
                self._break(candidates.pop(offender), f"unknown hook: {exc}")
                order.remove(offender)

        self.order: list[str] = order
        self.plugins: dict[str, InstalledPlugin] = {n: candidates[n] for n in order}
        self._hooks_for = lru_cache(maxsize=256)(self._make_hooks)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def discover(cls, allow: list[str] | None = None) -> PluginRegistry:
        from erp_core.plugins.discovery import discover

        found, broken = discover(allow)
        return cls(found, broken)

    @classmethod
    def from_manifests(cls, manifests: Iterable[PluginManifest]) -> PluginRegistry:
        """Build a registry from in-memory manifests (tests), without an entry-point scan."""
        group = {"plugin": "erp.plugins", "connector": "erp.connectors", "theme": "erp.themes"}
        return cls(InstalledPlugin(m, group[m.kind]) for m in manifests)

    def _break(self, p: InstalledPlugin, error: str) -> None:
        log.error("plugin %s disabled: %s", p.manifest.name, error)
        self.broken.append(BrokenPlugin(p.manifest.name, p.group, error, p.distribution))

    def remove(self, name: str, error: str) -> list[str]:
        """Take out a plugin that failed after loading (its routers, say), with every plugin
        that needs it: each is reported broken, its hooks stop running and it can no longer
        be enabled. Returns the names removed."""
        gone = [name, *self.dependents(name, self.order)]
        for n in gone:
            for module in self._modules.pop(n, []):
                self.pm.unregister(module)
            self.order.remove(n)
            self._break(self.plugins.pop(n), error if n == name else f"needs {name}: {error}")
        self._hooks_for.cache_clear()
        return gone

    # -- queries ---------------------------------------------------------------------------

    def manifest(self, name: str) -> PluginManifest:
        try:
            return self.plugins[name].manifest
        except KeyError:
            raise KeyError(f"plugin {name!r} is not installed") from None

    def manifests(self) -> list[PluginManifest]:
        return [self.plugins[n].manifest for n in self.order]

    def permissions(self) -> list[Permission]:
        from erp_core.auth.permissions import KERNEL_PERMISSIONS

        out = list(KERNEL_PERMISSIONS)
        for m in self.manifests():
            out.extend(m.permissions)
        return out

    def plugin_permissions(self) -> dict[str, str]:
        """Permission name -> the plugin that contributes it."""
        return {p.name: m.name for m in self.manifests() for p in m.permissions}

    def requirements(self, name: str) -> list[str]:
        """Every plugin ``name`` needs, transitively, in dependency order (``name`` excluded)."""
        need: set[str] = set()
        stack = list(self.manifest(name).depends)
        while stack:
            d = stack.pop()
            if d not in need:
                need.add(d)
                stack.extend(self.manifest(d).depends)
        return [n for n in self.order if n in need]

    def dependents(self, name: str, among: Iterable[str]) -> list[str]:
        """Plugins in ``among`` that need ``name`` (directly or transitively)."""
        return [
            n for n in among if n != name and n in self.plugins and name in self.requirements(n)
        ]

    # -- hooks -----------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """Every registered implementation (process-wide hooks such as ``erp_startup``)."""
        return self.pm.hook

    def hooks_for(self, enabled: Iterable[str]) -> TenantHooks:
        """The hooks of the kernel and of the ``enabled`` plugins only."""
        return self._hooks_for(frozenset(enabled))

    def _make_hooks(self, enabled: frozenset[str]) -> TenantHooks:
        remove = frozenset(
            m for name, mods in self._modules.items() if name not in enabled for m in mods
        )
        return TenantHooks(self.pm, remove)
