"""A plugin whose manifest is invalid (bad permission names, menu without permission)."""

from erp_core import MenuItem, Permission, PluginManifest

MANIFEST = PluginManifest(
    name="test_invalid",
    version="0.1.0",
    title="Invalid test plugin",
    stage=9,
    permissions=(Permission(name="other.thing.read", title="Not ours"),),
    menus=(MenuItem(id="x", title="X", href="/x", permission=""),),
)
