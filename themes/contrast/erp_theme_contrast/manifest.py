"""The contrast theme's manifest (entry point ``erp.themes: contrast``)."""

from erp_core import PluginManifest

MANIFEST = PluginManifest(
    name="contrast",
    kind="theme",
    version="0.1.0",
    title="High contrast",
    description=(
        "Dark background, bright text and strong focus rings, for long shifts and low vision."
    ),
    depends=("default",),
    templates="erp_theme_contrast:templates",
    static="erp_theme_contrast:static",
    translations="erp_theme_contrast:locale",
)
