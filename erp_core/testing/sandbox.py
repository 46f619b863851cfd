"""What a connector's sandbox offers: the contract between sandboxes and the conformance kit.

A sandbox is a local simulator of a platform's API, shipped with the connector: an ASGI app
(:attr:`Sandbox.app`) that enforces the platform's real protocol (request signatures,
timestamps, window and page-size rules, the platform's error codes) over data generated
reproducibly from a seed, plus the controls below, which tests, the conformance kit
(:mod:`erp_core.testing.conformance`) and the demo use to drive it. Tests start it on
loopback with :func:`serve`; the connector talks to it over real HTTP, through the account's
``base_url`` setting (see :func:`erp_core.channels.service.account_context`).

A connector's sandbox subclasses :class:`SalesSandbox` or :class:`PaymentSandbox`.
"""

from __future__ import annotations

import abc
import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

__all__ = [
    "AccountSpec",
    "PaymentSandbox",
    "PushRequest",
    "RecordedCall",
    "SalesSandbox",
    "Sandbox",
    "serve",
]

ASGIApp = Any


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSpec:
    """What a merchant enters to add the sandbox's shop as a channel account."""

    shop_id: str
    app_key: str
    secrets: Mapping[str, str] = field(repr=False)
    config: Mapping[str, Any] = field(default_factory=dict)
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PushRequest:
    """A message the platform pushes: what arrives at ``POST /hooks/{connector}/{account}``."""

    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    #: The message's id as the connector reports it (``InboundMessage.message_id``).
    message_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedCall:
    """One API call the sandbox answered: ``error`` is the platform's error code, or ""."""

    api: str
    params: Mapping[str, str]
    error: str = ""
    #: When it was answered (``time.monotonic()``): the kit checks back-off from it.
    at: float = field(default_factory=time.monotonic)


class Sandbox(abc.ABC):
    """Common controls; ``seed`` makes every generated object reproducible."""

    #: The connector (plugin) name this sandbox simulates.
    connector: ClassVar[str]
    #: Seconds each HTTP request waits before it is answered when served by :func:`running`,
    #: as a platform across the internet makes it wait (0: at once).
    latency: float = 0.0
    #: HTTP requests being answered now, and the most there were at once (:func:`running`).
    in_flight: int = 0
    max_in_flight: int = 0
    #: :attr:`calls` keeps at least this many of the latest calls and at most twice as many
    #: (None: every one). A sandbox serving a long run (the demo, a benchmark of 100,000
    #: orders) keeps a bounded history, so that its records neither fill the memory nor
    #: lengthen the garbage collector's full passes of the process it runs in.
    history: int | None = None

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        #: Where the app is reachable (set by :func:`serve`, or by whoever serves the app).
        self.base_url = ""
        self.calls: list[RecordedCall] = []

    @property
    @abc.abstractmethod
    def app(self) -> ASGIApp:
        """The ASGI app simulating the platform's API."""

    @abc.abstractmethod
    def account(self) -> AccountSpec:
        """The shop's credentials; ``config`` includes ``base_url`` = :attr:`base_url`."""

    @abc.abstractmethod
    def throttle(self, calls: int) -> None:
        """The next ``calls`` API calls answer with the platform's throttling error."""

    def expire_tokens(self) -> None:  # noqa: B027 - optional: platforms without tokens
        """Access tokens issued so far stop working (the platform's "token expired" error);
        refreshing with the refresh token gives a working one. Platforms without tokens:
        nothing to do."""

    @abc.abstractmethod
    def tamper(self, push: PushRequest) -> PushRequest:
        """``push`` with its content changed after signing (verification must fail)."""

    def demo_step(self, hook_url: str) -> int:
        """One step of the demo's steady stream: what happens at the platform in a few seconds
        (new orders, payments, refunds), its pushes delivered to ``hook_url`` (the ERP's
        ``/hooks/{connector}/{account}``). Returns the messages delivered. Default: none."""
        return 0

    def forget(self, before: datetime) -> int:
        """Drop the business last changed before ``before`` (orders, refunds, shipments, the
        pushes about them) and the push deliveries beyond :attr:`history`, as a platform
        archives what is long settled; answers about a forgotten order are then "not found".
        Returns the orders dropped. The demo, which runs for days, calls it now and then so
        that the sandbox's memory stays bounded; tests never need to. Default: nothing kept,
        nothing to drop."""
        return 0

    def record(self, call: RecordedCall) -> None:
        """Add ``call`` to :attr:`calls`, dropping the oldest beyond :attr:`history`."""
        self.calls.append(call)
        keep = self.history
        if keep is not None and len(self.calls) >= 2 * keep + 1:  # trimmed now and then
            del self.calls[: len(self.calls) - keep]

    def errors(self) -> list[str]:
        """Error codes the sandbox answered, in order."""
        return [c.error for c in self.calls if c.error]


