"""Find installed plugins, connectors and themes through their entry points (stevedore)."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint
from typing import Any

from stevedore import ExtensionManager

from erp_core.plugins.manifest import KINDS, BrokenPlugin, InstalledPlugin, PluginManifest

log = logging.getLogger(__name__)

GROUPS = tuple(KINDS)


def _dist_name(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", "") or ""


def discover(allow: list[str] | None = None) -> tuple[list[InstalledPlugin], list[BrokenPlugin]]:
    """Load every manifest in the three entry-point groups.

    A plugin that raises on import, or whose entry point does not resolve to a valid
    :class:`PluginManifest`, is returned in the second list with its error; the others load.
    ``allow`` (from the ``plugins`` setting) limits loading to the named plugins.
    """
    found: list[InstalledPlugin] = []
    broken: list[BrokenPlugin] = []
    seen: dict[str, str] = {}
    for group in GROUPS:
        failures: list[BrokenPlugin] = []

        def _on_fail(
            manager: Any,
            ep: EntryPoint,
            exc: BaseException,
            _g: str = group,
            _f: list[BrokenPlugin] = failures,
        ) -> None:
            log.error("plugin %s (%s) failed to load: %s", ep.name, _g, exc)
            _f.append(BrokenPlugin(ep.name, _g, f"{type(exc).__name__}: {exc}", _dist_name(ep)))

        mgr = ExtensionManager(
            namespace=group,
            invoke_on_load=False,
            on_load_failure_callback=_on_fail,
        )
        broken.extend(failures)
        for ext in mgr.extensions:
            dist = _dist_name(ext.entry_point)
            if allow and ext.name not in allow:
                continue
            manifest = ext.plugin
            problem = _check(ext.name, group, manifest)
            if problem is None and ext.name in seen:
                problem = f"name {ext.name!r} is already used by {seen[ext.name]}"
            if problem is not None:
                log.error("plugin %s (%s) is invalid: %s", ext.name, group, problem)
                broken.append(BrokenPlugin(ext.name, group, problem, dist))
                continue
            seen[ext.name] = dist or group
            assert isinstance(manifest, PluginManifest)
            found.append(InstalledPlugin(manifest, group, dist))
    return found, broken


def _check(name: str, group: str, manifest: object) -> str | None:
    if not isinstance(manifest, PluginManifest):
        return f"entry point does not resolve to a PluginManifest (got {type(manifest).__name__})"
    problems = manifest.problems()
    if manifest.name != name:
        problems.append(f"manifest name {manifest.name!r} differs from entry point name {name!r}")
    if manifest.kind != KINDS[group]:
        problems.append(f"kind {manifest.kind!r} does not match group {group!r}")
    return "invalid manifest: " + "; ".join(problems) if problems else None
