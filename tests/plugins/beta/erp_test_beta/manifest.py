"""Test plugin 'test_beta': depends on test_alpha and implements test_alpha's hookspec."""

from erp_core import MenuItem, Permission, PluginManifest, RouterMount

MANIFEST = PluginManifest(
    name="test_beta",
    version="0.2.0",
    title="Beta (test)",
    description="Tags alpha notes; needs test_alpha.",
    stage=2,
    depends=("test_alpha",),
    permissions=(Permission(name="test_beta.ping.read", title="Ping beta"),),
    menus=(
        MenuItem(
            id="test_beta.ping",
            title="Beta",
            href="/api/v1/beta/ping",
            permission="test_beta.ping.read",
        ),
    ),
    routers=(RouterMount(target="erp_test_beta.api:router", prefix="/beta"),),
    hooks=("erp_test_beta.hooks",),
    channel="erp_test_beta.channel:BetaChannel",
)
