"""The sandbox itself: reproducible data, realistic shapes, and no secret in any log."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_connector_tmall.manifest import MANIFEST
from erp_connector_tmall.protocol import LINE_REFUND_STATUS, ORDER_STATUS, REFUND_STATUS
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelError,
    Cursor,
    SalesChannel,
    Window,
)
from erp_core.channels.service import load_connector
from erp_core.channels.types import Shipment, StockLevel
from erp_core.testing.sandbox import SalesSandbox

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def snapshot(box: TmallSandbox) -> dict[str, Any]:
    ids = box.expected_orders(T0, T0 + DAY)
    return {
        "orders": {tid: box.trade_json(tid) for tid in ids},
        "refunds": {r: box.refund_json(r) for r in box.expected_refunds(T0, T0 + DAY)},
        "account": (box.app_key, box.app_secret, box.shop_id, box.account().access_token),
    }


def test_same_seed_same_shop_other_seed_other_shop() -> None:
    a, b, c = TmallSandbox(seed=5), TmallSandbox(seed=5), TmallSandbox(seed=6)
    for box in (a, b, c):
        box.generate(T0, T0 + DAY, orders=80, refunds=20)
        box.order_with_status("TRADE_FINISHED", at=T0 + timedelta(hours=3))
    assert snapshot(a) == snapshot(b)
    assert snapshot(a)["orders"] != snapshot(c)["orders"]
    assert snapshot(a)["account"] != snapshot(c)["account"]
    # the same message, but for the time it goes out (the clock's second may turn between)
    pushed = [json.loads(box.push(next(iter(snapshot(box)["orders"]))).body) for box in (a, b)]
    assert all(p.pop("outgoing_time") for p in pushed)
    assert pushed[0] == pushed[1]


def test_generated_data_looks_like_a_taobao_shop() -> None:
    box = TmallSandbox(seed=2)
    box.generate(T0, T0 + DAY, orders=300, refunds=60)
    trades = [box.trade_json(t) for t in box.expected_orders(T0, T0 + DAY)]
    assert len(trades) == 300
    assert {t["status"] for t in trades} == set(ORDER_STATUS)
    lines = [o for t in trades for o in t["orders"]["order"]]
    assert {o["refund_status"] for o in lines} == set(LINE_REFUND_STATUS)
    refunds = [box.refund_json(r) for r in box.expected_refunds(T0, T0 + DAY)]
    assert len(refunds) == 60 and {r["status"] for r in refunds} == set(REFUND_STATUS)
    assert {len(t["orders"]["order"]) for t in trades} == {1, 2, 3, 4}
    assert any(o.get("outer_sku_id") for o in lines) and any("sku_id" not in o for o in lines)
    assert any(t["buyer_message"] for t in trades) and any(t["post_fee"] != "0.00" for t in trades)
    assert any(o["part_mjz_discount"] != "0.00" for o in lines)
    assert any(o["platform_subsidy_fee"] != "0.00" for o in lines)
    assert any(o["discount_fee"] != "0.00" for o in lines)
    names = [t["receiver_name"] for t in trades]
    assert all("\u4e00" <= n[0] <= "\u9fff" for n in names)  # Chinese names
    assert len({t["receiver_state"] for t in trades}) >= 8
    # one-line trades share tid and oid, as on Taobao
    assert all(
        str(t["tid"]) == str(t["orders"]["order"][0]["oid"])
        for t in trades
        if len(t["orders"]["order"]) == 1
    )
    # modified times: many on whole hours, many sharing an instant
    modified = Counter(t["modified"] for t in trades)
    on_hours = sum(n for m, n in modified.items() if m.endswith(":00:00"))
    assert on_hours >= 60 and max(modified.values()) >= 10
    # and one exactly on the window start
    assert modified["2026-11-11 08:00:00"] >= 1


def test_generated_times_stay_inside_the_range() -> None:
    box = TmallSandbox(seed=9)
    start = T0 + timedelta(minutes=7, microseconds=5)
    box.generate(start, start + timedelta(hours=3), orders=120, refunds=20)
    assert len(box.expected_orders(start, start + timedelta(hours=3))) == 120
    assert len(box.expected_refunds(start, start + timedelta(hours=3))) == 20
    with pytest.raises(ValueError):
        box.generate(T0 + timedelta(microseconds=1), T0 + timedelta(microseconds=10), orders=1)


def test_the_manifest_names_loadable_classes() -> None:
    assert MANIFEST.problems() == []
    channel = load_connector(MANIFEST.channel or "")
    assert issubclass(channel, SalesChannel) and channel.kind == "sales"
    assert [f.name for f in channel.secret_fields] == ["app_secret"]
    assert {f.name for f in channel.config_fields} >= {"base_url", "sign_method"}
    assert issubclass(TmallSandbox, SalesSandbox) and TmallSandbox.connector == MANIFEST.name
    assert TmallSandbox(seed=0).account().config["base_url"].endswith("/router/rest")


def test_no_secret_in_logs_or_errors(
    sandbox: TmallSandbox, make_channel: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = sandbox.account()
    secrets = [spec.secrets["app_secret"], spec.access_token, spec.refresh_token]
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0, lines=2)
    channel = make_channel()
    errors: list[str] = []
    channel.fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(hours=1))))
    channel.ship(Shipment(order_id=tid, tracking_no="YT9999999999", courier_code="YTO"))
    channel.push_stock([StockLevel(merchant_sku="TEA-LJ-250", quantity=1)], full=True)
    sandbox.throttle(1)
    channel.get_order(tid)
    for bad in (
        lambda: make_channel(secret="wrong-secret-1234").get_order(tid),
        lambda: channel.ship(Shipment(order_id=tid, tracking_no="XX1", courier_code="YTO")),
    ):
        with pytest.raises(ChannelError) as info:
            bad()
        errors.append(str(info.value))
    sandbox.expire_tokens()
    with pytest.raises(ChannelAuthError) as auth:
        channel.get_order(tid)
    errors.append(str(auth.value))
    assert spec.refresh_token is not None
    tokens = channel.refresh_token(spec.refresh_token)
    channel.get_order(tid)
    secrets += [tokens.access_token, tokens.refresh_token]
    text = caplog.text + "\n".join(
        str(getattr(r, k)) for r in caplog.records for k in vars(r) if k.startswith("channel_")
    )
    assert "taobao.trade.fullinfo.get" not in text  # bodies are not logged either
    assert len(caplog.records) >= 8
    for secret in secrets:
        assert secret and secret not in text
        assert all(secret not in e for e in errors)
    assert repr(tokens).count(tokens.access_token) == 0


def test_a_bounded_history_keeps_the_latest_calls() -> None:
    """The demo and the benchmark run a sandbox for a long time: with ``history`` set it keeps
    the latest calls only, and by default every one."""
    box, every = TmallSandbox(seed=1), TmallSandbox(seed=1)
    box.history = 3
    for i in range(20):
        for b in (box, every):
            status, body = b.handle({"method": "taobao.trade.get", "n": str(i)})
            assert status == 200 and "error_response" in body  # unsigned: refused, recorded
    assert 3 <= len(box.calls) <= 6
    assert [c.params["n"] for c in box.calls[-3:]] == ["17", "18", "19"]
    assert [c.params["n"] for c in every.calls] == [str(i) for i in range(20)]
    assert len(box.errors()) == len(box.calls)


def test_forget_drops_what_was_last_changed_before_the_cutoff(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    """The demo runs for days: now and then its sandboxes forget the orders nobody touched for
    a while, with their refunds, shipments and push deliveries."""
    old = sandbox.order_with_status("TRADE_FINISHED", at=T0)
    refunded = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0)
    refund = sandbox.request_refund(refunded, at=T0 + timedelta(minutes=5))
    kept = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0 + 3 * DAY)
    channel = make_channel()
    channel.ship(Shipment(order_id=refunded, tracking_no="YT1000000001", courier_code="YTO"))
    stale = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0 - DAY)
    sandbox.history = 2
    for _ in range(2):  # nobody listens there: three failed attempts each
        sandbox.deliver("http://127.0.0.1:9/hooks", sandbox.push(kept), sleep=lambda s: None)
    assert len(sandbox.deliveries) == 6

    assert sandbox.forget(T0 + DAY) == 2  # old and stale; refunded was shipped just now
    assert set(sandbox.expected_orders(T0 - 2 * DAY, T0 + 10 * 365 * DAY)) == {refunded, kept}
    assert channel.get_order(kept).order_id == kept
    with pytest.raises(ChannelError):
        channel.get_order(old)
    with pytest.raises(ChannelError):
        channel.get_order(stale)
    assert [s["order_id"] for s in sandbox.shipments()] == [refunded]
    assert refund in sandbox.expected_refunds(T0, T0 + DAY)
    assert len(sandbox.deliveries) == 2

    assert sandbox.forget(datetime.now(UTC) + DAY) == 2
    assert sandbox.shipments() == [] and sandbox.expected_refunds(T0, T0 + DAY) == {}
    assert sandbox.forget(datetime.now(UTC) + DAY) == 0


def test_the_gateway_answers_a_form_post_as_a_query_string_or_a_multipart_form() -> None:
    """A form POST takes the gateway's own path (``_gateway``), other requests Starlette's:
    both decode the parameters alike (UTF-8 text, ``+``, escapes: the signature covers them)
    and answer the same."""
    from erp_connector_tmall.protocol import API, API_VERSION, ROUTER_PATH, format_time
    from starlette.testclient import TestClient

    from erp_core.channels.signing import top_sign

    box = TmallSandbox(seed=3)
    box.generate(T0, T0 + DAY, orders=3)
    tid = next(iter(box.expected_orders(T0, T0 + DAY)))
    params = {
        "method": API.TRADE_FULLINFO,
        "app_key": box.app_key,
        "timestamp": format_time(datetime.now(UTC)),
        "v": API_VERSION,
        "format": "json",
        "sign_method": "md5",
        "session": box.account().access_token,
        "fields": "tid,status,orders",
        "tid": tid,
        "memo": "云栖 a+b&c=d%20 ü",  # not read by the method, but signed
    }
    params["sign"] = top_sign(params, box.app_secret)
    answers = []
    with TestClient(box.app) as client:
        for response in (
            client.post(ROUTER_PATH, data=params),
            client.post(ROUTER_PATH, data=params, files={"attachment": ("a.txt", b"x")}),
            client.get(ROUTER_PATH, params=params),
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json;charset=UTF-8"
            body = response.json()
            assert "error_response" not in body, body
            body["trade_fullinfo_get_response"].pop("request_id")
            answers.append(body)
        forged = client.post(ROUTER_PATH, data={**params, "memo": "云栖"})
        missing = client.post(ROUTER_PATH + "x", data=params)
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["trade_fullinfo_get_response"]["trade"]["tid"] == int(tid)
    assert forged.json()["error_response"]["code"] == 25
    assert missing.status_code == 404
