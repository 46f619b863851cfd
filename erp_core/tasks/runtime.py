"""Per-process state for workers: settings, database and plugin registry, built once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from erp_core.db.session import Database
from erp_core.plugins.registry import PluginRegistry
from erp_core.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    registry: PluginRegistry


_override: Runtime | None = None


@lru_cache(maxsize=1)
def _default() -> Runtime:
    settings = get_settings()
    db = Database(settings.resolved_database_url())
    db.registry = PluginRegistry.discover(settings.plugins or None)
    return Runtime(settings, db, db.registry)


def runtime() -> Runtime:
    return _override or _default()


def set_runtime(rt: Runtime | None) -> None:
    """Install a runtime for this process (the worker command and tests use this)."""
    global _override
    _override = rt
