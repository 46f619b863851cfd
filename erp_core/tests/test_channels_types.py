"""The normalized channel types: immutable, exact money, aware times, clear errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erp_core.channels import (
    Address,
    BillKind,
    BillRow,
    Cursor,
    LineRefundStatus,
    Order,
    OrderLine,
    OrderStatus,
    Page,
    Payment,
    PaymentRequest,
    PaymentStatus,
    Refund,
    RefundRequest,
    RefundStatus,
    Shipment,
    StockLevel,
    Window,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 11, 0, 0, 5, tzinfo=CST)

money = st.decimals(min_value=0, max_value=Decimal("99999999.99"), places=2, allow_nan=False)
negative = st.decimals(max_value=Decimal("-0.01"), places=2, allow_nan=False, allow_infinity=False)
aware = st.datetimes(timezones=st.sampled_from([UTC, CST]))
naive = st.datetimes()


def line(**kw: object) -> OrderLine:
    base: dict[str, object] = dict(
        line_id="L1",
        platform_sku_id="5001",
        merchant_sku="TEA-250G",
        title="西湖龙井 250g",
        quantity=2,
        unit_price=Decimal("88.00"),
        platform_discount=Decimal("5.00"),
        merchant_discount=Decimal("10.00"),
        paid=Decimal("161.00"),
    )
    base.update(kw)
    return OrderLine(**base)  # type: ignore[arg-type]


def order(**kw: object) -> Order:
    base: dict[str, object] = dict(
        order_id="3001",
        account="shop-1",
        status=OrderStatus.PAID,
        raw_status="WAIT_SELLER_SEND_GOODS",
        receiver=Address(
            name="张三",
            phone="13800000000",
            province="浙江省",
            city="杭州市",
            district="西湖区",
            detail="文三路 1 号",
            postcode="310000",
        ),
        lines=(line(),),
        shipping_fee=Decimal("0"),
        total_paid=Decimal("161.00"),
        created_at=T0,
        modified_at=T0,
    )
    base.update(kw)
    return Order(**base)  # type: ignore[arg-type]


def test_an_order_is_immutable_and_keeps_the_raw_status():
    o = order()
    assert o.status is OrderStatus.PAID and o.raw_status == "WAIT_SELLER_SEND_GOODS"
    assert o.line("L1").merchant_sku == "TEA-250G"
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.status = OrderStatus.SHIPPED  # type: ignore[misc]
    with pytest.raises(KeyError):
        o.line("nope")
    assert not hasattr(o, "__dict__")  # slots


def test_statuses_are_str_enums_and_strings_are_accepted():
    o = order(status="shipped")
    assert o.status is OrderStatus.SHIPPED and o.status == "shipped"
    assert {s.value for s in RefundStatus} >= {
        "requested",
        "waiting_return",
        "returned",
        "refused",
        "refunded",
        "closed",
    }
    assert {s.value for s in PaymentStatus} >= {
        "pending",
        "succeeded",
        "closed",
        "refunded",
        "partially_refunded",
    }
    with pytest.raises(ValueError, match=r"Order.status must be one of"):
        order(status="teleported")


@given(price=money, paid=money, qty=st.integers(min_value=1, max_value=10_000))
def test_valid_lines_are_accepted(price: Decimal, paid: Decimal, qty: int) -> None:
    ln = line(unit_price=price, paid=paid, quantity=qty)
    assert ln.quantity == qty and ln.unit_price == price
    assert ln.refund_status is LineRefundStatus.NONE


@given(qty=st.integers(max_value=0))
def test_quantity_must_be_positive(qty: int) -> None:
    with pytest.raises(ValueError, match="quantity must be greater than 0"):
        line(quantity=qty)


@given(amount=negative, field=st.sampled_from(["unit_price", "paid", "merchant_discount"]))
def test_negative_amounts_are_refused(amount: Decimal, field: str) -> None:
    with pytest.raises(ValueError, match=f"OrderLine.{field} must not be negative"):
        line(**{field: amount})


@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=1e6))
def test_floats_are_never_money(value: float) -> None:
    with pytest.raises(ValueError, match="must be a Decimal"):
        line(paid=value)
    with pytest.raises(ValueError, match="must be a Decimal"):
        order(total_paid=value)


def test_non_finite_amounts_are_refused():
    for bad in (Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError, match="finite"):
            order(shipping_fee=bad)


@given(when=naive)
def test_naive_times_are_refused(when: datetime) -> None:
    with pytest.raises(ValueError, match=r"Order.modified_at must be timezone-aware"):
        order(modified_at=when)
    with pytest.raises(ValueError, match=r"Refund.created_at must be timezone-aware"):
        Refund(
            refund_id="R1",
            order_id="3001",
            amount=Decimal(1),
            status=RefundStatus.REQUESTED,
            raw_status="WAIT_SELLER_AGREE",
            created_at=when,
            modified_at=T0,
        )


@given(when=aware)
def test_aware_times_of_any_zone_are_accepted(when: datetime) -> None:
    assert order(paid_at=when).paid_at == when


def test_order_lines_are_checked():
    with pytest.raises(ValueError, match="at least one OrderLine"):
        order(lines=())
    with pytest.raises(ValueError, match="repeat a line id"):
        order(lines=(line(), line()))
    o = order(lines=[line(line_id="A"), line(line_id="B")])
    assert isinstance(o.lines, tuple) and [ln.line_id for ln in o.lines] == ["A", "B"]
    with pytest.raises(ValueError, match=r"Order.order_id must not be empty"):
        order(order_id=" ")
    with pytest.raises(ValueError, match="3-letter"):
        order(currency="RMB!")


def test_payment_refunded_cannot_exceed_the_amount():
    p = Payment(
        out_trade_no="T1",
        amount=Decimal("10.00"),
        refunded=Decimal("4"),
        status=PaymentStatus.PARTIALLY_REFUNDED,
        raw_status="TRADE_SUCCESS",
    )
    assert p.trade_no == "" and p.currency == "CNY"
    with pytest.raises(ValueError, match="exceeds"):
        dataclasses.replace(p, refunded=Decimal("10.01"))


def test_bill_rows_keep_an_immutable_raw_row():
    row = BillRow(
        trade_no="2026111122001",
        out_trade_no="T1",
        kind="refund",  # type: ignore[arg-type]  # the enum's value is accepted
        amount=Decimal("3.00"),
        fee=Decimal("-0.02"),
        out_request_no="R1",
        happened_at=T0,
        raw={"业务类型": "退款"},
    )
    assert row.kind is BillKind.REFUND and row.raw["业务类型"] == "退款"
    with pytest.raises(TypeError):
        row.raw["业务类型"] = "x"  # type: ignore[index]
    assert hash(row) == hash(dataclasses.replace(row))
    with pytest.raises(ValueError, match=r"BillRow.amount must not be negative"):
        dataclasses.replace(row, amount=Decimal("-3"))


def test_shipments_and_stock_levels():
    whole = Shipment(order_id="3001", tracking_no="SF123", courier_code="SF")
    split = Shipment(
        order_id="3001",
        line_ids=["L1"],  # type: ignore[arg-type]  # any sequence; stored as a tuple
        tracking_no="SF124",
        courier_code="SF",
    )
    assert not whole.partial and split.partial and split.line_ids == ("L1",)
    with pytest.raises(ValueError, match="repeat"):
        Shipment(order_id="3001", line_ids=("L1", "L1"), tracking_no="x", courier_code="SF")
    with pytest.raises(ValueError, match="tracking_no must not be empty"):
        Shipment(order_id="3001", tracking_no="", courier_code="SF")
    assert StockLevel(merchant_sku="TEA", quantity=-2).quantity == -2
    with pytest.raises(ValueError, match=r"StockLevel.quantity must be an int"):
        StockLevel(merchant_sku="TEA", quantity=True)


def test_windows_cursors_pages_and_requests():
    w = Window(start=T0, end=T0 + timedelta(hours=1))
    assert w.length == timedelta(hours=1)
    with pytest.raises(ValueError, match="must be after"):
        Window(start=T0, end=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(start=T0.replace(tzinfo=None), end=T0)
    page: Page[Order] = Page(items=(order(),), next=Cursor(window=w, token="2"))
    assert not page.last and Page(items=[order()]).items[0].order_id == "3001"  # type: ignore[arg-type]
    assert Page(items=()).last
    with pytest.raises(ValueError, match="greater than 0"):
        PaymentRequest(out_trade_no="T1", amount=Decimal(0), subject="x", method="page")
    with pytest.raises(ValueError, match="out_request_no"):
        RefundRequest(out_trade_no="T1", out_request_no="", amount=Decimal(1))


def test_a_tracking_trail_is_validated_and_knows_delivery() -> None:
    from erp_core.channels.types import TrackingStep, TrackingTrail

    t0 = datetime(2026, 11, 11, 9, 0, tzinfo=UTC)
    got = TrackingStep(at=t0, description="快件已揽收", action="collected")
    signed = TrackingStep(at=t0 + timedelta(days=1), description="已签收", action="delivered")
    trail = TrackingTrail(order_id="1", tracking_no="SF1", courier="顺丰", steps=(got, signed))
    assert trail.delivered and not TrackingTrail(order_id="1", steps=(got,)).delivered
    assert not TrackingTrail(order_id="1").delivered
    with pytest.raises(ValueError, match="oldest first"):
        TrackingTrail(order_id="1", steps=(signed, got))
    with pytest.raises(ValueError, match="action"):
        TrackingStep(at=t0, description="x", action="teleported")
    with pytest.raises(ValueError, match="timezone-aware"):
        TrackingStep(at=datetime(2026, 11, 11), description="x")
    with pytest.raises(ValueError, match="description"):
        TrackingStep(at=t0, description=" ")
    with pytest.raises(ValueError, match="steps"):
        TrackingTrail(order_id="1", steps=("collected",))  # type: ignore[arg-type]
