"""The contract a connector implements: :class:`SalesChannel` or :class:`PaymentChannel`.

A connector distribution names its class in its manifest (``channel="erp_connector_x.channel:
XChannel"``). The kernel instantiates it with a :class:`ChannelContext` for one channel account
and calls the methods below; they talk to the platform and return the normalized types of
:mod:`erp_core.channels.types`. Methods never touch the database: the kernel stores what they
return, advances cursors after it committed, and records tokens they refresh.

Errors: raise :class:`ChannelAuthError` when the platform refuses the credentials or the token
(the kernel refreshes the token or asks the merchant), :class:`ChannelThrottled` when the
platform throttles (the kernel backs off), :class:`ChannelRejected` for a request the platform
refuses for good (wrong order state, unknown courier ...), and :class:`InvalidMessage` from the
``parse_*`` methods for a pushed message that fails verification.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Generic, Literal, TypeVar

from erp_core.channels.types import (
    BillRow,
    Order,
    Payment,
    Refund,
    Shipment,
    StockLevel,
    TrackingTrail,
)

__all__ = [
    "RECEIVED_AT_HEADER",
    "ChannelAuthError",
    "ChannelContext",
    "ChannelError",
    "ChannelRejected",
    "ChannelThrottled",
    "Connector",
    "Cursor",
    "Field",
    "InboundMessage",
    "InvalidMessage",
    "Page",
    "PaymentChannel",
    "PaymentRequest",
    "RefundRequest",
    "SalesChannel",
    "TokenSet",
    "Window",
    "message_received_at",
]

T = TypeVar("T")
ChannelKind = Literal["sales", "payment"]


# --- errors ------------------------------------------------------------------------------------


class ChannelError(Exception):
    """Base of the errors a connector raises. Messages must never contain secrets."""


class ChannelAuthError(ChannelError):
    """The platform refused the credentials, the signature or the (expired) access token."""


class ChannelThrottled(ChannelError):
    """The platform throttled the call; ``retry_after`` seconds if it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChannelRejected(ChannelError):
    """The platform refused the request for good (retrying the same request will not help)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class InvalidMessage(ChannelError):
    """A pushed message failed verification (bad signature, unknown account, tampered body)."""


# --- descriptors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """A secret or configuration field a connector needs on its channel accounts."""

    name: str
    title: str
    required: bool = True
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelContext:
    """What a connector instance works with: one account's settings and credentials.

    ``secrets`` holds the decrypted secret fields (only the runtime builds it, from
    :func:`erp_core.channels.service.account_secrets`); connectors must not log it.
    """

    account_id: int | None
    tenant_id: int | None
    shop_id: str
    app_key: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    access_token: str | None = field(default=None, repr=False)
    base_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenSet:
    """Tokens a platform issued (``refresh_token`` None: keep the current one)."""

    access_token: str = field(repr=False)
    expires_at: datetime | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_at: datetime | None = None


# --- paging --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A half-open modified-time window ``[start, end)``; both ends timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            v = getattr(self, name)
            if not isinstance(v, datetime) or v.tzinfo is None or v.utcoffset() is None:
                raise ValueError(f"Window.{name} must be a timezone-aware datetime")
        if self.end <= self.start:
            raise ValueError(f"Window.end ({self.end}) must be after Window.start ({self.start})")

    @property
    def length(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor:
    """Where a paged fetch stands inside one window: opaque to the kernel.

    A connector puts what its platform needs to fetch the next page in ``token`` (a page
    number, the platform's ``next_key`` / ``has_next`` state ...) and reads it back on the
    next call. The kernel stores cursors durably as ``(window, token)`` text, so ``token``
    must be a plain string that survives a restart.
    """

    window: Window
    token: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Page(Generic[T]):
    """One page of a fetch: its items and the cursor of the next page (None: window done).

    Items of a page may repeat items of an earlier page (platforms shift pages when rows
    change during the fetch); the kernel de-duplicates by platform id.
    """

    items: tuple[T, ...]
    next: Cursor | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))

    @property
    def last(self) -> bool:
        return self.next is None


# --- inbound messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """A verified pushed message.

    ``message_id`` is unique per account (the kernel's inbox de-duplicates by it); ``topic``
    is the platform's message type; ``subject_id`` the order, refund or payment it is about;
    ``reply`` the body the platform expects (Alipay's ``success``) with ``reply_status``.

    What the message means to the kernel's inbox: ``kind`` says what ``subject_id`` names
    (``"order"``, ``"refund"``, ``"payment"``; empty for a message the kernel only stores);
    ``subject`` is the normalized object when the push carries it in full. Without it the
    inbox asks the connector: ``get_order(subject_id)`` or ``query_payment(subject_id)``
    (a sales channel's refund message must carry its :class:`Refund`).
    """

    message_id: str
    topic: str
    subject_id: str = ""
    kind: Literal["order", "refund", "payment", ""] = ""
    subject: Order | Refund | Payment | None = None
    occurred_at: datetime | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    reply: str = ""
    reply_status: int = 200
    reply_content_type: str = "text/plain"


#: The header the inbox adds when it parses a stored message again (processing, replay): when
#: the message arrived. The inbox drops it from incoming requests, so a sender cannot set it.
RECEIVED_AT_HEADER = "x-erp-received-at"


def message_received_at(headers: Mapping[str, str]) -> datetime:
    """When the pushed message arrived: now for a message being received, the stored arrival
    time for one parsed again later (a replay days after). A connector that refuses stale
    messages judges their age against this, never against the clock, so that a message valid
    on arrival stays valid on replay."""
    for name, value in headers.items():
        if name.lower() == RECEIVED_AT_HEADER:
            try:
                when = datetime.fromisoformat(value)
            except ValueError:
                break
            if when.tzinfo is not None:
                return when
            break
    return datetime.now(UTC)


# --- the connector base --------------------------------------------------------------------------


class Connector(abc.ABC):
    """What both kinds of connector share: descriptors and the account context.

    Class attributes describe the connector to the kernel (they are read without
    instantiating it): ``kind``; ``secret_fields``, the secrets an account needs (stored
    encrypted, never shown again); ``config_fields``, its non-secret settings; and for sales
    channels the sync rules ``max_window`` and ``page_size``.
    """

    kind: ClassVar[ChannelKind]
    secret_fields: ClassVar[tuple[Field, ...]] = ()
    config_fields: ClassVar[tuple[Field, ...]] = ()
    #: How the inbox answers a pushed message it rejects (bad signature, unknown account ...):
    #: the status, body and content type the platform's protocol expects for a failure.
    failure_status: ClassVar[int] = 400
    failure_body: ClassVar[str] = "fail"
    failure_content_type: ClassVar[str] = "text/plain"

    def __init__(self, context: ChannelContext) -> None:
        self.context = context

    def __repr__(self) -> str:
        return f"<{type(self).__name__} shop={self.context.shop_id!r}>"

    @classmethod
    def failure_reply(cls) -> tuple[int, str, str]:
        """``(status, body, content type)`` answering a rejected pushed message."""
        return cls.failure_status, cls.failure_body, cls.failure_content_type

    def refresh_token(self, refresh_token: str) -> TokenSet:
        """Exchange ``refresh_token`` for new tokens (platforms without OAuth: not supported)."""
        raise NotImplementedError(f"{type(self).__name__} has no token refresh")


class SalesChannel(Connector):
    """A marketplace (Tmall/Taobao, JD, Pinduoduo, Douyin ...): orders in, shipments and stock out.

    Sync: the kernel splits time into windows no longer than ``max_window`` (with an
    overlap) and calls :meth:`fetch_orders` with a fresh ``Cursor(window=w)``, then with each
    returned ``next`` until it is None. ``page_size`` is what the connector asks per page
    (within the platform's limit).
    """

    kind: ClassVar[ChannelKind] = "sales"
    #: The longest modified-time window the platform accepts in one incremental query.
    max_window: ClassVar[timedelta] = timedelta(days=1)
    #: Orders asked per page.
    page_size: ClassVar[int] = 100
    #: The most shipments :meth:`ship_many` sends in one request (1: the platform has no
    #: batch call, each shipment is a request of its own).
    ship_batch: ClassVar[int] = 1

    @abc.abstractmethod
    def fetch_orders(self, cursor: Cursor) -> Page[Order]:
        """Orders whose modified time is in ``cursor.window``, one page from ``cursor``.

        Must return every order modified in the window across its pages (no gap); may return
        an order twice. Raises :class:`ChannelThrottled` or :class:`ChannelAuthError` as the
        platform answers; the kernel retries the same cursor.
        """

    @abc.abstractmethod
    def get_order(self, order_id: str) -> Order:
        """The full detail of one order (lines, receiver, discounts)."""

    @abc.abstractmethod
    def ship(self, shipment: Shipment) -> None:
        """Tell the platform the order (or only ``shipment.line_ids``) has shipped.

        Shipping the same lines again with the same tracking number must not fail.
        """

    def ship_many(self, shipments: Sequence[Shipment]) -> list[Exception | None]:
        """:meth:`ship` for each of ``shipments``, in requests of :attr:`ship_batch` of them
        where the platform has a batch call; the outcome of each, in order: None when the
        platform took it, else the error :meth:`ship` would have raised. Raises nothing a
        shipment's own outcome can carry.

        The default makes one :meth:`ship` call after the other; a connector whose platform
        takes several shipments in one request overrides it and sets :attr:`ship_batch`."""
        outcomes: list[Exception | None] = []
        for shipment in shipments:
            try:
                self.ship(shipment)
            except Exception as exc:  # the platform refused it or could not be reached
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    def logistics_trail(
        self, order_id: str, *, line_ids: Sequence[str] = (), tracking_no: str = ""
    ) -> TrackingTrail | None:
        """The courier's trail of a shipped order (or of the split shipment of ``line_ids``,
        sent with ``tracking_no``), for the order page. None: the platform offers no trail
        (the default; a connector overrides it when its platform does)."""
        return None

    @abc.abstractmethod
    def push_stock(self, levels: Sequence[StockLevel], *, full: bool) -> None:
        """Set (``full=True``) or change by (``full=False``) the sellable quantities."""

    @abc.abstractmethod
    def fetch_refunds(self, cursor: Cursor) -> Page[Refund]:
        """Refunds and after-sale requests modified in ``cursor.window``, one page."""

    @abc.abstractmethod
    def parse_message(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        """Verify and parse a message the platform pushed; raise :class:`InvalidMessage`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRequest:
    """A payment to create: ``method`` is the provider's product (``page``, ``wap``,
    ``precreate`` ...)."""

    out_trade_no: str
    amount: Decimal
    subject: str
    method: str
    notify_url: str = ""
    return_url: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.out_trade_no:
            raise ValueError("PaymentRequest.out_trade_no must not be empty")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount <= 0:
            raise ValueError("PaymentRequest.amount must be a Decimal greater than 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundRequest:
    """A refund to make: ``out_request_no`` makes it idempotent (same number, same refund)."""

    out_trade_no: str
    out_request_no: str
    amount: Decimal
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.out_trade_no or not self.out_request_no:
            raise ValueError("RefundRequest needs out_trade_no and out_request_no")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite() or self.amount <= 0:
            raise ValueError("RefundRequest.amount must be a Decimal greater than 0")


class PaymentChannel(Connector):
    """A payment provider (Alipay, WeChat Pay ...)."""

    kind: ClassVar[ChannelKind] = "payment"

    @abc.abstractmethod
    def create_payment(self, request: PaymentRequest) -> Mapping[str, str]:
        """Create a payment; returns what the payer needs (a form, a URL, a QR code text)."""

    @abc.abstractmethod
    def query_payment(self, out_trade_no: str) -> Payment:
        """The payment's current state at the provider."""

    @abc.abstractmethod
    def refund(self, request: RefundRequest) -> Refund:
        """Refund ``request.amount``; calling again with the same ``out_request_no`` must
        return the same refund and never refund twice."""

    @abc.abstractmethod
    def query_refund(self, out_trade_no: str, out_request_no: str) -> Refund:
        """The state of the refund ``out_request_no`` of payment ``out_trade_no``."""

    def close_payment(self, out_trade_no: str) -> None:
        """Close an unpaid payment so that it can no longer be paid (an order cancelled before
        payment). Providers without such a call: not supported."""
        raise NotImplementedError(f"{type(self).__name__} cannot close payments")

    @abc.abstractmethod
    def parse_notification(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> InboundMessage:
        """Verify and parse an asynchronous notification; raise :class:`InvalidMessage`."""

    @abc.abstractmethod
    def download_bill(self, day: datetime) -> bytes:
        """The provider's bill of the day containing ``day`` (the file as downloaded)."""

    @abc.abstractmethod
    def parse_bill(self, data: bytes) -> Sequence[BillRow]:
        """The rows of a bill downloaded by :meth:`download_bill`."""
