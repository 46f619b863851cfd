"""Pushed TMC messages: verification, parsing, confirm replies and redelivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_connector_tmall.channel import TmallChannel, sign_push
from erp_connector_tmall.sandbox import TmallSandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from erp_core.channels.http import RetryPolicy
from erp_core.channels.interfaces import ChannelContext, InvalidMessage
from erp_core.channels.types import RefundStatus
from erp_core.testing.sandbox import PushRequest, serve

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


def parse(channel: TmallChannel, push: PushRequest) -> Any:
    return channel.parse_message(push.headers, push.body, push.query)


def test_an_order_message_is_verified_and_names_the_trade(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0)
    push = sandbox.push(tid)
    msg = parse(make_channel(), push)
    assert (msg.kind, msg.subject_id, msg.subject) == ("order", tid, None)
    assert msg.topic == "taobao_trade_TradeBuyerPay"
    assert msg.message_id == push.message_id
    assert msg.occurred_at == T0
    assert msg.payload["content"]["status"] == "WAIT_SELLER_SEND_GOODS"
    assert (msg.reply_status, msg.reply_content_type) == (200, "application/json")
    assert json.loads(msg.reply) == {"confirm": push.message_id}
    # deterministic: parsing the stored request again gives the same message
    assert parse(make_channel(), push) == msg
    assert parse(
        make_channel(), sandbox.push(tid, topic="taobao_trade_TradeMemoModified")
    ).topic == ("taobao_trade_TradeMemoModified")


def test_tampered_and_forged_messages_are_refused(sandbox: TmallSandbox, make_channel: Any) -> None:
    tid = sandbox.order_with_status("WAIT_BUYER_CONFIRM_GOODS", at=T0)
    push = sandbox.push(tid)
    channel = make_channel()
    tampered = sandbox.tamper(push)
    assert tampered.body != push.body
    with pytest.raises(InvalidMessage, match="bad signature"):
        parse(channel, tampered)
    with pytest.raises(InvalidMessage):
        parse(make_channel(secret="another-secret"), push)
    with pytest.raises(InvalidMessage, match="app key"):
        channel.parse_message({**push.headers, "x-top-appkey": "1"}, push.body, {})
    unsigned = {k: v for k, v in push.headers.items() if k != "x-top-sign"}
    with pytest.raises(InvalidMessage, match="not signed"):
        channel.parse_message(unsigned, push.body, {})
    with pytest.raises(InvalidMessage, match="sign method"):
        channel.parse_message({**push.headers, "x-top-sign-method": "sha1"}, push.body, {})
    # header names are case-insensitive
    upper = {k.upper(): v for k, v in push.headers.items()}
    assert channel.parse_message(upper, push.body, {}).subject_id == tid


def test_stale_messages_are_refused_unless_the_account_turns_the_check_off(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tid = sandbox.order_with_status("TRADE_FINISHED", at=T0)
    stale = sandbox.push(tid, signed_at=datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(InvalidMessage, match="too old"):
        parse(make_channel(), stale)
    future = sandbox.push(tid, signed_at=datetime.now(UTC) + timedelta(minutes=6))
    with pytest.raises(InvalidMessage, match="too old"):
        parse(make_channel(), future)
    fresh = sandbox.push(tid, signed_at=datetime.now(UTC) - timedelta(minutes=4))
    assert parse(make_channel(), fresh).subject_id == tid
    # e.g. to replay stored messages later
    assert parse(make_channel(config={"push_max_age": "0"}), stale).subject_id == tid


def _signed(sandbox: TmallSandbox, message: dict[str, Any]) -> PushRequest:
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    stamp = str(int(datetime.now(UTC).timestamp() * 1000))
    sign = sign_push(body, app_key=sandbox.app_key, secret=sandbox.app_secret, timestamp=stamp)
    headers = {"x-top-appkey": sandbox.app_key, "x-top-timestamp": stamp, "x-top-sign": sign}
    return PushRequest(body=body, headers=headers, message_id=str(message.get("id", "")))


def test_well_signed_but_wrong_messages_are_refused(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    channel = make_channel()
    another_seller = {
        "topic": "taobao_trade_TradeBuyerPay",
        "id": 1,
        "user_id": 1,
        "content": json.dumps({"tid": 5}),
    }
    with pytest.raises(InvalidMessage, match="another seller"):
        parse(channel, _signed(sandbox, another_seller))
    for broken in (
        {"topic": "taobao_trade_TradeBuyerPay", "id": 2, "content": "{not json"},
        {"id": 3, "content": "{}"},
        {"topic": "taobao_trade_TradeBuyerPay", "id": 4, "content": json.dumps({"oid": 1})},
    ):
        with pytest.raises(InvalidMessage):
            parse(channel, _signed(sandbox, broken))
    with pytest.raises(InvalidMessage, match="UTF-8"):
        push = _signed(sandbox, {"topic": "x", "id": 5})
        channel.parse_message(push.headers, b"\xff\xfe", {})
    # a topic the kernel only stores
    other = parse(
        channel,
        _signed(sandbox, {"topic": "taobao_item_ItemUpdate", "id": 6, "content": '{"num_iid": 1}'}),
    )
    assert (other.kind, other.subject_id) == ("", "")


def test_a_refund_message_carries_the_refund(sandbox: TmallSandbox, make_channel: Any) -> None:
    sandbox.generate(T0, T0 + timedelta(hours=2), orders=10, refunds=3)
    refund_id = next(iter(sandbox.expected_refunds(T0, T0 + timedelta(hours=2))))
    refund_row = sandbox.refund_json(refund_id)
    push = sandbox.push(str(refund_row["tid"]), topic="taobao_refund_RefundCreated")
    msg = parse(make_channel(), push)
    assert msg.kind == "refund" and msg.subject is not None
    latest = max(
        (
            r
            for r in sandbox.expected_refunds(T0, T0 + timedelta(hours=2))
            if sandbox.refund_json(r)["tid"] == refund_row["tid"]
        ),
        key=lambda r: (sandbox.refund_json(r)["modified"], int(r)),
    )
    assert msg.subject_id == latest
    assert msg.subject.refund_id == latest
    assert any(c.api == "taobao.refund.get" for c in sandbox.calls)


def test_a_refund_message_falls_back_to_its_topic_when_top_is_unreachable(
    sandbox: TmallSandbox,
) -> None:
    sandbox.generate(T0, T0 + timedelta(hours=2), orders=5, refunds=1)
    (refund_id,) = sandbox.expected_refunds(T0, T0 + timedelta(hours=2))
    tid = str(sandbox.refund_json(refund_id)["tid"])
    push = sandbox.push(tid, topic="taobao_refund_RefundSuccess")
    spec = sandbox.account()
    offline = TmallChannel(
        ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=spec.shop_id,
            app_key=spec.app_key,
            config={"base_url": "http://127.0.0.1:9/router/rest"},
            secrets=spec.secrets,
            access_token=spec.access_token,
        ),
        limiter=False,
        retry=RetryPolicy(max_attempts=1),
    )
    msg = parse(offline, push)
    assert msg.subject is not None and msg.subject.refund_id == refund_id
    assert msg.subject.status is RefundStatus.REFUNDED
    offline.close()


# --- delivery over HTTP --------------------------------------------------------------------------


@pytest.fixture
def receiver(make_channel: Any) -> Iterator[tuple[str, list[int]]]:
    """An ERP-like endpoint: answers 500 to the first request, then verifies with the channel."""
    channel = make_channel()
    seen: list[int] = []

    async def hook(request: Request) -> Response:
        body = await request.body()
        seen.append(len(seen) + 1)
        if len(seen) == 1:
            return Response("busy", status_code=500)
        try:
            msg = channel.parse_message(dict(request.headers), body, dict(request.query_params))
        except InvalidMessage:
            status, text, ctype = channel.failure_reply()
            return Response(text, status_code=status, media_type=ctype)
        return Response(msg.reply, status_code=msg.reply_status, media_type=msg.reply_content_type)

    app = Starlette(routes=[Route("/hooks/tmall/1", hook, methods=["POST"])])
    with serve(app) as url:
        yield url + "/hooks/tmall/1", seen


def test_deliver_redelivers_until_confirmed(
    sandbox: TmallSandbox, receiver: tuple[str, list[int]]
) -> None:
    url, seen = receiver
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0)
    push = sandbox.push(tid)
    assert sandbox.deliver(url, push, attempts=3, sleep=lambda s: None)
    assert [(d.attempt, d.status, d.confirmed) for d in sandbox.deliveries] == [
        (1, 500, False),
        (2, 200, True),
    ]
    assert seen == [1, 2]


def test_a_tampered_message_is_never_confirmed(
    sandbox: TmallSandbox, receiver: tuple[str, list[int]]
) -> None:
    url, _seen = receiver
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0)
    bad = sandbox.tamper(sandbox.push(tid))
    assert not sandbox.deliver(url, bad, attempts=3, sleep=lambda s: None)
    assert [d.status for d in sandbox.deliveries] == [500, 400, 400]
    assert TmallChannel.failure_reply() == (
        400,
        '{"confirm":null,"error":"invalid message"}',
        "application/json",
    )
