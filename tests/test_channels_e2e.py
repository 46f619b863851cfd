"""What a merchant does with the two first connectors, end to end against their sandboxes.

A Tmall shop added and authorized on the command line, backfilled with a progress report and
its tokens refreshed; an Alipay account added through the API and its payment notification
received at ``/hooks``; a Tmall message stored when it arrived and replayed much later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from erp_connector_alipay.sandbox import AlipaySandbox
from erp_connector_tmall.sandbox import TmallSandbox
from sqlalchemy import select

from erp_core.channels import service as svc
from erp_core.channels.inbox_models import InboxMessage
from erp_core.channels.interfaces import PaymentRequest
from erp_core.channels.models import ChannelAccount
from erp_core.channels.sync_models import ChannelObject
from erp_core.testing.sandbox import running


@pytest.fixture
def cli(erp_cli: Any) -> Any:
    return erp_cli


@pytest.fixture
def tmall() -> Iterator[TmallSandbox]:
    with running(TmallSandbox(seed=11)) as box:
        yield box


@pytest.fixture
def alipay() -> Iterator[AlipaySandbox]:
    with running(AlipaySandbox(seed=12)) as box:
        yield box


def _objects(db: Any, tenant_id: int, account_id: int) -> dict[str, datetime]:
    with db.tenant_session(tenant_id) as s:
        rows = s.execute(
            select(ChannelObject.platform_id, ChannelObject.modified_at).where(
                ChannelObject.account_id == account_id, ChannelObject.kind == "order"
            )
        ).all()
    return {pid: (m if m.tzinfo else m.replace(tzinfo=UTC)) for pid, m in rows}


def test_tmall_shop_added_authorized_and_backfilled_from_the_command_line(
    cli: Any, make_tenant: Any, erp_db: Any, tmall: TmallSandbox
) -> None:
    tenant = make_tenant("shop", plugins=("tmall",))
    spec = tmall.account()
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=3)
    tmall.generate(start, end, orders=120, refunds=10)

    added = cli(
        "channels", "accounts", "add", "--tenant", "shop", "--connector", "tmall",
        "--shop-id", spec.shop_id, "--name", "天猫旗舰店", "--app-key", spec.app_key,
        "--config", json.dumps(dict(spec.config)), "--secrets-stdin",
        input=json.dumps(dict(spec.secrets)),
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    with erp_db.tenant_session(tenant.id) as s:
        account_id = s.scalar(select(ChannelAccount.id))
    assert account_id is not None
    tokens = {
        "access_token": spec.access_token,
        "expires_at": spec.token_expires_at.isoformat() if spec.token_expires_at else None,
        "refresh_token": spec.refresh_token,
    }
    authorized = cli(
        "channels", "accounts", "tokens", str(account_id), "--tenant", "shop", "--stdin",
        input=json.dumps(tokens),
    )  # fmt: skip
    assert authorized.exit_code == 0, authorized.output

    backfill = cli(
        "channels", "sync", str(account_id), "--tenant", "shop",
        "--since", start.isoformat(), "--until", end.isoformat(),
    )  # fmt: skip
    assert backfill.exit_code == 0, backfill.output
    lines = backfill.output.splitlines()
    assert [ln for ln in lines if ln.startswith("window ")][-1].startswith("window 3/3 ")
    assert f"new {len(tmall.expected_orders(start, end))}" in lines[-1]
    assert _objects(erp_db, tenant.id, account_id) == tmall.expected_orders(start, end)
    secrets = [*spec.secrets.values(), spec.access_token or "", spec.refresh_token or ""]
    assert not any(s in backfill.output + added.output + authorized.output for s in secrets)

    # the platform expires the session: refresh on demand, and the next sync works again
    tmall.expire_tokens()
    refreshed = cli("channels", "accounts", "refresh", str(account_id), "--tenant", "shop")
    assert refreshed.exit_code == 0, refreshed.output
    again = cli("channels", "sync", str(account_id), "--tenant", "shop", "--until", end.isoformat())
    assert again.exit_code == 0, again.output
    assert "new 0" in again.output.splitlines()[-1]


def test_alipay_account_added_through_the_api_takes_its_notification(
    client: Any, make_tenant: Any, erp_db: Any, erp_settings: Any, alipay: AlipaySandbox
) -> None:
    tenant = make_tenant("pay", plugins=("alipay",))
    spec = alipay.account()
    made = client.post(
        "/api/v1/channels/accounts",
        json={
            "connector": "alipay",
            "shop_id": spec.shop_id,
            "name": "支付宝",
            "app_key": spec.app_key,
            "config": dict(spec.config),
            "secrets": dict(spec.secrets),
        },
        headers=tenant.auth,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["kind"] == "payment"
    assert sorted(body["secret_fields_set"]) == sorted(spec.secrets)
    assert not any(v in made.text for v in spec.secrets.values())

    with erp_db.tenant_session(tenant.id) as s:
        account = svc.get_account(s, body["id"])
        channel = svc.connector_class(client.app.state.registry, "alipay")(
            svc.account_context(s, account, erp_settings)
        )
    created = channel.create_payment(
        PaymentRequest(
            out_trade_no="SO-20261130-1",
            amount=Decimal("128.00"),
            subject="保温杯 & 茶叶=2件",
            method="precreate",
        )
    )
    assert created
    notified = alipay.pay("SO-20261130-1")
    res = client.post(
        f"/hooks/alipay/{body['id']}", content=notified.body, headers=dict(notified.headers)
    )
    assert (res.status_code, res.text) == (200, "success")
    with erp_db.tenant_session(tenant.id) as s:
        (row,) = s.scalars(select(InboxMessage)).all()
        assert row.state == "processed" and row.kind == "payment"


def test_a_tmall_message_stored_on_arrival_replays_much_later(
    cli: Any, client: Any, make_tenant: Any, erp_db: Any, erp_settings: Any, tmall: TmallSandbox
) -> None:
    tenant = make_tenant("late", plugins=("tmall",))
    spec = tmall.account()
    with erp_db.tenant_session(tenant.id) as s:
        account = svc.create_account(
            s,
            client.app.state.registry,
            erp_settings,
            connector="tmall",
            shop_id=spec.shop_id,
            name="Late",
            app_key=spec.app_key,
            config=dict(spec.config),
            secrets=dict(spec.secrets),
        )
        from erp_core.channels.interfaces import TokenSet

        svc.set_tokens(s, erp_settings, account, TokenSet(access_token=spec.access_token or ""))
        account_id = account.id
    now = datetime.now(UTC)
    order_id = tmall.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(days=2))
    old = tmall.push(order_id, signed_at=now - timedelta(days=2))
    # arriving now, a message signed two days ago is refused (and a sender cannot claim an
    # earlier arrival with the kernel's own header)
    late = client.post(
        f"/hooks/tmall/{account_id}",
        content=old.body,
        headers={**old.headers, "x-erp-received-at": (now - timedelta(days=2)).isoformat()},
    )
    assert late.status_code >= 400
    # stored when it arrived two days ago (processing failed then), it replays today
    with erp_db.tenant_session(tenant.id) as s:
        s.add(
            InboxMessage(
                account_id=account_id,
                connector="tmall",
                message_id=old.message_id,
                topic="taobao_trade_TradeBuyerPay",
                kind="order",
                subject_id=order_id,
                headers={k.lower(): v for k, v in old.headers.items()},
                body=old.body,
                query={},
                state="failed",
                attempts=1,
                result="failed",
                received_at=now - timedelta(days=2) + timedelta(seconds=3),
            )
        )
    replay = cli("inbox", "replay", "--tenant", "late", "--account", str(account_id))
    assert replay.exit_code == 0, replay.output
    with erp_db.tenant_session(tenant.id) as s:
        (row,) = s.scalars(select(InboxMessage)).all()
        assert row.state == "processed", row.last_error
    assert order_id in _objects(erp_db, tenant.id, account_id)
