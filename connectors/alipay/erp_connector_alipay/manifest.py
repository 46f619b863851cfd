"""Plugin manifest of the Alipay connector."""

from erp_core import PluginManifest

MANIFEST = PluginManifest(
    name="alipay",
    version="0.1.0",
    title="Alipay",
    description="Payments, refunds, notifications and bills through Alipay (OpenAPI, RSA2).",
    kind="connector",
    stage=1,
    channel="erp_connector_alipay.channel:AlipayChannel",
    sandbox="erp_connector_alipay.sandbox:AlipaySandbox",
)
