"""Test plugin 'test_gamma': its own migration branch (downgraded alone in tests)."""

from erp_core import Permission, PluginManifest, RouterMount

MANIFEST = PluginManifest(
    name="test_gamma",
    version="0.1.0",
    title="Gamma (test)",
    description="Items in a table of its own.",
    stage=3,
    permissions=(Permission(name="test_gamma.item.read", title="Read items"),),
    routers=(RouterMount(target="erp_test_gamma.api:router", prefix="/gamma"),),
    hooks=("erp_test_gamma.hooks",),
    models="erp_test_gamma.models",
    migrations="erp_test_gamma:migrations/versions",
)
