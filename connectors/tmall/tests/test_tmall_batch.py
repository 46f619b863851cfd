"""Ship-backs in TOP's batch API (``/router/batch``): the connector's ``ship_many`` and the
sandbox's batch gateway, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from erp_connector_tmall.channel import TmallChannel
from erp_connector_tmall.protocol import (
    API,
    BATCH_LIMIT,
    BATCH_PATH,
    BATCH_PUBLIC,
    BATCH_SEPARATOR,
    BATCH_SEPARATOR_HEADER,
    format_time,
)
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.http import AuthError, PlatformError
from erp_core.channels.interfaces import ChannelAuthError, ChannelContext
from erp_core.channels.signing import top_sign
from erp_core.channels.types import Shipment

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
SEND = API.OFFLINE_SEND


def paid(box: TmallSandbox, n: int, lines: int = 1) -> list[str]:
    return [
        box.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0 + timedelta(minutes=i), lines=lines)
        for i in range(n)
    ]


def whole(tid: str, waybill: str) -> Shipment:
    return Shipment(order_id=tid, tracking_no=waybill, courier_code="SF")


def sent(box: TmallSandbox) -> list[str]:
    """The ship-backs the sandbox took, by order id."""
    return [s["order_id"] for s in box.shipments()]


def test_ship_many_sends_twenty_calls_per_request(sandbox: TmallSandbox, make_channel: Any) -> None:
    tids = paid(sandbox, 45)
    channel = make_channel()
    assert channel.ship_batch == BATCH_LIMIT == 20
    outcomes = channel.ship_many([whole(t, f"SF{i:010d}") for i, t in enumerate(tids)])
    assert outcomes == [None] * 45
    assert sandbox.requests == 3  # 20 + 20 + 5
    assert sent(sandbox) == tids
    assert [s["tracking_no"] for s in sandbox.shipments()] == [f"SF{i:010d}" for i in range(45)]
    calls = [c for c in sandbox.calls if c.api == SEND]
    assert len(calls) == 45 and not any(c.error for c in calls)


def test_each_call_of_a_batch_keeps_its_own_outcome(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    ok, repeated, other_waybill, split = paid(sandbox, 4, lines=2)
    channel = make_channel()
    channel.ship(whole(repeated, "SF0000000002"))
    channel.ship(whole(other_waybill, "SF0000000003"))
    requests = sandbox.requests
    outcomes = channel.ship_many(
        [
            whole(ok, "SF0000000001"),
            whole("42", "SF0000000009"),  # unknown to the platform
            whole(repeated, "SF0000000002"),  # a repeat of a ship-back that went through
            whole(other_waybill, "SF0000000004"),  # already shipped with another waybill
            Shipment(
                order_id=split, line_ids=("999",), tracking_no="SF0000000005", courier_code="SF"
            ),  # a line of another order
        ]
    )
    first, unknown, repeat, refused, foreign = outcomes
    assert first is None and repeat is None
    assert isinstance(unknown, PlatformError) and "B01" in str(unknown)
    assert isinstance(refused, PlatformError) and "B04" in str(refused)
    assert isinstance(foreign, PlatformError) and "P38" in str(foreign)
    # one batch request, then two trade look-ups to tell the B04 answers apart
    assert sandbox.requests - requests == 3
    assert sent(sandbox) == [repeated, other_waybill, ok]


def test_a_throttled_call_of_a_batch_is_made_again_on_its_own(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tids = paid(sandbox, 3)
    channel = make_channel()
    sandbox.throttle(1)  # the quota turns the batch's first call away
    assert channel.ship_many([whole(t, f"YT{i:09d}") for i, t in enumerate(tids)]) == [None] * 3
    assert sandbox.errors() == ["7"]
    assert sandbox.requests == 2  # the batch, then the first call on its own
    assert sorted(sent(sandbox)) == sorted(tids)


@pytest.mark.parametrize("http_status", [None, 502])
def test_a_batch_the_gateway_could_not_serve_is_sent_again(
    sandbox: TmallSandbox, make_channel: Any, sleeps: Any, http_status: int | None
) -> None:
    tids = paid(sandbox, 4)
    channel = make_channel()
    sandbox.fail(1, http_status=http_status)
    assert channel.ship_many([whole(t, f"ZT{i:09d}") for i, t in enumerate(tids)]) == [None] * 4
    assert sandbox.requests == 2 and len(sleeps.calls) == 1  # one back-off, then the batch
    assert sent(sandbox) == tids


def test_a_batch_with_a_wrong_signature_fails_every_shipment(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tids = paid(sandbox, 3)
    channel = make_channel(secret="0" * 32)
    outcomes = channel.ship_many([whole(t, f"SF{i:010d}") for i, t in enumerate(tids)])
    assert all(isinstance(o, AuthError) and o.code == "25" for o in outcomes)
    assert sandbox.requests == 1 and sandbox.shipments() == []


def test_a_batch_refused_as_a_whole_goes_call_by_call(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tids = paid(sandbox, BATCH_LIMIT + 1)
    channel = make_channel()
    channel.ship_batch = BATCH_LIMIT + 1  # more than the gateway takes: refused (41)
    outcomes = channel.ship_many([whole(t, f"SF{i:010d}") for i, t in enumerate(tids)])
    assert outcomes == [None] * (BATCH_LIMIT + 1)
    assert sandbox.errors() == ["41"]
    assert sandbox.requests == 1 + BATCH_LIMIT + 1
    assert sent(sandbox) == tids


def test_one_shipment_or_an_endpoint_elsewhere_goes_through_the_router(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    (tid,) = paid(sandbox, 1)
    channel = make_channel()
    assert channel.ship_many([whole(tid, "SF0000000001")]) == [None]
    assert [c.params.get("method") for c in sandbox.calls] == [SEND]
    assert channel.batch_endpoint == sandbox.base_url + BATCH_PATH
    context = ChannelContext(
        account_id=1, tenant_id=1, shop_id="1", app_key="1", config={"base_url": "https://x/top"}
    )
    assert TmallChannel(context, limiter=False).batch_endpoint is None
    default = ChannelContext(account_id=1, tenant_id=1, shop_id="1", app_key="1")
    assert TmallChannel(default, limiter=False).batch_endpoint == (
        "https://eco.taobao.com/router/batch"
    )


def test_a_channel_without_a_session_fails_each_shipment_before_any_request(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tids = paid(sandbox, 2)
    outcomes = make_channel(token="").ship_many([whole(t, "SF0001") for t in tids])
    assert all(isinstance(o, ChannelAuthError) for o in outcomes)
    assert sandbox.requests == 0


# --- the sandbox's batch gateway, by hand ---------------------------------------------------------


def post_batch(
    box: TmallSandbox,
    calls: list[str],
    *,
    public: dict[str, str] | None = None,
    separator: str | None = None,
    signed_body: str | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """A batch request as TOP's SDKs send it; the answers, one per call (or the one error)."""
    import json

    sep = separator or BATCH_SEPARATOR
    parts = ([BATCH_PUBLIC + urlencode(public)] if public else []) + calls
    body = sep.join(parts)
    query = {
        "app_key": box.app_key,
        "timestamp": format_time(datetime.now(UTC)),
        "format": "json",
        "v": "2.0",
        "sign_method": "md5",
        "session": box.account().access_token or "",
    }
    query["sign"] = top_sign(
        query, box.app_secret, body=body if signed_body is None else signed_body
    )
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    if separator:
        headers[BATCH_SEPARATOR_HEADER] = separator
    answer = httpx.post(
        box.base_url + BATCH_PATH, params=query, content=body.encode(), headers=headers
    )
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.status_code, [json.loads(t) for t in answer.text.split(sep)]


