"""Normalized, immutable data that connectors return to the kernel.

Every connector, whatever its platform, maps the platform's payloads to these types: money is
:class:`~decimal.Decimal` (never ``float``), times are timezone-aware, statuses are normalized
enums *and* keep the platform's raw status. Products are matched by the merchant's SKU code
(``merchant_sku``), never by title. Each type validates itself on construction and raises
:class:`ValueError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

__all__ = [
    "Address",
    "BillKind",
    "BillRow",
    "LineRefundStatus",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "Refund",
    "RefundStatus",
    "Shipment",
    "StockLevel",
    "TrackingStep",
    "TrackingTrail",
]


class OrderStatus(StrEnum):
    """Where an order stands, the same for every platform."""

    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    PARTIALLY_SHIPPED = "partially_shipped"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class RefundStatus(StrEnum):
    """Where a refund or after-sale request stands."""

    REQUESTED = "requested"
    WAITING_RETURN = "waiting_return"
    RETURNED = "returned"
    REFUSED = "refused"
    REFUNDED = "refunded"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class LineRefundStatus(StrEnum):
    """The refund state of one order line (``none`` when no refund was ever asked)."""

    NONE = "none"
    REQUESTED = "requested"
    WAITING_RETURN = "waiting_return"
    RETURNED = "returned"
    REFUSED = "refused"
    REFUNDED = "refunded"
    CLOSED = "closed"
    UNKNOWN = "unknown"


class PaymentStatus(StrEnum):
    """Where a payment stands at the payment provider."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    CLOSED = "closed"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    UNKNOWN = "unknown"


class BillKind(StrEnum):
    """What a row of a provider's bill records."""

    PAYMENT = "payment"
    REFUND = "refund"


# --- validation helpers ------------------------------------------------------------------------


def _text(obj: object, name: str, *, required: bool = True, max_len: int = 1000) -> None:
    value = getattr(obj, name)
    if not isinstance(value, str):
        raise ValueError(
            f"{type(obj).__name__}.{name} must be a string, got {type(value).__name__}"
        )
    if required and not value.strip():
        raise ValueError(f"{type(obj).__name__}.{name} must not be empty")
    if len(value) > max_len:
        raise ValueError(f"{type(obj).__name__}.{name} is longer than {max_len} characters")


def _money(obj: object, name: str, *, allow_negative: bool = False) -> None:
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if isinstance(value, bool) or not isinstance(value, Decimal):
        raise ValueError(f"{where} must be a Decimal, got {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{where} must be a finite amount, got {value}")
    if not allow_negative and value < 0:
        raise ValueError(f"{where} must not be negative, got {value}")


def _when(obj: object, name: str, *, required: bool = False) -> None:
    value = getattr(obj, name)
    where = f"{type(obj).__name__}.{name}"
    if value is None:
        if required:
            raise ValueError(f"{where} is required")
        return
    if not isinstance(value, datetime):
        raise ValueError(f"{where} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{where} must be timezone-aware, got the naive {value.isoformat()}")


def _enum(obj: object, name: str, enum: type[StrEnum]) -> None:
    value = getattr(obj, name)
    if not isinstance(value, enum):
        try:
            object.__setattr__(obj, name, enum(value))
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            raise ValueError(
                f"{type(obj).__name__}.{name} must be one of {allowed}, got {value!r}"
            ) from None


