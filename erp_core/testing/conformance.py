"""The connector conformance kit: one suite every connector and its sandbox must pass.

Two ways to run it. In a connector's own tests, subclass the suite of its kind and name the
connector (the kit finds the sandbox through the manifest's ``sandbox``)::

    from erp_core.testing.conformance import SalesChannelConformance

    class TestConformance(SalesChannelConformance):
        connector = "tmall"

Or against any installed connector, without writing a test file::

    pytest -p erp_core.testing.conformance --connector tmall \
        --pyargs erp_core.testing.conformance_suite

The suite drives the real stack: the sandbox serves its API on loopback, the connector talks
to it over HTTP with credentials stored (encrypted) on a channel account of a fresh tenant,
the sync engine and the inbox (``POST /hooks/...``) store what arrives in the database the
tests run on (SQLite, or PostgreSQL with ``ERP_TEST_DATABASE_URL``), and kernel hooks deliver
it to a recording plugin. What it checks is listed in ``docs/connectors.md``.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from erp_core.channels import service
from erp_core.channels import sync as sync_engine
from erp_core.channels.inbox_models import InboxMessage
from erp_core.channels.interfaces import (
    ChannelAuthError,
    ChannelContext,
    Connector,
    PaymentChannel,
    PaymentRequest,
    RefundRequest,
    SalesChannel,
)
from erp_core.channels.models import ChannelAccount
from erp_core.channels.sync_models import ChannelObject
from erp_core.channels.types import (
    BillKind,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Shipment,
    StockLevel,
)
from erp_core.plugins.hookspecs import hookimpl
from erp_core.plugins.registry import PluginRegistry
from erp_core.testing.sandbox import PaymentSandbox, PushRequest, SalesSandbox, Sandbox, running

__all__ = [
    "ConformanceBase",
    "PaymentChannelConformance",
    "SalesChannelConformance",
    "sandbox_class",
]

_names = count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("erp-conformance", "connector conformance kit")
    group.addoption(
        "--connector",
        action="append",
        default=[],
        metavar="NAME",
        help="run the conformance suite (erp_core.testing.conformance_suite) against the "
        "installed connector NAME; repeatable",
    )


# --- helpers -------------------------------------------------------------------------------------


def sandbox_class(registry: PluginRegistry, connector: str) -> type[Sandbox]:
    """The sandbox class the connector's manifest names."""
    manifest = next((m for m in registry.manifests() if m.name == connector), None)
    if manifest is None:
        raise LookupError(f"no installed plugin named {connector!r}")
    if not manifest.sandbox:
        raise LookupError(f"connector {connector!r} ships no sandbox (manifest.sandbox)")
    module, _, name = manifest.sandbox.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Sandbox)):
        raise TypeError(f"{manifest.sandbox} is not a Sandbox")
    return cls


class Recorder:
    """A plugin recording what the kernel's channel hooks deliver."""

    def __init__(self) -> None:
        self.orders: list[tuple[int, Order]] = []
        self.refunds: list[tuple[int, Refund]] = []
        self.payments: list[tuple[int, Payment]] = []

    @hookimpl
    def erp_channel_order(
        self, session: Any, tenant_id: int, account_id: int, order: Order
    ) -> None:
        self.orders.append((account_id, order))

    @hookimpl
    def erp_channel_refund(
        self, session: Any, tenant_id: int, account_id: int, refund: Refund
    ) -> None:
        self.refunds.append((account_id, refund))

    @hookimpl
    def erp_channel_payment(
        self, session: Any, tenant_id: int, account_id: int, payment: Payment
    ) -> None:
        self.payments.append((account_id, payment))


@contextmanager
def _recording(registry: PluginRegistry) -> Iterator[Recorder]:
    rec = Recorder()
    registry.pm.register(rec, name=f"conformance:recorder-{next(_names)}")
    try:
        yield rec
    finally:
        registry.pm.unregister(rec)


