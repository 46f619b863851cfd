"""The kernel's conformance kit against TmallChannel and TmallSandbox."""

from erp_core.testing.conformance import SalesChannelConformance


class TestConformance(SalesChannelConformance):
    connector = "tmall"
