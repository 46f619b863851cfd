"""Incremental fetch over real HTTP against the sandbox: windows, pages, errors, back-off."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from erp_connector_tmall.channel import TRADE_FIELDS, TmallChannel
from erp_connector_tmall.protocol import format_time
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.http import RetryPolicy
from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelContext,
    ChannelError,
    ChannelRejected,
    ChannelThrottled,
    Cursor,
    Window,
)
from erp_core.channels.signing import top_sign

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


def pages_asked(box: TmallSandbox) -> list[int]:
    return [
        int(c.params["page_no"])
        for c in box.calls
        if c.api == "taobao.trades.sold.increment.get" and not c.error
    ]


def test_every_order_once_across_windows_and_pages(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any, windows: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(days=2), orders=420)
    channel = make_channel()
    seen: Counter[str] = Counter()
    for window in windows(T0, T0 + timedelta(days=2), timedelta(hours=6)):
        items, _pages = fetch_all(channel.fetch_orders, window)
        for order in items:
            assert window.start <= order.modified_at < window.end
            assert order.account == sandbox.shop_id
        expected = sandbox.expected_orders(window.start, window.end)
        assert {o.order_id for o in items} == set(expected)
        assert {o.order_id: o.modified_at for o in items} == expected
        seen.update({o.order_id for o in items})
    assert len(seen) == 420 and set(seen.values()) == {1}


def test_pages_are_read_from_the_last_backwards(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(days=1), orders=333)
    window = Window(start=T0, end=T0 + timedelta(days=1))
    items, pages = fetch_all(make_channel().fetch_orders, window)
    assert pages == 4 and len({o.order_id for o in items}) == 333
    # page 1 once to learn total_results, then 4, 3, 2, 1
    assert pages_asked(sandbox) == [1, 4, 3, 2, 1]
    first = next(c for c in sandbox.calls if c.api == "taobao.trades.sold.increment.get")
    assert first.params["page_size"] == "100" and first.params["use_has_next"] == "false"
    assert first.params["fields"] == TRADE_FIELDS
    assert "fixed" in first.params["type"].split(",")


def test_one_page_windows_take_one_call(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(hours=1), orders=40)
    items, pages = fetch_all(
        make_channel().fetch_orders, Window(start=T0, end=T0 + timedelta(hours=1))
    )
    assert (len(items), pages) == (40, 1) and pages_asked(sandbox) == [1]


def test_orders_changed_during_the_fetch_leave_no_gap(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    """Rows of unread pages leave the window while we page; nothing still in it is missed."""
    sandbox.generate(T0, T0 + timedelta(hours=12), orders=350)
    window = Window(start=T0, end=T0 + timedelta(hours=12))
    channel = make_channel()
    page = channel.fetch_orders(Cursor(window=window))
    got = {o.order_id for o in page.items}
    # The newest orders (page 1, unread) are modified now: they leave this window.
    newest = sorted(sandbox.expected_orders(T0, window.end).items(), key=lambda kv: kv[1])[-30:]
    for tid, _ in newest:
        sandbox.modify(tid, at=window.end + timedelta(hours=1))
    cursor = page.next
    while cursor is not None:
        page = channel.fetch_orders(cursor)
        got |= {o.order_id for o in page.items}
        cursor = page.next
    assert set(sandbox.expected_orders(window.start, window.end)) <= got


def test_forward_paging_would_have_lost_rows(sandbox: TmallSandbox) -> None:
    """Why the connector pages backwards: the same change loses rows read front to back."""
    sandbox.generate(T0, T0 + timedelta(hours=12), orders=350)
    spec = sandbox.account()

    def page(no: int) -> list[str]:
        params = {
            "method": "taobao.trades.sold.increment.get",
            "app_key": spec.app_key,
            "session": spec.access_token or "",
            "timestamp": format_time(datetime.now(UTC)),
            "format": "json",
            "v": "2.0",
            "sign_method": "md5",
            "fields": "tid,modified",
            "start_modified": "2026-11-11 08:00:00",
            "end_modified": "2026-11-11 20:00:00",
            "page_no": str(no),
            "page_size": "100",
            "type": "fixed,guarantee_trade,step,cod",
        }
        params["sign"] = top_sign(params, spec.secrets["app_secret"], "md5")
        _status, body = sandbox.handle(params)
        trades = body["trades_sold_increment_get_response"].get("trades", {}).get("trade", [])
        return [str(t["tid"]) for t in trades]

    got = set(page(1))
    for tid in list(got)[:30]:
        sandbox.modify(tid, at=T0 + timedelta(days=1))
    for no in (2, 3, 4):
        got |= set(page(no))
    assert not set(sandbox.expected_orders(T0, T0 + timedelta(hours=12))) <= got


def test_window_end_is_exclusive_and_fractions_are_handled(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    on_edge = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0 + timedelta(hours=1))
    inside = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0 + timedelta(minutes=59))
    channel = make_channel()
    first, _ = fetch_all(channel.fetch_orders, Window(start=T0, end=T0 + timedelta(hours=1)))
    second, _ = fetch_all(
        channel.fetch_orders, Window(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2))
    )
    assert [o.order_id for o in first] == [inside]
    assert [o.order_id for o in second] == [on_edge]
    # A window inside one second holds no TOP time: answered without a call.
    calls = len(sandbox.calls)
    tiny = Window(start=T0 + timedelta(microseconds=10), end=T0 + timedelta(microseconds=900))
    assert channel.fetch_orders(Cursor(window=tiny)).items == ()
    assert len(sandbox.calls) == calls
    # Fractional bounds: the first whole second counts, the instant itself is kept.
    frac = Window(
        start=T0 + timedelta(minutes=59, microseconds=1), end=T0 + timedelta(hours=1, seconds=1)
    )
    assert [o.order_id for o in fetch_all(channel.fetch_orders, frac)[0]] == [on_edge]


def test_a_fetch_resumes_from_a_stored_token(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(days=1), orders=250)
    window = Window(start=T0, end=T0 + timedelta(days=1))
    page = make_channel().fetch_orders(Cursor(window=window))
    assert page.next is not None and page.next.token == "2"
    # "restart": a new connector instance and only the stored token
    rest, _ = fetch_all(make_channel().fetch_orders, page.next)
    ids = {o.order_id for o in page.items} | {o.order_id for o in rest}
    assert ids == set(sandbox.expected_orders(T0, window.end))
    # An unreadable token starts the window over instead of failing.
    again, _ = fetch_all(make_channel().fetch_orders, Cursor(window=window, token="garbage"))
    assert {o.order_id for o in again} == ids


def test_get_order_matches_the_incremental_version(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(hours=3), orders=30)
    channel = make_channel()
    items, _ = fetch_all(channel.fetch_orders, Window(start=T0, end=T0 + timedelta(hours=3)))
    for order in items[:10]:
        assert channel.get_order(order.order_id) == order
    with pytest.raises(ChannelRejected) as info:
        channel.get_order("1")
    assert "isv.trade-not-exist" in str(info.value) and info.value.code == "15"


# --- protocol enforcement -----------------------------------------------------------------------


class LongPages(TmallChannel):
    page_size: ClassVar[int] = 101


def test_sandbox_refuses_an_over_long_window(sandbox: TmallSandbox, make_channel: Any) -> None:
    window = Window(start=T0, end=T0 + timedelta(days=1, seconds=1))
    with pytest.raises(ChannelRejected) as info:
        make_channel().fetch_orders(Cursor(window=window))
    assert info.value.code == "41" and sandbox.errors() == ["41"]
    # exactly one day is fine
    make_channel().fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(days=1))))
    assert sandbox.errors() == ["41"]


def test_sandbox_refuses_pages_over_100(sandbox: TmallSandbox) -> None:
    spec = sandbox.account()
    channel = LongPages(
        ChannelContext(
            account_id=1,
            tenant_id=1,
            shop_id=spec.shop_id,
            app_key=spec.app_key,
            config=spec.config,
            secrets=spec.secrets,
            access_token=spec.access_token,
        ),
        limiter=False,
    )
    with pytest.raises(ChannelRejected, match="page_size") as info:
        channel.fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(hours=1))))
    assert info.value.code == "41"
    channel.close()


def test_a_bad_signature_is_an_auth_error(sandbox: TmallSandbox, make_channel: Any) -> None:
    with pytest.raises(ChannelAuthError) as info:
        make_channel(secret="not-the-secret").get_order("1")
    assert sandbox.errors() == ["25"] and "25" in str(info.value)
    with pytest.raises(ChannelAuthError):
        make_channel(app_key="99999999").get_order("1")
    assert sandbox.errors()[-1] == "29"


@pytest.mark.parametrize("skew", [timedelta(minutes=-11), timedelta(minutes=11)])
def test_a_stale_or_future_timestamp_is_refused(
    sandbox: TmallSandbox, make_channel: Any, skew: timedelta
) -> None:
    channel = make_channel(now=lambda: datetime.now(UTC) + skew)
    with pytest.raises(ChannelRejected) as info:
        channel.fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(hours=1))))
    assert info.value.code == "31" and sandbox.errors() == ["31"]
    # within ten minutes is accepted
    make_channel(now=lambda: datetime.now(UTC) - timedelta(minutes=9)).fetch_orders(
        Cursor(window=Window(start=T0, end=T0 + timedelta(hours=1)))
    )
    assert sandbox.errors() == ["31"]


def test_gateway_checks_in_order(sandbox: TmallSandbox) -> None:
    spec = sandbox.account()
    now = format_time(datetime.now(UTC))
    good = {
        "method": "taobao.trades.sold.increment.get",
        "app_key": spec.app_key,
        "session": spec.access_token or "",
        "timestamp": now,
        "format": "json",
        "v": "2.0",
        "fields": "tid",
        "start_modified": "2026-11-11 08:00:00",
        "end_modified": "2026-11-11 09:00:00",
    }

    def code(**changes: str | None) -> int | None:
        merged = {**good, **changes}
        params = {k: v for k, v in merged.items() if v is not None}
        params["sign"] = top_sign(params, spec.secrets["app_secret"], "md5")
        body = sandbox.handle(params)[1]
        error = body.get("error_response")
        return error["code"] if error else None

    assert code() is None
    assert code(method=None) == 21
    assert code(method="taobao.no.such") == 22
    assert code(app_key=None) == 28
    assert code(timestamp="2026/11/11") == 31
    assert code(v="3.0") == 34
    assert code(format="xml") == 23
    assert code(session=None) == 26
    assert code(session="61000") == 27
    assert code(fields=None) == 40
    assert code(end_modified="2026-11-11 08:00:00") == 41  # start == end
    assert code(page_size="0") == 41
    assert code(page_no="0") == 41
    assert code(start_modified="yesterday") == 41
    unsigned = {**good}
    assert sandbox.handle(unsigned)[1]["error_response"]["code"] == 24


def test_throttling_backs_off_for_the_ban_and_succeeds(
    sandbox: TmallSandbox, make_channel: Any, sleeps: Any
) -> None:
    sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0)
    sandbox.throttle(2)
    page = make_channel().fetch_orders(Cursor(window=Window(start=T0, end=T0 + timedelta(hours=1))))
    assert len(page.items) == 1
    assert sandbox.errors() == ["7", "7"]
    assert sleeps.calls == [1.0, 1.0]  # "This ban will last for 1 more seconds"


def test_throttling_that_outlasts_the_retries_raises_throttled(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    sandbox.throttle(10)
    channel = make_channel(retry=RetryPolicy(max_attempts=3, base_delay=0.0))
    with pytest.raises(ChannelThrottled) as info:
        channel.get_order("1")
    assert info.value.retry_after == 1.0 and sandbox.errors() == ["7"] * 3


@pytest.mark.parametrize("http_status", [None, 500, 502, 503])
def test_transient_failures_are_retried(
    sandbox: TmallSandbox, make_channel: Any, sleeps: Any, http_status: int | None
) -> None:
    tid = sandbox.order_with_status("TRADE_FINISHED", at=T0)
    sandbox.fail(2, http_status=http_status)
    assert make_channel().get_order(tid).order_id == tid
    assert len(sleeps.calls) == 2
    sandbox.fail(5, http_status=http_status)
    with pytest.raises(ChannelError) as info:
        make_channel(retry=RetryPolicy(max_attempts=2, base_delay=0.0)).get_order(tid)
    assert not isinstance(info.value, ChannelRejected | ChannelAuthError)


def test_expired_session_then_refresh(sandbox: TmallSandbox, make_channel: Any) -> None:
    tid = sandbox.order_with_status("WAIT_BUYER_PAY", at=T0)
    channel = make_channel()
    old = sandbox.account()
    sandbox.expire_tokens()
    with pytest.raises(ChannelAuthError) as info:
        channel.get_order(tid)
    assert "session-expired" in str(info.value) and sandbox.errors() == ["27"]
    assert old.refresh_token is not None
    tokens = channel.refresh_token(old.refresh_token)
    assert tokens.access_token != old.access_token and tokens.refresh_token
    assert tokens.expires_at is not None and tokens.expires_at > datetime.now(UTC)
    assert tokens.refresh_expires_at is not None and tokens.refresh_expires_at > tokens.expires_at
    assert channel.get_order(tid).order_id == tid  # the same instance uses the new session
    assert make_channel(token=tokens.access_token).get_order(tid).order_id == tid
    with pytest.raises(ChannelAuthError):
        channel.refresh_token("6101-not-a-token")


def test_concurrent_fetches(sandbox: TmallSandbox, make_channel: Any, fetch_all: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sandbox.generate(T0, T0 + timedelta(days=1), orders=240)
    windows = [
        Window(start=T0 + timedelta(hours=h), end=T0 + timedelta(hours=h + 6))
        for h in (0, 6, 12, 18)
    ]
    channel = make_channel()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda w: fetch_all(channel.fetch_orders, w)[0], windows))
    assert sum(len({o.order_id for o in r}) for r in results) == 240
