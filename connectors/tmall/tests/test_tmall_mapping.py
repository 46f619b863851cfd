"""Status and money mapping of TOP trades and refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from erp_connector_tmall.channel import (
    line_from_top,
    order_from_trade,
    refund_from_top,
)
from erp_connector_tmall.protocol import LINE_REFUND_STATUS, ORDER_STATUS, REFUND_STATUS
from erp_connector_tmall.sandbox import TmallSandbox
from hypothesis import given
from hypothesis import strategies as st

from erp_core.channels.interfaces import ChannelRejected
from erp_core.channels.types import LineRefundStatus, OrderStatus, RefundStatus

EXPECTED_ORDER = {
    "TRADE_NO_CREATE_PAY": OrderStatus.PENDING_PAYMENT,
    "WAIT_BUYER_PAY": OrderStatus.PENDING_PAYMENT,
    "PAY_PENDING": OrderStatus.PENDING_PAYMENT,
    "WAIT_PRE_AUTH_CONFIRM": OrderStatus.PENDING_PAYMENT,
    "PAID_FORBID_CONSIGN": OrderStatus.PENDING_PAYMENT,
    "WAIT_SELLER_SEND_GOODS": OrderStatus.PAID,
    "SELLER_CONSIGNED_PART": OrderStatus.PARTIALLY_SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": OrderStatus.SHIPPED,
    "TRADE_BUYER_SIGNED": OrderStatus.SHIPPED,
    "TRADE_FINISHED": OrderStatus.COMPLETED,
    "TRADE_CLOSED": OrderStatus.CLOSED,
    "TRADE_CLOSED_BY_TAOBAO": OrderStatus.CANCELLED,
}
EXPECTED_REFUND = {
    "WAIT_SELLER_AGREE": RefundStatus.REQUESTED,
    "WAIT_BUYER_RETURN_GOODS": RefundStatus.WAITING_RETURN,
    "WAIT_SELLER_CONFIRM_GOODS": RefundStatus.RETURNED,
    "SELLER_REFUSE_BUYER": RefundStatus.REFUSED,
    "CLOSED": RefundStatus.CLOSED,
    "SUCCESS": RefundStatus.REFUNDED,
}
AT = datetime(2026, 11, 11, 10, 0, tzinfo=UTC)


def trade(status: str = "WAIT_SELLER_SEND_GOODS", **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tid": 3001,
        "tid_str": "3001",
        "status": status,
        "buyer_nick": "tb123",
        "created": "2026-11-11 09:00:00",
        "modified": "2026-11-11 18:00:00",
        "pay_time": "2026-11-11 09:05:00",
        "payment": "61.90",
        "post_fee": "12.00",
        "receiver_name": "王芳",
        "receiver_mobile": "13800000000",
        "receiver_state": "浙江省",
        "receiver_city": "杭州市",
        "receiver_district": "西湖区",
        "receiver_town": "文新街道",
        "receiver_address": "文新街道文三路1号",
        "orders": {
            "order": [
                {
                    "oid": 3001,
                    "price": "49.90",
                    "num": 1,
                    # TOP's one-line quirk: the line payment includes the postage.
                    "payment": "61.90",
                    "divide_order_fee": "49.90",
                    "outer_sku_id": "BAG-CVS-BLK",
                    "sku_id": "4800100032",
                    "refund_status": "NO_REFUND",
                }
            ]
        },
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(("raw", "expected"), sorted(EXPECTED_ORDER.items()))
def test_every_trade_status_maps(raw: str, expected: OrderStatus) -> None:
    order = order_from_trade(trade(raw), "shop")
    assert order.status is expected and order.raw_status == raw


def test_the_tables_cover_every_status_the_sandbox_knows() -> None:
    assert set(ORDER_STATUS) == set(EXPECTED_ORDER) == set(TmallSandbox.order_statuses)
    assert set(REFUND_STATUS) == set(EXPECTED_REFUND) == set(TmallSandbox.refund_statuses)
    assert set(LINE_REFUND_STATUS) == {"NO_REFUND", *EXPECTED_REFUND}
    assert OrderStatus.UNKNOWN not in ORDER_STATUS.values()


@pytest.mark.parametrize(("raw", "expected"), sorted(EXPECTED_REFUND.items()))
def test_every_refund_status_maps_on_refunds_and_on_lines(raw: str, expected: RefundStatus) -> None:
    refund = refund_from_top(
        {
            "refund_id": 9,
            "tid": 3001,
            "oid": 3001,
            "status": raw,
            "refund_fee": "10.00",
            "created": "2026-11-11 09:00:00",
            "modified": "2026-11-11 18:00:00",
        }
    )
    assert refund.status is expected and refund.line_ids == ("3001",)
    assert refund.amount == Decimal("10.00") and refund.modified_at == AT
    line = line_from_top({"oid": 1, "price": "1.00", "num": 1, "refund_status": raw})
    assert line.refund_status.value == expected.value and line.raw_refund_status == raw


def test_no_refund_and_missing_refund_status_are_none() -> None:
    assert line_from_top({"oid": 1, "price": "1", "num": 1}).refund_status is LineRefundStatus.NONE
    line = line_from_top({"oid": 1, "price": "1", "num": 1, "refund_status": "NO_REFUND"})
    assert line.refund_status is LineRefundStatus.NONE


@given(st.text(min_size=1, max_size=30).filter(lambda s: s.strip() not in ORDER_STATUS))
def test_unknown_statuses_are_kept_raw_and_mapped_unknown(raw: str) -> None:
    order = order_from_trade(trade(raw), "shop")
    assert order.status is OrderStatus.UNKNOWN and order.raw_status == raw.strip()


def test_one_line_trade_amounts_and_receiver() -> None:
    order = order_from_trade(trade(), "shop-9")
    assert order.order_id == "3001" and order.account == "shop-9"
    line = order.line("3001")
    # the line's paid excludes the postage that TOP's line payment includes
    assert line.paid == Decimal("49.90") and order.shipping_fee == Decimal("12.00")
    assert order.total_paid == line.paid + order.shipping_fee
    assert line.merchant_sku == "BAG-CVS-BLK" and line.platform_sku_id == "4800100032"
    assert order.receiver is not None
    assert order.receiver.detail == "文新街道文三路1号"  # the town is not repeated
    assert order.receiver.province == "浙江省" and order.receiver.phone == "13800000000"
    assert order.created_at == AT - timedelta(hours=9)  # 09:00 in Beijing is 01:00 UTC
    assert order.paid_at is not None and order.paid_at.tzinfo is UTC


def test_town_is_prefixed_when_the_street_address_lacks_it() -> None:
    order = order_from_trade(trade(receiver_address="文三路1号"), "s")
    assert order.receiver is not None and order.receiver.detail == "文新街道文三路1号"


def test_discount_split_example() -> None:
    """59.00 x 2 = 118.00; item discount 5.00, seller's price cut 2.00, order-level share
    10.00 of which the platform pays 4.00: the buyer paid 118 - 5 - 2 - 10 = 101.00."""
    line = line_from_top(
        {
            "oid": 1,
            "price": "59.00",
            "num": 2,
            "discount_fee": "5.00",
            "adjust_fee": "-2.00",
            "part_mjz_discount": "10.00",
            "platform_subsidy_fee": "4.00",
            "divide_order_fee": "101.00",
            "outer_iid": "TS-COT",
        }
    )
    assert line.platform_discount == Decimal("4.00")
    assert line.merchant_discount == Decimal("13.00")
    assert line.paid == Decimal("101.00")
    assert line.merchant_sku == "TS-COT"  # no SKU: the item's merchant code


def test_a_price_raise_lowers_the_merchant_discount_but_not_below_zero() -> None:
    line = line_from_top({"oid": 1, "price": "10.00", "num": 1, "adjust_fee": "3.00"})
    assert line.merchant_discount == Decimal("0.00")
    assert line.paid == Decimal("13.00")  # recomputed: 10 + 3


cents = st.integers(min_value=0, max_value=2_000_000)


@given(
    price=st.integers(min_value=1, max_value=999_999),
    num=st.integers(min_value=1, max_value=50),
    discount=cents,
    cut=cents,
    share=cents,
    subsidy_part=st.integers(min_value=0, max_value=100),
    with_divided=st.booleans(),
)
def test_line_money_invariants(
    price: int, num: int, discount: int, cut: int, share: int, subsidy_part: int, with_divided: bool
) -> None:
    gross = price * num
    discount = min(discount, gross)
    cut = min(cut, gross - discount)
    share = min(share, gross - discount - cut)
    subsidy = share * subsidy_part // 100
    paid = gross - discount - cut - share

    def yuan(c: int) -> str:
        return f"{Decimal(c) / 100:.2f}"

    row: dict[str, object] = {
        "oid": 1,
        "price": yuan(price),
        "num": num,
        "discount_fee": yuan(discount),
        "adjust_fee": yuan(-cut),
        "part_mjz_discount": yuan(share),
        "platform_subsidy_fee": yuan(subsidy),
    }
    if with_divided:
        row["divide_order_fee"] = yuan(paid)
    line = line_from_top(row)
    for amount in (line.unit_price, line.platform_discount, line.merchant_discount, line.paid):
        assert type(amount) is Decimal and amount >= 0
    assert line.unit_price * line.quantity - line.platform_discount - line.merchant_discount == (
        line.paid
    )
    assert line.paid == Decimal(paid) / 100
    assert line.platform_discount == Decimal(subsidy) / 100


@pytest.mark.parametrize(
    "bad",
    [
        {"price": 49.9},  # a float: never an amount
        {"price": "abc"},
        {"num": 0},
        {"oid": ""},
    ],
)
def test_unreadable_lines_reject_the_trade_naming_it(bad: dict[str, object]) -> None:
    row = {**trade()["orders"]["order"][0], **bad}  # type: ignore[index]
    with pytest.raises(ChannelRejected, match="trade 3001") as info:
        order_from_trade(trade(orders={"order": [row]}), "s")
    assert info.value.code == "unreadable"


def test_sandbox_trades_convert_with_consistent_money() -> None:
    box = TmallSandbox(seed=11)
    box.generate(AT, AT + timedelta(days=1), orders=150, refunds=30)
    seen = set()
    for tid in box.expected_orders(AT, AT + timedelta(days=1)):
        order = order_from_trade(box.trade_json(tid), box.shop_id)
        seen.add(order.raw_status)
        assert order.status is not OrderStatus.UNKNOWN
        assert sum(ln.paid for ln in order.lines) + order.shipping_fee == order.total_paid
        for ln in order.lines:
            assert ln.unit_price * ln.quantity - ln.platform_discount - ln.merchant_discount == (
                ln.paid
            )
            assert ln.merchant_sku and ln.refund_status is not LineRefundStatus.UNKNOWN
        assert order.modified_at >= order.created_at
    assert seen == set(ORDER_STATUS)