class SalesSandbox(Sandbox):
    """A marketplace: orders and refunds, ship-back and stock."""

    #: Every raw order status the platform has (each must map to a normalized status).
    order_statuses: ClassVar[tuple[str, ...]]
    #: Every raw refund status the platform has.
    refund_statuses: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    def generate(self, start: datetime, end: datetime, *, orders: int, refunds: int = 0) -> None:
        """Add ``orders`` orders (Chinese names and addresses, 1-4 lines, discounts) and
        ``refunds`` refunds with modified times in ``[start, end)``, many on window and page
        boundaries and sharing instants. Reproducible from the seed."""

    @abc.abstractmethod
    def expected_orders(self, start: datetime, end: datetime) -> dict[str, datetime]:
        """Platform order id -> modified time of orders modified in ``[start, end)``."""

    @abc.abstractmethod
    def expected_refunds(self, start: datetime, end: datetime) -> dict[str, datetime]:
        """Refund id -> modified time of refunds modified in ``[start, end)``."""

    @abc.abstractmethod
    def order_with_status(self, raw_status: str, *, at: datetime) -> str:
        """Create an order in ``raw_status`` modified at ``at``; return its id."""

    @abc.abstractmethod
    def modify(self, order_id: str, *, at: datetime) -> None:
        """A change to the order (a seller memo, say), modified at ``at``."""

    @abc.abstractmethod
    def push(self, order_id: str, *, topic: str = "") -> PushRequest:
        """The signed message the platform pushes about the order's current state
        (``topic`` "": the platform's usual "order changed" topic)."""

    @abc.abstractmethod
    def shipments(self) -> list[dict[str, Any]]:
        """Ship-back calls accepted, in order: ``{"order_id", "line_ids", "tracking_no",
        "courier_code"}`` (``line_ids`` empty: the whole order)."""

    @abc.abstractmethod
    def stock(self) -> dict[str, int]:
        """Sellable quantity at the platform by merchant SKU code."""

    @abc.abstractmethod
    def stock_items(self) -> list[tuple[str, str, str]]:
        """``(merchant_sku, platform_item_id, platform_sku_id)`` of the shop's listed SKUs."""


class PaymentSandbox(Sandbox):
    """A payment provider: payments, refunds, notifications and bills."""

    #: The ``PaymentRequest.method`` values the provider offers (the kit pays with each).
    payment_methods: ClassVar[tuple[str, ...]]
    #: The provider's raw status of a created, unpaid payment (for out-of-order messages).
    pending_status: ClassVar[str]

    def payer_acts(self, created: Mapping[str, str]) -> None:
        """The payer acts on what ``create_payment`` returned before paying: a browser submits
        the signed form of a web payment to the provider. Nothing to do for a payment the
        provider created at once (a QR code)."""

    @abc.abstractmethod
    def pay(self, out_trade_no: str, *, at: datetime | None = None) -> PushRequest:
        """The buyer pays the created payment ``out_trade_no``; return the signed
        notification the provider sends about it."""

    @abc.abstractmethod
    def notification(self, out_trade_no: str, *, status: str) -> PushRequest:
        """A signed notification about the payment in the provider's ``status`` (for
        messages that arrive out of order)."""

    @abc.abstractmethod
    def refunded(self, out_trade_no: str) -> Decimal:
        """What the provider has refunded on the payment in total."""


# --- serving -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: ASGIApp, *, port: int = 0) -> Iterator[str]:
    """Run ``app`` on loopback in a thread of this process; yield its base URL."""
    import uvicorn

    port = port or _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"sandbox:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the sandbox did not start on port {port}")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _as_over_a_network(sandbox: Sandbox) -> ASGIApp:
    """The sandbox's app, counting its requests in flight and making each wait
    :attr:`Sandbox.latency` first (the server's event loop goes on with others meanwhile)."""
    inner = sandbox.app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        sandbox.in_flight += 1  # (one event loop thread: no lock needed)
        sandbox.max_in_flight = max(sandbox.max_in_flight, sandbox.in_flight)
        try:
            if sandbox.latency > 0:
                await asyncio.sleep(sandbox.latency)
            await inner(scope, receive, send)
        finally:
            sandbox.in_flight -= 1

    return app


@contextmanager
def running(sandbox: Sandbox) -> Iterator[Sandbox]:
    """Serve ``sandbox`` on loopback and set its :attr:`~Sandbox.base_url`; the requests it
    answers are counted, and wait :attr:`~Sandbox.latency` each."""
    with serve(_as_over_a_network(sandbox)) as url:
        sandbox.base_url = url
        try:
            yield sandbox
        finally:
            sandbox.base_url = ""
