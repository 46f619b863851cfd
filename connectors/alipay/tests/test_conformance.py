"""The kernel's connector conformance kit, run against this connector and its sandbox."""

from __future__ import annotations

from erp_core.testing.conformance import PaymentChannelConformance


class TestAlipayConformance(PaymentChannelConformance):
    connector = "alipay"