def test_the_sandbox_answers_each_call_of_a_batch_in_order(sandbox: TmallSandbox) -> None:
    first, second = paid(sandbox, 2)
    status, answers = post_batch(
        sandbox,
        [
            urlencode({"tid": first, "out_sid": "SF0001", "company_code": "SF"}),
            "N",  # a call without parameters: no method
            urlencode({"method": "taobao.no.such.api"}),
            urlencode({"tid": second, "out_sid": "SF0002", "company_code": "SF"}),
            urlencode({"method": API.TRADE_FULLINFO, "tid": second, "fields": "tid"}),
        ],
        public={"method": SEND},  # every call's method unless it names its own
    )
    assert status == 200
    assert answers[0]["logistics_offline_send_response"]["shipping"]["is_success"] is True
    assert answers[1]["error_response"]["code"] == 40  # the public method, but no tid
    assert answers[2]["error_response"]["code"] == 22
    assert "logistics_offline_send_response" in answers[3]
    assert answers[4]["trade_fullinfo_get_response"]["trade"]["tid"] == int(second)
    assert sent(sandbox) == [first, second]


def test_the_sandbox_takes_a_separator_of_the_callers_choice(sandbox: TmallSandbox) -> None:
    tids = paid(sandbox, 2)
    _, answers = post_batch(
        sandbox,
        [urlencode({"tid": t, "out_sid": "SF0001", "company_code": "SF"}) for t in tids],
        public={"method": SEND},
        separator="|~|",
    )
    assert ["logistics_offline_send_response" in a for a in answers] == [True, True]


def test_the_sandbox_refuses_a_batch_as_a_whole(sandbox: TmallSandbox) -> None:
    tids = paid(sandbox, 2)
    calls = [urlencode({"tid": t, "out_sid": "SF0001", "company_code": "SF"}) for t in tids]
    # the body is signed: a call changed after signing fails the request's signature
    _, answers = post_batch(
        sandbox, calls, public={"method": SEND}, signed_body=BATCH_SEPARATOR.join(calls)
    )
    assert [a["error_response"]["code"] for a in answers] == [25]
    _, answers = post_batch(sandbox, calls * (BATCH_LIMIT // 2 + 1), public={"method": SEND})
    assert [a["error_response"]["code"] for a in answers] == [41]
    assert sandbox.shipments() == []
