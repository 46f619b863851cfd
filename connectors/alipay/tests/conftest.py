"""Fixtures: the sandbox served over real HTTP, a channel on its account, and a clock that
only moves when slept on (so back-off is checked without waiting)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from erp_connector_alipay.channel import AlipayChannel
from erp_connector_alipay.sandbox import AlipaySandbox

from erp_core.channels import ChannelContext
from erp_core.channels.http import RateLimiter
from erp_core.testing.sandbox import running


class FakeClock:
    """Monotonic time that advances only by what is slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)


def context(sandbox: AlipaySandbox, **changes: Any) -> ChannelContext:
    spec = sandbox.account()
    fields: dict[str, Any] = {
        "account_id": 7,
        "tenant_id": 1,
        "shop_id": spec.shop_id,
        "app_key": spec.app_key,
        "config": dict(spec.config),
        "secrets": dict(spec.secrets),
        "base_url": spec.config["base_url"],
    }
    fields.update(changes)
    return ChannelContext(**fields)


def make_channel(
    sandbox: AlipaySandbox, clock: FakeClock | None = None, **kw: Any
) -> AlipayChannel:
    """A channel on the sandbox's account; with ``clock``, every wait is simulated."""
    ctx_changes = kw.pop("ctx", {})
    if clock is not None:
        kw.setdefault("limiter", RateLimiter(1000.0, clock=clock, sleep=clock.sleep))
        kw.setdefault("clock", clock)
        kw.setdefault("sleep", clock.sleep)
    return AlipayChannel(context(sandbox, **ctx_changes), **kw)


@pytest.fixture(scope="session")
def served() -> Iterator[AlipaySandbox]:
    """One sandbox on loopback for the whole run (stopping a server takes a while)."""
    with running(AlipaySandbox(seed=42)) as box:
        assert isinstance(box, AlipaySandbox)
        yield box


@pytest.fixture
def sandbox(served: AlipaySandbox) -> AlipaySandbox:
    """The served sandbox, as new: no trades, no calls, nothing throttled."""
    served.reset()
    return served


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def new_channel(sandbox: AlipaySandbox, clock: FakeClock) -> Iterator[Any]:
    """``new_channel(ctx={...context changes}, **channel kwargs)`` on the sandbox, with the
    fake clock (tests import nothing from here: pytest runs them with importlib)."""
    made: list[AlipayChannel] = []

    def new(**kw: Any) -> AlipayChannel:
        ch = make_channel(sandbox, clock, **kw)
        made.append(ch)
        return ch

    yield new
    for ch in made:
        ch.close()


@pytest.fixture
def channel(new_channel: Any) -> AlipayChannel:
    channel: AlipayChannel = new_channel()
    return channel
