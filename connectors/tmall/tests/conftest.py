"""Fixtures: a seeded sandbox served on loopback, and connectors pointed at it.

Connectors built here have no rate limiter and a recording ``sleep``, so that back-off and
throttling are asserted on, not waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_connector_tmall.channel import TmallChannel
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.http import RetryPolicy
from erp_core.channels.interfaces import ChannelContext, Cursor, Window
from erp_core.testing.sandbox import serve

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


class Sleeps:
    """A ``sleep`` that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class _Current:
    """An ASGI app forwarding to the current test's sandbox: one loopback server serves the
    whole session (starting and stopping uvicorn for every test costs more than the tests)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture(scope="session")
def _gateway() -> Iterator[tuple[_Current, str]]:
    current = _Current()
    with serve(current) as url:
        yield current, url


@pytest.fixture
def sandbox(_gateway: tuple[_Current, str]) -> Iterator[TmallSandbox]:
    """A fresh sandbox (seed 7) reachable over HTTP, as :func:`running` would serve it."""
    current, url = _gateway
    box = TmallSandbox(seed=7)
    current.app, box.base_url = box.app, url
    yield box
    current.app, box.base_url = None, ""


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


ChannelFactory = Callable[..., TmallChannel]


@pytest.fixture
def make_channel(sandbox: TmallSandbox, sleeps: Sleeps) -> Iterator[ChannelFactory]:
    """``make_channel(**overrides)``: a connector for the sandbox's shop.

    Overrides: ``secret``, ``app_key``, ``token``, ``config`` (merged), ``now`` and
    ``retry``; anything else goes to :class:`TmallChannel`.
    """
    made: list[TmallChannel] = []

    def make(**kw: Any) -> TmallChannel:
        spec = sandbox.account()
        context = ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=spec.shop_id,
            app_key=kw.pop("app_key", spec.app_key),
            config={**spec.config, **kw.pop("config", {})},
            secrets={"app_secret": kw.pop("secret", spec.secrets["app_secret"])},
            access_token=kw.pop("token", spec.access_token),
        )
        kw.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.01, deadline=30))
        channel = TmallChannel(context, limiter=False, sleep=sleeps, **kw)
        made.append(channel)
        return channel

    yield make
    for channel in made:
        channel.close()


def _fetch_all(fetch: Callable[[Cursor], Any], start: Window | Cursor) -> tuple[list[Any], int]:
    items: list[Any] = []
    cursor: Cursor | None = start if isinstance(start, Cursor) else Cursor(window=start)
    pages = 0
    while cursor is not None:
        page = fetch(cursor)
        items.extend(page.items)
        cursor = page.next
        pages += 1
    return items, pages


@pytest.fixture
def fetch_all() -> Callable[[Callable[[Cursor], Any], Window | Cursor], tuple[list[Any], int]]:
    """``fetch_all(channel.fetch_orders, window or cursor)``: every item (repeats kept) from
    there to the window's end, and the pages read."""
    return _fetch_all


@pytest.fixture
def t0() -> datetime:
    return T0


def split(start: datetime, end: datetime, step: timedelta) -> list[Window]:
    out = []
    while start < end:
        out.append(Window(start=start, end=min(end, start + step)))
        start += step
    return out


@pytest.fixture
def windows() -> Callable[[datetime, datetime, timedelta], list[Window]]:
    """``windows(start, end, step)``: contiguous half-open windows."""
    return split
