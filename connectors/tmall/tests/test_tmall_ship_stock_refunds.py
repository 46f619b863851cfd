"""Ship-back, stock push and refund fetch against the sandbox over HTTP."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from erp_connector_tmall.sandbox import TmallSandbox

from erp_core.channels.http import TransientError
from erp_core.channels.interfaces import ChannelRejected, Window
from erp_core.channels.types import (
    LineRefundStatus,
    OrderStatus,
    RefundStatus,
    Shipment,
    StockLevel,
)

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)


def apis(box: TmallSandbox) -> list[str]:
    return [c.api for c in box.calls if not c.error]


# --- ship-back ---------------------------------------------------------------------------------


def test_split_shipment_then_the_rest(sandbox: TmallSandbox, make_channel: Any) -> None:
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0, lines=3)
    channel = make_channel()
    order = channel.get_order(tid)
    first, *rest = [ln.line_id for ln in order.lines]
    channel.ship(
        Shipment(order_id=tid, line_ids=(first,), tracking_no="YT1234567890", courier_code="YTO")
    )
    assert sandbox.shipments() == [
        {"order_id": tid, "line_ids": [first], "tracking_no": "YT1234567890", "courier_code": "YTO"}
    ]
    sent = next(c for c in sandbox.calls if c.api == "taobao.logistics.offline.send")
    assert (sent.params["is_split"], sent.params["sub_tid"]) == ("1", first)
    partly = channel.get_order(tid)
    assert partly.status is OrderStatus.PARTIALLY_SHIPPED
    assert partly.raw_status == "SELLER_CONSIGNED_PART" and partly.shipped_at is not None

    # The same lines again with the same waybill: no error, nothing new at the platform.
    channel.ship(
        Shipment(order_id=tid, line_ids=(first,), tracking_no="YT1234567890", courier_code="YTO")
    )
    assert len(sandbox.shipments()) == 1
    assert "15" in sandbox.errors()  # TOP answered B04; the connector checked and accepted

    # The rest as a whole-order shipment.
    channel.ship(Shipment(order_id=tid, tracking_no="ZT5555555555", courier_code="ZTO"))
    assert sandbox.shipments()[1] == {
        "order_id": tid,
        "line_ids": [],
        "tracking_no": "ZT5555555555",
        "courier_code": "ZTO",
    }
    assert channel.get_order(tid).status is OrderStatus.SHIPPED
    assert len(rest) == 2


def test_logistics_trail_of_a_whole_and_of_a_split_shipment(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    sandbox.trail_pace = 32 * 3600 / 0.3  # the courier's day and a half in 0.3 s
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0, lines=2)
    channel = make_channel()
    first, second = [ln.line_id for ln in channel.get_order(tid).lines]
    with pytest.raises(ChannelRejected, match="B02"):  # nothing shipped yet: no trail
        channel.logistics_trail(tid)
    channel.ship(
        Shipment(order_id=tid, line_ids=(first,), tracking_no="SF1234567890", courier_code="SF")
    )
    time.sleep(1.5)  # TOP's times are whole seconds: the ship-back's is rounded up
    trail = channel.logistics_trail(tid, line_ids=(first,), tracking_no="SF1234567890")
    assert trail is not None
    call = [c for c in sandbox.calls if c.api == "taobao.logistics.trace.search"][-1]
    assert (call.params["is_split"], call.params["sub_tid"]) == ("1", first)
    assert (trail.tracking_no, trail.courier) == ("SF1234567890", "顺丰速运")
    assert [x.action for x in trail.steps] == [
        "collected",
        "in_transit",
        "in_transit",
        "out_for_delivery",
        "delivered",
    ]
    assert trail.delivered and all(x.at.tzinfo is not None for x in trail.steps)
    assert trail.steps == tuple(sorted(trail.steps, key=lambda x: x.at))
    with pytest.raises(ChannelRejected, match="B02"):  # the other line has not shipped
        channel.logistics_trail(tid, line_ids=(second,))

    sandbox.trail_pace = 1.0  # real time: just shipped, the courier has not come yet
    channel.ship(Shipment(order_id=tid, tracking_no="YT5555555555", courier_code="YTO"))
    early = channel.logistics_trail(tid, line_ids=(second,))
    assert early is not None and early.steps == () and not early.delivered
    assert early.tracking_no == "YT5555555555" and early.courier == "圆通速递"


def test_reshipping_a_whole_order_is_idempotent_only_with_the_same_waybill(
    sandbox: TmallSandbox, make_channel: Any
) -> None:
    tid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=T0, lines=2)
    channel = make_channel()
    shipment = Shipment(order_id=tid, tracking_no="SF1400000001", courier_code="SF")
    channel.ship(shipment)
    channel.ship(shipment)
    assert len(sandbox.shipments()) == 1
    with pytest.raises(ChannelRejected) as info:
        channel.ship(Shipment(order_id=tid, tracking_no="SF1400000002", courier_code="SF"))
    assert "B04" in str(info.value)


@pytest.mark.parametrize(
    ("status", "line_ids", "sub_code"),
    [
        ("WAIT_BUYER_PAY", (), "B04"),  # not paid: cannot ship
        ("TRADE_CLOSED_BY_TAOBAO", (), "B04"),
        ("WAIT_SELLER_SEND_GOODS", ("999",), "P38"),  # a line of another order
    ],
)
def test_shipments_the_platform_refuses(
    sandbox: TmallSandbox,
    make_channel: Any,
    status: str,
    line_ids: tuple[str, ...],
    sub_code: str,
) -> None:
    tid = sandbox.order_with_status(status, at=T0, lines=2)
    with pytest.raises(ChannelRejected, match=sub_code):
        make_channel().ship(
            Shipment(order_id=tid, line_ids=line_ids, tracking_no="YT000000001", courier_code="YTO")
        )
    assert sandbox.shipments() == []


def test_shipping_an_unknown_order(sandbox: TmallSandbox, make_channel: Any) -> None:
    with pytest.raises(ChannelRejected, match="B01"):
        make_channel().ship(Shipment(order_id="42", tracking_no="YT000000001", courier_code="YTO"))


# --- stock ---------------------------------------------------------------------------------------


def test_full_then_incremental_stock_push(sandbox: TmallSandbox, make_channel: Any) -> None:
    items = sandbox.stock_items()
    channel = make_channel()
    full = {code: 10 + n for n, (code, _item, _sku) in enumerate(items)}
    channel.push_stock(
        [
            StockLevel(merchant_sku=c, quantity=full[c], platform_item_id=i, platform_sku_id=s)
            for c, i, s in items
        ],
        full=True,
    )
    assert sandbox.stock() == full
    kinds = Counter(c.params["type"] for c in sandbox.calls if "quantity" in c.api)
    assert set(kinds) == {"1"}
    # several SKUs of one item go in one call; items without SKUs use item.quantity.update
    used = Counter(apis(sandbox))
    items_with_skus = len({i for _c, i, s in items if s})
    assert used["taobao.skus.quantity.update"] == items_with_skus
    assert used["taobao.item.quantity.update"] == sum(1 for _c, _i, s in items if not s)
    no_sku = next(c for c in sandbox.calls if c.api == "taobao.item.quantity.update")
    assert "sku_id" not in no_sku.params

    code, item, sku = next(x for x in items if x[2])
    plain = next(x for x in items if not x[2])
    channel.push_stock(
        [
            StockLevel(merchant_sku=code, quantity=5, platform_item_id=item, platform_sku_id=sku),
            StockLevel(merchant_sku=plain[0], quantity=-3, platform_item_id=plain[1]),
            StockLevel(merchant_sku="NOTHING", quantity=0, platform_item_id="1"),  # no change
        ],
        full=False,
    )
    after = sandbox.stock()
    assert after[code] == full[code] + 5 and after[plain[0]] == full[plain[0]] - 3
    assert {k: v for k, v in after.items() if k not in (code, plain[0])} == {
        k: v for k, v in full.items() if k not in (code, plain[0])
    }
    last = [c for c in sandbox.calls if c.api == "taobao.item.quantity.update"][-2:]
    assert [c.params["type"] for c in last] == ["2", "2"]
    assert last[0].params["sku_id"] == sku


def test_stock_located_by_merchant_code(sandbox: TmallSandbox, make_channel: Any) -> None:
    channel = make_channel()
    channel.push_stock(
        [
            StockLevel(merchant_sku="CUP-316-GRN", quantity=7),
            StockLevel(merchant_sku="TEA-LJ-250", quantity=3),
        ],
        full=True,
    )
    stock = sandbox.stock()
    assert stock["CUP-316-GRN"] == 7 and stock["TEA-LJ-250"] == 3
    assert "taobao.skus.custom.get" in apis(sandbox) and "taobao.items.custom.get" in apis(sandbox)
    with pytest.raises(ChannelRejected, match="NO-SUCH-SKU"):
        channel.push_stock([StockLevel(merchant_sku="NO-SUCH-SKU", quantity=1)], full=True)


def test_full_levels_below_zero_are_sent_as_zero(sandbox: TmallSandbox, make_channel: Any) -> None:
    make_channel().push_stock([StockLevel(merchant_sku="EAR-BT-01", quantity=-4)], full=True)
    assert sandbox.stock()["EAR-BT-01"] == 0


def test_an_incremental_push_is_never_retried(sandbox: TmallSandbox, make_channel: Any) -> None:
    code, item, sku = sandbox.stock_items()[0]
    before = sandbox.stock()[code]
    sandbox.fail(1)
    with pytest.raises(TransientError):
        make_channel().push_stock(
            [StockLevel(merchant_sku=code, quantity=2, platform_item_id=item, platform_sku_id=sku)],
            full=False,
        )
    assert sandbox.stock()[code] == before
    assert len([c for c in sandbox.calls if "quantity" in c.api]) == 1


def test_more_than_twenty_skus_of_one_item_are_chunked(
    make_channel: Any, sandbox: TmallSandbox
) -> None:
    code, item, _sku = next(x for x in sandbox.stock_items() if x[2])
    skus = [s for c, i, s in sandbox.stock_items() if i == item]
    levels = [
        StockLevel(merchant_sku=code, quantity=1, platform_item_id=item, platform_sku_id=s)
        for s in skus
    ]
    # 25 distinct (fake) SKU ids: the sandbox refuses unknown ones, so only count the calls.
    fake = [
        StockLevel(merchant_sku=f"X{n}", quantity=1, platform_item_id=item, platform_sku_id=str(n))
        for n in range(25)
    ]
    with pytest.raises(ChannelRejected):
        make_channel().push_stock(fake, full=True)
    call = next(c for c in sandbox.calls if c.api == "taobao.skus.quantity.update")
    assert len(call.params["skuid_quantities"].split(";")) == 20
    make_channel().push_stock(levels, full=True)
    assert all(sandbox.stock()[c] == 1 for c, i, _s in sandbox.stock_items() if i == item)


# --- refunds -------------------------------------------------------------------------------------


def test_refunds_across_windows_and_every_status(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any, windows: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(days=1), orders=200, refunds=130)
    channel = make_channel()
    fetched = {}
    for window in windows(T0, T0 + timedelta(days=1), timedelta(hours=8)):
        items, _ = fetch_all(channel.fetch_refunds, window)
        assert {r.refund_id for r in items} == set(
            sandbox.expected_refunds(window.start, window.end)
        )
        fetched.update({r.refund_id: r for r in items})
    assert len(fetched) == 130
    assert {r.status for r in fetched.values()} == set(RefundStatus) - {RefundStatus.UNKNOWN}
    # the refund's line carries its status in the trade
    for refund in list(fetched.values())[:25]:
        (line_id,) = refund.line_ids
        line = channel.get_order(refund.order_id).line(line_id)
        assert line.raw_refund_status == refund.raw_status
        assert line.refund_status is not LineRefundStatus.NONE
        assert refund.amount <= line.paid and refund.created_at <= refund.modified_at


def test_refund_pages_go_backwards_too(
    sandbox: TmallSandbox, make_channel: Any, fetch_all: Any
) -> None:
    sandbox.generate(T0, T0 + timedelta(days=1), orders=120, refunds=150)
    items, pages = fetch_all(
        make_channel().fetch_refunds, Window(start=T0, end=T0 + timedelta(days=1))
    )
    assert pages == 2 and len({r.refund_id for r in items}) == 150
    asked = [
        int(c.params["page_no"]) for c in sandbox.calls if c.api == "taobao.refunds.receive.get"
    ]
    assert asked == [1, 2, 1]
