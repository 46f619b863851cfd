"""erp_core: the kernel of the ERP. Plugins import their public API from here."""

from erp_core.plugins.hookspecs import hookimpl, hookspec
from erp_core.plugins.manifest import (
    MenuItem,
    PeriodicTask,
    Permission,
    PluginManifest,
    RouterMount,
)

__version__ = "0.1.0"
#: Version of the kernel's plugin API (manifests, hooks, services).
KERNEL_API = "1.0"

__all__ = [
    "KERNEL_API",
    "MenuItem",
    "PeriodicTask",
    "Permission",
    "PluginManifest",
    "RouterMount",
    "__version__",
    "hookimpl",
    "hookspec",
]
