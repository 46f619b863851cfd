"""The connector inside the kernel: a channel account made from the sandbox's credentials,
the sync engine fetching every order and refund, and the inbox taking pushed messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from erp_connector_tmall.channel import TmallChannel
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels import service as svc
from erp_core.channels import sync
from erp_core.channels.interfaces import TokenSet
from erp_core.channels.types import Order, Refund
from erp_core.plugins.hookspecs import hookimpl
from erp_core.plugins.registry import PluginRegistry

_names = count()


class Recorder:
    def __init__(self) -> None:
        self.orders: list[Order] = []
        self.refunds: list[Refund] = []

    @hookimpl
    def erp_channel_order(
        self, session: Any, tenant_id: int, account_id: int, order: Order
    ) -> None:
        self.orders.append(order)

    @hookimpl
    def erp_channel_refund(
        self, session: Any, tenant_id: int, account_id: int, refund: Refund
    ) -> None:
        self.refunds.append(refund)


@pytest.fixture
def rec(erp_registry: PluginRegistry) -> Iterator[Recorder]:
    recorder = Recorder()
    erp_registry.pm.register(recorder, name=f"test:tmall-recorder-{next(_names)}")
    yield recorder
    erp_registry.pm.unregister(recorder)


@pytest.fixture
def shop(
    erp_db: Any, erp_registry: Any, erp_settings: Any, make_tenant: Any, sandbox: TmallSandbox
) -> tuple[int, int]:
    """(tenant id, account id) of a tenant whose Tmall account is the sandbox's shop."""
    tenant = make_tenant("tmall-shop", plugins=("tmall",))
    spec = sandbox.account()
    with erp_db.tenant_session(tenant.id) as s:
        account = svc.create_account(
            s,
            erp_registry,
            erp_settings,
            connector="tmall",
            shop_id=spec.shop_id,
            name="云栖生活旗舰店",
            app_key=spec.app_key,
            config=dict(spec.config),
            secrets=dict(spec.secrets),
        )
        assert spec.access_token is not None
        svc.set_tokens(
            s,
            erp_settings,
            account,
            TokenSet(
                access_token=spec.access_token,
                expires_at=spec.token_expires_at,
                refresh_token=spec.refresh_token,
            ),
        )
        return tenant.id, account.id


def test_the_sync_engine_fetches_every_order_and_refund(
    erp_db: Any,
    erp_registry: Any,
    erp_settings: Any,
    sandbox: TmallSandbox,
    shop: tuple[int, int],
    rec: Recorder,
) -> None:
    tenant_id, account_id = shop
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    since, until = now - timedelta(hours=40), now - timedelta(hours=3)
    sandbox.generate(since, until, orders=260, refunds=45)
    result = sync.run(
        erp_db, erp_registry, erp_settings, tenant_id, account_id, "orders", since, until
    )
    expected = sandbox.expected_orders(since, until)
    assert {o.order_id for o in rec.orders} == set(expected)
    assert result.new == 260 and result.windows == 2
    refunds = sync.run(
        erp_db, erp_registry, erp_settings, tenant_id, account_id, "refunds", since, until
    )
    assert {r.refund_id for r in rec.refunds} == set(sandbox.expected_refunds(since, until))
    assert refunds.new == 45
    # Run again: the same versions are not delivered twice.
    again = sync.run(
        erp_db, erp_registry, erp_settings, tenant_id, account_id, "orders", since, until
    )
    assert again.new == 0 and again.changed == 0 and len(rec.orders) == 260


def test_the_inbox_takes_a_pushed_message(
    client: Any, sandbox: TmallSandbox, shop: tuple[int, int], rec: Recorder
) -> None:
    _tenant_id, account_id = shop
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=datetime.now(UTC))
    push = sandbox.push(tid)
    for _ in range(2):  # a redelivery is stored and delivered once
        answer = client.post(f"/hooks/tmall/{account_id}", content=push.body, headers=push.headers)
        assert answer.status_code == 200
        assert answer.json() == {"confirm": push.message_id}
    assert [o.order_id for o in rec.orders] == [tid]
    assert rec.orders[0].receiver is not None and rec.orders[0].lines
    bad = sandbox.tamper(sandbox.push(tid))
    refused = client.post(f"/hooks/tmall/{account_id}", content=bad.body, headers=bad.headers)
    assert (refused.status_code, refused.text) == (400, TmallChannel.failure_body)