class Shop:
    """The channel account the suite works with, and ways to reach it."""

    def __init__(
        self,
        *,
        db: Any,
        registry: PluginRegistry,
        settings: Any,
        tenant_id: int,
        account_id: int,
        connector: str,
        secrets: list[str],
    ) -> None:
        self.db = db
        self.registry = registry
        self.settings = settings
        self.tenant_id = tenant_id
        self.account_id = account_id
        self.connector = connector
        self.secrets = secrets

    def context(self) -> ChannelContext:
        with self.db.tenant_session(self.tenant_id) as s:
            account = s.get(ChannelAccount, self.account_id)
            assert account is not None
            return service.account_context(s, account, self.settings)

    def channel(self) -> Any:
        cls = service.connector_class(self.registry, self.connector)
        return cls(self.context())

    def hook_url(self) -> str:
        return f"/hooks/{self.connector}/{self.account_id}"

    def inbox_count(self) -> int:
        with self.db.tenant_session(self.tenant_id) as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(InboxMessage)
                    .where(InboxMessage.account_id == self.account_id)
                )
                or 0
            )

    def recorded_version(self, kind: str, platform_id: str) -> datetime | None:
        with self.db.tenant_session(self.tenant_id) as s:
            value = s.scalar(
                select(ChannelObject.modified_at).where(
                    ChannelObject.account_id == self.account_id,
                    ChannelObject.kind == kind,
                    ChannelObject.platform_id == platform_id,
                )
            )
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _post(client: Any, shop: Shop, push: PushRequest) -> Any:
    return client.post(
        shop.hook_url(), content=push.body, headers=dict(push.headers), params=dict(push.query)
    )


def _hour(dt: datetime) -> datetime:
    return dt.replace(minute=0, second=0, microsecond=0)


def _secret_parts(secrets: list[str]) -> list[str]:
    """The secrets, and each line of a multi-line one (a PEM key leaks line by line)."""
    parts: set[str] = set()
    for secret in secrets:
        if len(secret) >= 6:
            parts.add(secret)
        for line in secret.splitlines():
            line = line.strip()
            if len(line) >= 16 and not line.startswith("-----"):
                parts.add(line)
    return sorted(parts)


def _leaks(records: list[logging.LogRecord], secrets: list[str]) -> list[str]:
    parts = _secret_parts(secrets)
    found = []
    for r in records:
        text = f"{r.getMessage()} {r.exc_text or ''} {r.args!r} {r.__dict__!r}"
        if any(part in text for part in parts):
            found.append(f"{r.name}: a secret appears in {r.getMessage()[:80]!r}")
    return found


# --- the suites ----------------------------------------------------------------------------------


