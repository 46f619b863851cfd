"""The conformance suite against installed connectors named on the command line.

    pytest -p erp_core.testing.conformance --connector tmall --connector alipay \\
        --pyargs erp_core.testing.conformance_suite

Each ``--connector`` runs the suite of its kind (sales or payment channel); connectors of the
other kind are skipped for that suite. Without ``--connector`` every test is skipped.
"""

from __future__ import annotations

from typing import Any

import pytest

from erp_core.channels.interfaces import PaymentChannel, SalesChannel
from erp_core.testing.conformance import PaymentChannelConformance, SalesChannelConformance


def _named(config: pytest.Config) -> list[str]:
    try:
        return list(config.getoption("--connector") or [])
    except ValueError:  # the plugin was not loaded: no option
        return []


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_connector" in metafunc.fixturenames:
        names = _named(metafunc.config) or ["(none)"]
        metafunc.parametrize("conformance_connector", names, indirect=True)


def _connector(request: pytest.FixtureRequest, kind: type[Any]) -> str:
    from erp_core.channels import service

    name = str(request.param)
    if name == "(none)":
        pytest.skip("no --connector given (pytest -p erp_core.testing.conformance --connector X)")
    registry = request.getfixturevalue("erp_registry")
    cls = service.connector_class(registry, name)
    if not issubclass(cls, kind):
        pytest.skip(f"{name} is not a {kind.__name__}")
    return name


class TestSalesChannel(SalesChannelConformance):
    @pytest.fixture
    def conformance_connector(self, request: pytest.FixtureRequest) -> str:
        return _connector(request, SalesChannel)


class TestPaymentChannel(PaymentChannelConformance):
    @pytest.fixture
    def conformance_connector(self, request: pytest.FixtureRequest) -> str:
        return _connector(request, PaymentChannel)
