"""The default theme's manifest (entry point ``erp.themes: default``)."""

from erp_core import PluginManifest

MANIFEST = PluginManifest(
    name="default",
    kind="theme",
    version="0.1.0",
    title="Default",
    description="The standard look: light, calm colours, side navigation.",
    templates="erp_theme_default:templates",
    static="erp_theme_default:static",
    translations="erp_theme_default:locale",
)