class ConformanceBase:
    """Fixtures both suites share. Subclasses set :attr:`connector`."""

    connector: ClassVar[str] = ""
    #: The seed of the sandbox (a failure is reproduced with the same seed).
    seed: ClassVar[int] = 20261130

    @pytest.fixture
    def conformance_connector(self) -> str:
        if not self.connector:
            raise pytest.UsageError(f"{type(self).__name__} must set `connector`")
        return self.connector

    @pytest.fixture
    def sandbox(self, erp_registry: PluginRegistry, conformance_connector: str) -> Iterator[Any]:
        cls = sandbox_class(erp_registry, conformance_connector)
        with running(cls(seed=self.seed)) as box:
            yield box

    @pytest.fixture
    def shop(
        self,
        sandbox: Sandbox,
        erp_db: Any,
        erp_registry: PluginRegistry,
        erp_settings: Any,
        make_tenant: Any,
        conformance_connector: str,
    ) -> Shop:
        from erp_core.channels.interfaces import TokenSet

        tenant = make_tenant("conform", plugins=(conformance_connector,))
        spec = sandbox.account()
        with erp_db.tenant_session(tenant.id) as s:
            account = service.create_account(
                s,
                erp_registry,
                erp_settings,
                connector=conformance_connector,
                shop_id=spec.shop_id,
                name=f"{conformance_connector} sandbox",
                app_key=spec.app_key,
                config=dict(spec.config),
                secrets=dict(spec.secrets),
                actor="conformance",
            )
            if spec.access_token:
                service.set_tokens(
                    s,
                    erp_settings,
                    account,
                    TokenSet(
                        access_token=spec.access_token,
                        expires_at=spec.token_expires_at,
                        refresh_token=spec.refresh_token,
                    ),
                )
            account_id = account.id
        secrets = [*spec.secrets.values(), spec.access_token or "", spec.refresh_token or ""]
        return Shop(
            db=erp_db,
            registry=erp_registry,
            settings=erp_settings,
            tenant_id=tenant.id,
            account_id=account_id,
            connector=conformance_connector,
            secrets=[s for s in secrets if s],
        )

    @pytest.fixture
    def recorder(self, erp_registry: PluginRegistry) -> Iterator[Recorder]:
        with _recording(erp_registry) as rec:
            yield rec

    # shared checks ------------------------------------------------------------------------------

    def test_sandbox_is_reproducible_from_its_seed(self, sandbox: Sandbox) -> None:
        a, b = type(sandbox)(seed=self.seed), type(sandbox)(seed=self.seed)
        assert a.account().shop_id == b.account().shop_id
        if isinstance(a, SalesSandbox) and isinstance(b, SalesSandbox):
            end = _hour(datetime.now(UTC)) - timedelta(days=1)
            a.generate(end - timedelta(days=1), end, orders=20, refunds=5)
            b.generate(end - timedelta(days=1), end, orders=20, refunds=5)
            assert a.expected_orders(end - timedelta(days=1), end) == b.expected_orders(
                end - timedelta(days=1), end
            )
            assert a.expected_orders(end - timedelta(days=1), end)

    def test_tampered_push_is_refused_and_changes_nothing(
        self, sandbox: Any, shop: Shop, client: Any, recorder: Recorder
    ) -> None:
        push = self._a_push(sandbox, shop)
        bad = sandbox.tamper(push)
        assert (
            bad.body != push.body
            or dict(bad.headers) != dict(push.headers)
            or dict(bad.query) != dict(push.query)
        )
        res = _post(client, shop, bad)
        cls = service.connector_class(shop.registry, shop.connector)
        status, body, _ = cls.failure_reply()
        assert res.status_code == status
        assert res.text == body
        assert shop.inbox_count() == 0
        assert not (recorder.orders or recorder.refunds or recorder.payments)
        # and to an account that does not exist
        res = client.post(
            f"/hooks/{shop.connector}/{shop.account_id + 1000}",
            content=push.body,
            headers=dict(push.headers),
            params=dict(push.query),
        )
        assert res.status_code == status

    def test_refuses_a_wrong_secret(self, shop: Shop) -> None:
        """Requests signed with a wrong secret are refused by the sandbox as the platform
        does, and the connector reports it as an authentication error."""
        ctx = shop.context()
        wrong = dict(ctx.secrets)
        for name, value in wrong.items():
            wrong[name] = _corrupt(value)
        cls = service.connector_class(shop.registry, shop.connector)
        bad = cls(
            ChannelContext(
                account_id=ctx.account_id,
                tenant_id=ctx.tenant_id,
                shop_id=ctx.shop_id,
                app_key=ctx.app_key,
                config=ctx.config,
                secrets=wrong,
                access_token=ctx.access_token,
                base_url=ctx.base_url,
            )
        )
        with pytest.raises(ChannelAuthError):
            self._a_signed_call(bad)

    def _a_push(self, sandbox: Any, shop: Shop) -> PushRequest:  # pragma: no cover - abstract
        raise NotImplementedError

    def _a_signed_call(self, channel: Connector) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _corrupt(value: str) -> str:
    """A different secret of the same shape (a PEM key stays a loadable key)."""
    if "PRIVATE KEY" in value or "PUBLIC KEY" in value or len(value) > 200:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if "PUBLIC" in value:
            return (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    return value[::-1] if value[::-1] != value else value + "x"


class SalesChannelConformance(ConformanceBase):
    """The suite for a :class:`~erp_core.channels.SalesChannel` and its :class:`SalesSandbox`."""

    #: Orders asked per page during the suite (small, so that few orders cross many pages).
    page_size: ClassVar[int] = 7
    #: Window length the sync uses during the suite (several windows in a few days).
    window: ClassVar[timedelta] = timedelta(hours=12)

    @pytest.fixture(autouse=True)
    def _small_pages(
        self, erp_registry: PluginRegistry, conformance_connector: str, monkeypatch: Any
    ) -> None:
        cls = service.connector_class(erp_registry, conformance_connector)
        assert issubclass(cls, SalesChannel), f"{conformance_connector} is not a sales channel"
        monkeypatch.setattr(cls, "page_size", min(self.page_size, cls.page_size))

    @staticmethod
    def _span() -> tuple[datetime, datetime]:
        end = _hour(datetime.now(UTC)) - timedelta(hours=6)
        return end - timedelta(days=2), end

    def _sync(self, shop: Shop, stream: str, start: datetime, end: datetime, **kw: Any) -> Any:
        return sync_engine.run(
            shop.db,
            shop.registry,
            shop.settings,
            shop.tenant_id,
            shop.account_id,
            stream,  # type: ignore[arg-type]
            since=start,
            until=end,
            window=self.window,
            **kw,
        )

    def _resume(self, shop: Shop, end: datetime) -> Any:
        """An incremental run of the orders stream from where the cursor stands."""
        return sync_engine.run(
            shop.db,
            shop.registry,
            shop.settings,
            shop.tenant_id,
            shop.account_id,
            "orders",
            until=end,
            window=self.window,
        )

    def _a_push(self, sandbox: Any, shop: Shop) -> PushRequest:
        _start, end = self._span()
        oid = sandbox.order_with_status(sandbox.order_statuses[0], at=end - timedelta(hours=1))
        return sandbox.push(oid)

    def _a_signed_call(self, channel: Connector) -> None:
        assert isinstance(channel, SalesChannel)
        _start, end = self._span()
        from erp_core.channels.interfaces import Cursor, Window

        channel.fetch_orders(Cursor(window=Window(start=end - timedelta(hours=1), end=end)))

    def _paid_order(self, sandbox: SalesSandbox, shop: Shop, at: datetime) -> Order:
        channel = shop.channel()
        for raw in sandbox.order_statuses:
            oid = sandbox.order_with_status(raw, at=at)
            order = channel.get_order(oid)
            if order.status is OrderStatus.PAID:
                return order
        raise AssertionError("no platform status of the sandbox maps to OrderStatus.PAID")

    # sync ---------------------------------------------------------------------------------------

    def test_signed_requests_are_accepted(self, sandbox: SalesSandbox, shop: Shop) -> None:
        _start, end = self._span()
        oid = sandbox.order_with_status(sandbox.order_statuses[0], at=end - timedelta(hours=2))
        order = shop.channel().get_order(oid)
        assert order.order_id == oid
        assert order.account == shop.context().shop_id
        assert sandbox.errors() == []

    def test_full_sync_has_no_gap_and_no_duplicate(
        self, sandbox: SalesSandbox, shop: Shop, recorder: Recorder
    ) -> None:
        start, end = self._span()
        sandbox.generate(start, end, orders=60, refunds=12)
        result = self._sync(shop, "orders", start, end)
        want = sandbox.expected_orders(start, end)
        got = Counter(o.order_id for _, o in recorder.orders)
        assert set(got) == set(want), "orders missing or extra after a full sync"
        assert max(got.values()) == 1, f"orders delivered twice: {got.most_common(3)}"
        assert {o.order_id: o.modified_at for _, o in recorder.orders} == want
        assert result.pages > result.windows >= 4, "the suite must cross windows and pages"
        refunds = self._sync(shop, "refunds", start, end)
        want_r = sandbox.expected_refunds(start, end)
        got_r = Counter(r.refund_id for _, r in recorder.refunds)
        assert set(got_r) == set(want_r) and (not got_r or max(got_r.values()) == 1)
        assert refunds.delivered == len(want_r)
        # a second run over the same span delivers nothing new
        again = self._sync(shop, "orders", start, end)
        assert again.delivered == 0
        assert len(recorder.orders) == len(want)

    def test_incremental_sync_picks_up_changes(
        self, sandbox: SalesSandbox, shop: Shop, recorder: Recorder
    ) -> None:
        start, end = self._span()
        sandbox.generate(start, end - timedelta(hours=12), orders=20)
        self._sync(shop, "orders", start, end - timedelta(hours=12))
        first = next(iter(sandbox.expected_orders(start, end)))
        sandbox.modify(first, at=end - timedelta(hours=3))
        before = len(recorder.orders)
        result = self._resume(shop, end)
        assert result.changed == 1
        assert [o.order_id for _, o in recorder.orders[before:]] == [first]
        assert shop.recorded_version("order", first) == end - timedelta(hours=3)

    def test_restart_in_the_middle_loses_nothing(
        self, sandbox: SalesSandbox, shop: Shop, recorder: Recorder, monkeypatch: Any
    ) -> None:
        start, end = self._span()
        sandbox.generate(start, end, orders=50)
        cls = service.connector_class(shop.registry, shop.connector)
        real = cls.fetch_orders  # type: ignore[attr-defined]
        calls = {"n": 0}

        def crashing(self: Any, cursor: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 5:
                raise RuntimeError("worker killed (conformance kit)")
            return real(self, cursor)

        monkeypatch.setattr(cls, "fetch_orders", crashing)
        with pytest.raises(RuntimeError, match="worker killed"):
            self._sync(shop, "orders", start, end)
        partial = len(recorder.orders)
        assert 0 < partial < len(sandbox.expected_orders(start, end))
        monkeypatch.setattr(cls, "fetch_orders", real)
        self._resume(shop, end)
        got = Counter(o.order_id for _, o in recorder.orders)
        assert set(got) == set(sandbox.expected_orders(start, end))
        assert max(got.values()) == 1

    def test_every_platform_status_maps_to_a_normalized_status(
        self, sandbox: SalesSandbox, shop: Shop
    ) -> None:
        start, end = self._span()
        channel = shop.channel()
        assert sandbox.order_statuses, "the sandbox lists no order statuses"
        for raw in sandbox.order_statuses:
            oid = sandbox.order_with_status(raw, at=end - timedelta(hours=1))
            order = channel.get_order(oid)
            assert order.raw_status == raw
            assert order.status is not OrderStatus.UNKNOWN, f"{raw} maps to unknown"
        sandbox.generate(start, end, orders=0, refunds=4 * len(sandbox.refund_statuses))
        self_refunds: dict[str, RefundStatus] = {}
        from erp_core.channels.interfaces import Cursor

        for w in sync_engine.windows(start, end, type(channel).max_window):
            cursor: Any = Cursor(window=w)
            while cursor is not None:
                page = channel.fetch_refunds(cursor)
                for r in page.items:
                    self_refunds[r.raw_status] = r.status
                cursor = page.next
        assert self_refunds, "the sandbox generated no refunds"
        assert set(self_refunds) <= set(sandbox.refund_statuses)
        unknown = [raw for raw, st in self_refunds.items() if st is RefundStatus.UNKNOWN]
        assert not unknown, f"refund statuses mapped to unknown: {unknown}"
        missing = set(sandbox.refund_statuses) - set(self_refunds)
        assert not missing, f"the sandbox never generated refund statuses {sorted(missing)}"

    def test_throttling_is_answered_with_back_off(
        self, sandbox: SalesSandbox, shop: Shop, recorder: Recorder
    ) -> None:
        _start, end = self._span()
        sandbox.generate(end - timedelta(hours=10), end, orders=10)
        slept: list[float] = []
        sandbox.throttle(2)
        self._sync(shop, "orders", end - timedelta(hours=10), end, sleep=slept.append)
        throttled = [i for i, c in enumerate(sandbox.calls) if c.error]
        assert len(throttled) == 2, "the sandbox should have throttled two calls"
        gaps = [
            sandbox.calls[i + 1].at - sandbox.calls[i].at
            for i in throttled
            if i + 1 < len(sandbox.calls)
        ]
        assert sum(slept) > 0 or min(gaps) >= 0.05, "retried a throttled call without pausing"
        assert {o.order_id for _, o in recorder.orders} == set(
            sandbox.expected_orders(end - timedelta(hours=10), end)
        )

    def test_expired_token_is_refreshed(
        self, sandbox: SalesSandbox, shop: Shop, recorder: Recorder
    ) -> None:
        with shop.db.tenant_session(shop.tenant_id) as s:
            account = s.get(ChannelAccount, shop.account_id)
            assert account is not None
            has_refresh = account.refresh_token is not None
        if not has_refresh:
            pytest.skip("the platform issues no refresh tokens")
        _start, end = self._span()
        sandbox.generate(end - timedelta(hours=6), end, orders=5)
        old = shop.context().access_token
        sandbox.expire_tokens()
        self._sync(shop, "orders", end - timedelta(hours=6), end)
        assert shop.context().access_token != old
        assert {o.order_id for _, o in recorder.orders} == set(
            sandbox.expected_orders(end - timedelta(hours=6), end)
        )

    # ship-back and stock ------------------------------------------------------------------------

    def test_ship_back_round_trip_with_split(self, sandbox: SalesSandbox, shop: Shop) -> None:
        _start, end = self._span()
        order = self._paid_order(sandbox, shop, end - timedelta(hours=1))
        channel = shop.channel()
        if len(order.lines) > 1:
            first = Shipment(
                order_id=order.order_id,
                line_ids=(order.lines[0].line_id,),
                tracking_no="SF1000000001",
                courier_code="SF",
            )
            rest = Shipment(
                order_id=order.order_id,
                line_ids=tuple(ln.line_id for ln in order.lines[1:]),
                tracking_no="YTO2000000002",
                courier_code="YTO",
            )
            shipments = [first, rest]
        else:
            shipments = [
                Shipment(order_id=order.order_id, tracking_no="SF1000000001", courier_code="SF")
            ]
        for sh in shipments:
            channel.ship(sh)
        channel.ship(shipments[-1])  # the same again: no error
        seen = [s for s in sandbox.shipments() if s["order_id"] == order.order_id]
        assert len(seen) >= len(shipments)
        for sh, rec in zip(shipments, seen, strict=False):
            assert rec["tracking_no"] == sh.tracking_no
            assert rec["courier_code"] == sh.courier_code
            assert tuple(rec["line_ids"]) == sh.line_ids
        shipped = channel.get_order(order.order_id)
        assert shipped.status in (OrderStatus.SHIPPED, OrderStatus.PARTIALLY_SHIPPED)

    def test_ship_many_ships_each_and_repeats_without_error(
        self, sandbox: SalesSandbox, shop: Shop
    ) -> None:
        _start, end = self._span()
        orders = [
            self._paid_order(sandbox, shop, end - timedelta(hours=1, minutes=i)) for i in range(3)
        ]
        channel = shop.channel()
        assert channel.ship_batch >= 1
        shipments = [
            Shipment(order_id=o.order_id, tracking_no=f"SF30000000{i:02d}", courier_code="SF")
            for i, o in enumerate(orders)
        ]
        assert channel.ship_many(shipments) == [None] * 3
        assert channel.ship_many(shipments) == [None] * 3  # the same again: no error
        by_order = {s["order_id"]: s for s in sandbox.shipments()}
        for sh in shipments:
            assert by_order[sh.order_id]["tracking_no"] == sh.tracking_no

    def test_stock_push_round_trip(self, sandbox: SalesSandbox, shop: Shop) -> None:
        items = sandbox.stock_items()
        assert items, "the sandbox lists no SKUs"
        channel = shop.channel()
        levels = [
            StockLevel(merchant_sku=sku, quantity=10 + i, platform_item_id=item, platform_sku_id=ps)
            for i, (sku, item, ps) in enumerate(items)
        ]
        channel.push_stock(levels, full=True)
        assert {sku: q for sku, q in sandbox.stock().items() if sku in {x[0] for x in items}} == {
            lv.merchant_sku: lv.quantity for lv in levels
        }
        sku, item, ps = items[0]
        channel.push_stock(
            [StockLevel(merchant_sku=sku, quantity=-3, platform_item_id=item, platform_sku_id=ps)],
            full=False,
        )
        assert sandbox.stock()[sku] == 10 - 3

    # pushes -------------------------------------------------------------------------------------

    def test_push_is_verified_stored_and_idempotent(
        self, sandbox: SalesSandbox, shop: Shop, client: Any, recorder: Recorder
    ) -> None:
        _start, end = self._span()
        order = self._paid_order(sandbox, shop, end - timedelta(hours=1))
        push = sandbox.push(order.order_id)
        first = _post(client, shop, push)
        assert first.status_code < 300, first.text
        assert shop.inbox_count() == 1
        assert [o.order_id for _, o in recorder.orders] == [order.order_id]
        again = _post(client, shop, push)
        assert again.status_code == first.status_code and again.text == first.text
        assert shop.inbox_count() == 1
        assert len(recorder.orders) == 1

    def test_push_out_of_order_keeps_the_newest(
        self, sandbox: SalesSandbox, shop: Shop, client: Any, recorder: Recorder
    ) -> None:
        _start, end = self._span()
        order = self._paid_order(sandbox, shop, end - timedelta(hours=2))
        older = sandbox.push(order.order_id)
        sandbox.modify(order.order_id, at=end - timedelta(hours=1))
        newer = sandbox.push(order.order_id)
        assert _post(client, shop, newer).status_code < 300
        assert _post(client, shop, older).status_code < 300
        assert shop.recorded_version("order", order.order_id) == end - timedelta(hours=1)
        versions = [o.modified_at for _, o in recorder.orders if o.order_id == order.order_id]
        assert versions and versions == sorted(versions)
        assert versions[-1] == end - timedelta(hours=1)
        # the sync finds the same version: nothing delivered twice
        self._sync(shop, "orders", end - timedelta(hours=3), end)
        assert [o.modified_at for _, o in recorder.orders if o.order_id == order.order_id] == (
            versions
        )

    def test_secrets_never_appear_in_logs(
        self,
        sandbox: SalesSandbox,
        shop: Shop,
        client: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        _start, end = self._span()
        sandbox.generate(end - timedelta(hours=12), end, orders=10)
        sandbox.throttle(1)
        self._sync(shop, "orders", end - timedelta(hours=12), end, sleep=lambda s: None)
        push = self._a_push(sandbox, shop)
        _post(client, shop, push)
        _post(client, shop, sandbox.tamper(push))
        with suppress(AssertionError):  # reported by its own test
            self.test_refuses_a_wrong_secret(shop)
        assert caplog.records, "nothing was logged at all"
        assert not _leaks(caplog.records, shop.secrets)


class PaymentChannelConformance(ConformanceBase):
    """The suite for a :class:`~erp_core.channels.PaymentChannel` and its sandbox."""

    def _a_push(self, sandbox: Any, shop: Shop) -> PushRequest:
        no = self._created(sandbox, shop, "K-TAMPER")
        return sandbox.pay(no)

    def _a_signed_call(self, channel: Connector) -> None:
        assert isinstance(channel, PaymentChannel)
        channel.query_payment("K-NO-SUCH-PAYMENT-AUTH")

    @staticmethod
    def _created(
        sandbox: PaymentSandbox,
        shop: Shop,
        no: str,
        amount: str = "88.80",
        method: str | None = None,
    ) -> str:
        channel = shop.channel()
        out = channel.create_payment(
            PaymentRequest(
                out_trade_no=no,
                amount=Decimal(amount),
                subject="测试商品 & 赠品=1件",
                method=method or sandbox.payment_methods[0],
                notify_url="http://127.0.0.1/hooks/notify",
            )
        )
        assert out, "create_payment returned nothing for the payer"
        sandbox.payer_acts(out)
        return no

    def test_every_payment_method_creates_a_payment(
        self, sandbox: PaymentSandbox, shop: Shop
    ) -> None:
        assert sandbox.payment_methods, "the sandbox lists no payment methods"
        for i, method in enumerate(sandbox.payment_methods):
            no = self._created(sandbox, shop, f"K-M{i}", method=method)
            sandbox.pay(no)
            assert shop.channel().query_payment(no).status is PaymentStatus.SUCCEEDED

    def test_notification_is_verified_stored_and_idempotent(
        self, sandbox: PaymentSandbox, shop: Shop, client: Any, recorder: Recorder
    ) -> None:
        no = self._created(sandbox, shop, "K-1001")
        push = sandbox.pay(no)
        res = _post(client, shop, push)
        assert res.status_code < 300, res.text
        assert [p.out_trade_no for _, p in recorder.payments] == [no]
        paid = recorder.payments[0][1]
        assert paid.status is PaymentStatus.SUCCEEDED
        assert paid.amount == Decimal("88.80")
        again = _post(client, shop, push)
        assert (again.status_code, again.text) == (res.status_code, res.text)
        assert shop.inbox_count() == 1
        assert len(recorder.payments) == 1

    def test_notifications_out_of_order_keep_the_newest(
        self, sandbox: PaymentSandbox, shop: Shop, client: Any, recorder: Recorder
    ) -> None:
        no = self._created(sandbox, shop, "K-1002")
        created = sandbox.notification(no, status=sandbox.pending_status)
        paid = sandbox.pay(no)
        assert _post(client, shop, paid).status_code < 300
        assert _post(client, shop, created).status_code < 300
        states = [p.status for _, p in recorder.payments if p.out_trade_no == no]
        assert states and states[-1] is PaymentStatus.SUCCEEDED, states

    def test_query_refund_idempotent_and_refund_query(
        self, sandbox: PaymentSandbox, shop: Shop
    ) -> None:
        no = self._created(sandbox, shop, "K-1003", amount="100.00")
        sandbox.pay(no)
        channel = shop.channel()
        assert channel.query_payment(no).status is PaymentStatus.SUCCEEDED
        req = RefundRequest(out_trade_no=no, out_request_no="RF-1", amount=Decimal("30.00"))
        one = channel.refund(req)
        two = channel.refund(req)
        assert one.amount == two.amount == Decimal("30.00")
        assert one.refund_id == two.refund_id
        assert sandbox.refunded(no) == Decimal("30.00")
        assert channel.query_refund(no, "RF-1").status is RefundStatus.REFUNDED
        channel.refund(RefundRequest(out_trade_no=no, out_request_no="RF-2", amount=Decimal(70)))
        assert sandbox.refunded(no) == Decimal("100.00")
        after = channel.query_payment(no)
        assert after.refunded == Decimal("100.00") or after.status in (
            PaymentStatus.REFUNDED,
            PaymentStatus.CLOSED,
        )

    def test_bill_lists_payments_and_refunds(self, sandbox: PaymentSandbox, shop: Shop) -> None:
        no = self._created(sandbox, shop, "K-1004", amount="50.00")
        sandbox.pay(no)
        channel = shop.channel()
        channel.refund(RefundRequest(out_trade_no=no, out_request_no="RF-9", amount=Decimal(5)))
        rows = channel.parse_bill(channel.download_bill(datetime.now(UTC)))
        mine = [r for r in rows if r.out_trade_no == no]
        kinds = Counter(r.kind for r in mine)
        assert kinds[BillKind.PAYMENT] == 1 and kinds[BillKind.REFUND] == 1, mine
        pay = next(r for r in mine if r.kind is BillKind.PAYMENT)
        ref = next(r for r in mine if r.kind is BillKind.REFUND)
        assert pay.amount == Decimal("50.00") and ref.amount == Decimal("5.00")
        assert ref.out_request_no == "RF-9"

    def test_throttling_is_answered_with_back_off(
        self, sandbox: PaymentSandbox, shop: Shop
    ) -> None:
        no = self._created(sandbox, shop, "K-1005")
        sandbox.pay(no)
        sandbox.throttle(2)
        started = len(sandbox.calls)
        assert shop.channel().query_payment(no).status is PaymentStatus.SUCCEEDED
        calls = sandbox.calls[started:]
        throttled = [i for i, c in enumerate(calls) if c.error]
        assert len(throttled) == 2
        gaps = [calls[i + 1].at - calls[i].at for i in throttled if i + 1 < len(calls)]
        assert gaps and min(gaps) >= 0.05, "retried a throttled call without pausing"

    def test_secrets_never_appear_in_logs(
        self,
        sandbox: PaymentSandbox,
        shop: Shop,
        client: Any,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        no = self._created(sandbox, shop, "K-1006")
        push = sandbox.pay(no)
        _post(client, shop, push)
        _post(client, shop, sandbox.tamper(push))
        channel = shop.channel()
        channel.query_payment(no)
        channel.refund(RefundRequest(out_trade_no=no, out_request_no="RF-L", amount=Decimal(1)))
        with suppress(AssertionError):
            self.test_refuses_a_wrong_secret(shop)
        assert caplog.records, "nothing was logged at all"
        assert not _leaks(caplog.records, shop.secrets)