def _ids(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{type(obj).__name__}.{name} must be a sequence of non-empty strings")
    object.__setattr__(obj, name, tuple(value))


# --- the types -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A receiver's address, split as Chinese platforms give it."""

    name: str
    phone: str
    province: str
    city: str
    district: str
    detail: str
    postcode: str = ""

    def __post_init__(self) -> None:
        for f in ("name", "phone", "province", "city", "district", "detail", "postcode"):
            _text(self, f, required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderLine:
    """One line (sub-order) of an order.

    ``paid`` is what the buyer paid for the line after both discounts. ``merchant_sku`` is the
    merchant's own SKU code (Taobao's ``outer_sku_id``): the only key products are matched by.
    """

    line_id: str
    platform_sku_id: str
    merchant_sku: str
    title: str
    quantity: int
    unit_price: Decimal
    platform_discount: Decimal = Decimal(0)
    merchant_discount: Decimal = Decimal(0)
    paid: Decimal
    refund_status: LineRefundStatus = LineRefundStatus.NONE
    raw_refund_status: str = ""

    def __post_init__(self) -> None:
        _text(self, "line_id")
        _text(self, "platform_sku_id", required=False)
        _text(self, "merchant_sku", required=False, max_len=200)
        _text(self, "title", required=False)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError("OrderLine.quantity must be an int")
        if self.quantity <= 0:
            raise ValueError(f"OrderLine.quantity must be greater than 0, got {self.quantity}")
        for f in ("unit_price", "platform_discount", "merchant_discount", "paid"):
            _money(self, f)
        _enum(self, "refund_status", LineRefundStatus)
        _text(self, "raw_refund_status", required=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as the platform knows it, normalized.

    ``account`` is the shop (channel account's ``shop_id``) the order belongs to. Discounts are
    totals over the order, split into what the platform pays (``platform_discount``) and what
    the merchant gives (``merchant_discount``). ``modified_at`` drives incremental sync.
    """

    order_id: str
    account: str
    status: OrderStatus
    raw_status: str
    buyer_id: str = ""
    buyer_nick: str = ""
    receiver: Address | None = None
    buyer_note: str = ""
    seller_memo: str = ""
    lines: tuple[OrderLine, ...]
    shipping_fee: Decimal = Decimal(0)
    platform_discount: Decimal = Decimal(0)
    merchant_discount: Decimal = Decimal(0)
    total_paid: Decimal
    currency: str = "CNY"
    created_at: datetime
    paid_at: datetime | None = None
    modified_at: datetime
    shipped_at: datetime | None = None

    def __post_init__(self) -> None:
        _text(self, "order_id")
        _text(self, "account")
        _enum(self, "status", OrderStatus)
        _text(self, "raw_status", required=False)
        for f in ("buyer_id", "buyer_nick", "buyer_note", "seller_memo"):
            _text(self, f, required=False, max_len=5000)
        if self.receiver is not None and not isinstance(self.receiver, Address):
            raise ValueError("Order.receiver must be an Address or None")
        lines = tuple(self.lines)
        if not lines:
            raise ValueError("Order.lines must hold at least one OrderLine")
        if not all(isinstance(ln, OrderLine) for ln in lines):
            raise ValueError("Order.lines must hold OrderLine objects")
        ids = [ln.line_id for ln in lines]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Order.lines repeat a line id: {sorted(ids)}")
        object.__setattr__(self, "lines", lines)
        for f in ("shipping_fee", "platform_discount", "merchant_discount", "total_paid"):
            _money(self, f)
        if not (isinstance(self.currency, str) and len(self.currency) == 3):
            raise ValueError(f"Order.currency must be a 3-letter code, got {self.currency!r}")
        _when(self, "created_at", required=True)
        _when(self, "modified_at", required=True)
        _when(self, "paid_at")
        _when(self, "shipped_at")

    def line(self, line_id: str) -> OrderLine:
        """The line with platform id ``line_id`` (KeyError if the order has none)."""
        for ln in self.lines:
            if ln.line_id == line_id:
                return ln
        raise KeyError(line_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refund:
    """A refund or after-sale request on an order (empty ``line_ids``: the whole order)."""

    refund_id: str
    order_id: str
    line_ids: tuple[str, ...] = ()
    amount: Decimal
    reason: str = ""
    status: RefundStatus
    raw_status: str
    created_at: datetime
    modified_at: datetime

    def __post_init__(self) -> None:
        _text(self, "refund_id")
        _text(self, "order_id")
        _ids(self, "line_ids")
        _money(self, "amount")
        _text(self, "reason", required=False, max_len=5000)
        _enum(self, "status", RefundStatus)
        _text(self, "raw_status", required=False)
        _when(self, "created_at", required=True)
        _when(self, "modified_at", required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Payment:
    """A payment at a payment provider.

    ``out_trade_no`` is the merchant's number (unique per account); ``trade_no`` the
    provider's, empty until the provider assigned one. ``refunded`` is the total refunded.
    """

    out_trade_no: str
    trade_no: str = ""
    amount: Decimal
    refunded: Decimal = Decimal(0)
    status: PaymentStatus
    raw_status: str
    currency: str = "CNY"
    created_at: datetime | None = None
    paid_at: datetime | None = None

    def __post_init__(self) -> None:
        _text(self, "out_trade_no", max_len=128)
        _text(self, "trade_no", required=False, max_len=128)
        _money(self, "amount")
        _money(self, "refunded")
        if self.refunded > self.amount:
            raise ValueError(
                f"Payment.refunded ({self.refunded}) exceeds Payment.amount ({self.amount})"
            )
        _enum(self, "status", PaymentStatus)
        _text(self, "raw_status", required=False)
        if not (isinstance(self.currency, str) and len(self.currency) == 3):
            raise ValueError(f"Payment.currency must be a 3-letter code, got {self.currency!r}")
        _when(self, "created_at")
        _when(self, "paid_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class BillRow:
    """One row of a provider's bill, for reconciliation.

    ``amount`` is positive for both kinds (``kind`` says the direction); ``fee`` is the
    provider's service fee on the row (negative when the provider gives it back on a refund).
    ``raw`` keeps the row as read, column name to text.
    """

    trade_no: str
    out_trade_no: str
    kind: BillKind
    amount: Decimal
    fee: Decimal = Decimal(0)
    out_request_no: str = ""
    happened_at: datetime
    raw: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _text(self, "trade_no")
        _text(self, "out_trade_no", required=False, max_len=128)
        _enum(self, "kind", BillKind)
        _money(self, "amount")
        _money(self, "fee", allow_negative=True)
        _text(self, "out_request_no", required=False, max_len=128)
        _when(self, "happened_at", required=True)
        if not isinstance(self.raw, Mapping):
            raise ValueError("BillRow.raw must be a mapping of column name to text")
        object.__setattr__(self, "raw", _FrozenDict(self.raw))


@dataclass(frozen=True, slots=True, kw_only=True)
class Shipment:
    """Ship-back of an order: all of it, or only ``line_ids`` (a split shipment)."""

    order_id: str
    line_ids: tuple[str, ...] = ()
    tracking_no: str
    courier_code: str

    def __post_init__(self) -> None:
        _text(self, "order_id")
        _ids(self, "line_ids")
        if len(set(self.line_ids)) != len(self.line_ids):
            raise ValueError("Shipment.line_ids repeat a line id")
        _text(self, "tracking_no", max_len=64)
        _text(self, "courier_code", max_len=64)

    @property
    def partial(self) -> bool:
        """True when only some lines ship (a split shipment)."""
        return bool(self.line_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingStep:
    """One step of a parcel's way, as the courier reported it: when, what (the courier's own
    words, e.g. "快件已到达【杭州转运中心】"), and the kind of step when the platform names it:
    ``collected``, ``in_transit``, ``out_for_delivery``, ``delivered``, ``problem`` or ``""``."""

    at: datetime
    description: str
    action: str = ""

    def __post_init__(self) -> None:
        _when(self, "at", required=True)
        _text(self, "description", max_len=500)
        if self.action not in TRACKING_ACTIONS:
            raise ValueError(f"TrackingStep.action must be one of {sorted(TRACKING_ACTIONS)}")


TRACKING_ACTIONS = frozenset(
    {"", "collected", "in_transit", "out_for_delivery", "delivered", "problem"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingTrail:
    """The logistics trail of a shipped order (or of its lines ``line_ids``): the waybill,
    the courier's name, and its steps oldest first. ``delivered`` when the last step says so."""

    order_id: str
    tracking_no: str = ""
    courier: str = ""
    steps: tuple[TrackingStep, ...] = ()
    raw_status: str = ""

    def __post_init__(self) -> None:
        _text(self, "order_id")
        _text(self, "tracking_no", required=False, max_len=64)
        _text(self, "courier", required=False, max_len=100)
        if not all(isinstance(x, TrackingStep) for x in self.steps):
            raise ValueError("TrackingTrail.steps must be TrackingStep items")
        if any(b.at < a.at for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("TrackingTrail.steps must be oldest first")

    @property
    def delivered(self) -> bool:
        return bool(self.steps) and self.steps[-1].action == "delivered"


@dataclass(frozen=True, slots=True, kw_only=True)
class StockLevel:
    """One item of a stock push: the sellable quantity of a merchant SKU on a platform.

    ``platform_item_id`` / ``platform_sku_id`` locate it on the platform when known; in an
    incremental push ``quantity`` is a change (may be negative), in a full push the new level.
    """

    merchant_sku: str
    quantity: int
    platform_item_id: str = ""
    platform_sku_id: str = ""

    def __post_init__(self) -> None:
        _text(self, "merchant_sku", max_len=200)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise ValueError("StockLevel.quantity must be an int")
        _text(self, "platform_item_id", required=False)
        _text(self, "platform_sku_id", required=False)


class _FrozenDict(dict[str, str]):
    """A read-only dict (so that a :class:`BillRow` stays immutable and hashable by id)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("BillRow.raw is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))
