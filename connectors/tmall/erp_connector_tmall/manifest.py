"""Plugin manifest of the Taobao/Tmall connector."""

from erp_core import PluginManifest

MANIFEST = PluginManifest(
    name="tmall",
    version="0.1.0",
    title="Tmall / Taobao",
    description="Orders, refunds, ship-back and stock for Taobao and Tmall shops (TOP API).",
    kind="connector",
    stage=1,
    channel="erp_connector_tmall.channel:TmallChannel",
    sandbox="erp_connector_tmall.sandbox:TmallSandbox",
)
