"""The order pipeline end to end against the Tmall sandbox: sync → review → route → reserve →
ship → write-back (checked at the sandbox) → ledger; refunds before shipping; oversell."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from erp_connector_tmall.channel import TmallChannel
from erp_connector_tmall.sandbox import CATALOGUE, TmallSandbox
from erp_oms import service as svc
from erp_oms.models import Event, Order, OrderLine, Parcel, ParcelLine, WarehouseRoute
from erp_oms.writeback import run_due
from sqlalchemy import func, select

from erp_core.channels import service as chsvc
from erp_core.channels import sync
from erp_core.channels.http import shared_limiter
from erp_core.channels.interfaces import TokenSet
from erp_core.inventory import service as inv
from erp_core.ledger import service as ledger
from erp_core.ledger.models import JournalEntry, Posting
from erp_core.testing.sandbox import running

D = Decimal
CODES = sorted(
    {code for _, outer, _, _, skus in CATALOGUE for code in ([s[1] for s in skus] or [outer])}
)


@pytest.fixture
def sandbox() -> Iterator[TmallSandbox]:
    with running(TmallSandbox(seed=41)) as box:
        yield box


def _account(db: Any, registry: Any, settings: Any, tenant_id: int, box: TmallSandbox) -> int:
    spec = box.account()
    with db.tenant_session(tenant_id) as s:
        acc = chsvc.create_account(
            s,
            registry,
            settings,
            connector="tmall",
            shop_id=spec.shop_id,
            name="天猫店",
            app_key=spec.app_key,
            config=dict(spec.config),
            secrets=dict(spec.secrets),
        )
        chsvc.set_tokens(
            s,
            settings,
            acc,
            TokenSet(
                access_token=spec.access_token or "",
                expires_at=spec.token_expires_at,
                refresh_token=spec.refresh_token,
            ),
        )
        return acc.id


@pytest.fixture
def shop(
    erp_db: Any, erp_registry: Any, erp_settings: Any, make_tenant: Any, sandbox: TmallSandbox
) -> dict[str, Any]:
    t = make_tenant("oms-shop", plugins=("oms", "tmall"))
    with erp_db.tenant_session(t.id) as s:
        hz = inv.create_warehouse(s, code="HZ", name="杭州仓")
        bj = inv.create_warehouse(s, code="BJ", name="北京仓")
        for code in CODES:
            inv.create_sku(s, code=code, name=code)
            inv.receive(s, code, 50, warehouse=hz, unit_cost=D("10.00"))
            inv.receive(s, code, 50, warehouse=bj, unit_cost=D("12.00"))
        s.add(
            WarehouseRoute(warehouse_id=hz.id, priority=10, regions=["浙江省", "江苏省", "上海市"])
        )
        s.add(WarehouseRoute(warehouse_id=bj.id, priority=20, regions=[]))
    account_id = _account(erp_db, erp_registry, erp_settings, t.id, sandbox)
    return {"tenant": t, "account_id": account_id}


def _sync(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], **kw: Any
) -> Any:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    return sync.run(
        erp_db,
        erp_registry,
        erp_settings,
        shop["tenant"].id,
        shop["account_id"],
        kw.pop("stream", "orders"),
        since=kw.pop("since", end - timedelta(days=2)),
        until=end,
        **kw,
    )


def test_orders_flow_from_the_sandbox_to_the_ledger_and_back(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    now = datetime.now(UTC)
    paid = [
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=2)
        for h in (3, 4, 5)
    ]
    unpaid = sandbox.order_with_status("WAIT_BUYER_PAY", at=now - timedelta(hours=6))
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        orders = {o.platform_order_id: o for o in s.scalars(select(Order))}
        assert set(paid) | {unpaid} <= set(orders)
        assert all(orders[p].status == "new" for p in [*paid, unpaid])
        res = svc.process(s)
        assert res.reserved == 3 and res.held == 0, res
        assert orders[unpaid].status == "new"  # waits for the payment
    # the same orders again (a re-sync): nothing duplicated, nothing processed twice
    _sync(erp_db, erp_registry, erp_settings, shop)
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(func.count()).select_from(Order)) == len(orders)
        assert svc.process(s).reserved == 0
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        assert len(parcels) >= 3
        for n, p in enumerate(parcels):
            svc.ship(s, p, tracking_no=f"SF{n:010d}", courier_code="SF")
        assert {
            o.status for o in s.scalars(select(Order).where(Order.platform_order_id.in_(paid)))
        } == {"shipped"}
        out = run_due(s, erp_registry, erp_settings)
        assert out == {"done": len(parcels), "failed": 0}
    # the sandbox received signed ship-back calls with our tracking numbers
    shipped = {x["order_id"]: x["tracking_no"] for x in sandbox.shipments()}
    assert set(paid) <= set(shipped)
    with erp_db.tenant_session(tid) as s:
        rows = ledger.trial_balance(s)
        assert sum((r.balance_base for r in rows), D(0)) == 0
        entries = list(
            s.scalars(
                select(JournalEntry).where(
                    JournalEntry.source_type == "oms_order",
                    JournalEntry.idempotency_key.like("oms:order:%:revenue"),
                )
            )
        )
        assert len(entries) == 3
        for e in entries:
            postings = list(s.scalars(select(Posting).where(Posting.entry_id == e.id)))
            assert sum((p.amount for p in postings), D(0)) == 0
            assert {p.channel for p in postings} == {"tmall"}
            assert {p.store for p in postings} == {str(shop["account_id"])}
        from erp_core.ledger.models import Account

        cogs = s.scalars(
            select(Posting)
            .join(Account, Account.id == Posting.account_id)
            .where(Account.code == "5401")
        ).all()
        assert cogs and all(p.channel == "tmall" and p.order_ref in paid for p in cogs)
        # the platform confirms the shipment on the next sync: nothing changes but the status
        for pid in paid:
            assert s.scalar(select(Order.status).where(Order.platform_order_id == pid)) == "shipped"


def test_a_run_reserves_what_it_planned_without_reading_it_back(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    from sqlalchemy import event as sa_event

    from erp_core.inventory.models import Move

    now = datetime.now(UTC)
    for h in (3, 4, 5, 6):
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=2)
    _sync(erp_db, erp_registry, erp_settings, shop)
    seen: list[str] = []
    with erp_db.tenant_session(shop["tenant"].id) as s:
        conn = s.connection()
        sa_event.listen(conn, "before_cursor_execute", lambda *a: seen.append(a[2]))
        res = svc.process(s)
        assert res.reserved == 4, res
    reads = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
    assert not [q for q in reads if "FROM oms_parcel" in q], reads
    with erp_db.tenant_session(shop["tenant"].id) as s:
        lines = list(s.scalars(select(ParcelLine)))
        assert len(lines) >= 4 and all(pl.move_ids for pl in lines)
        for pl in lines:
            keys = {
                m.idempotency_key for m in s.scalars(select(Move).where(Move.id.in_(pl.move_ids)))
            }
            assert keys == {f"oms:parcel-line:{pl.id}"}
        assert {p.state for p in s.scalars(select(Parcel))} == {"reserved"}
        assert {o.status for o in s.scalars(select(Order))} == {"reserved"}


def test_refund_before_shipping_stops_the_order_and_frees_the_stock(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    now = datetime.now(UTC)
    tid_ = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=3))
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        svc.process(s)
        order = s.scalar(select(Order).where(Order.platform_order_id == tid_))
        assert order is not None and order.status == "reserved"
        moves = [m for pl in s.scalars(select(ParcelLine)) for m in pl.move_ids]
        assert moves and all(inv.get_move(s, m).state == "reserved" for m in moves)
    sandbox.request_refund(tid_, at=now - timedelta(hours=1))
    _sync(erp_db, erp_registry, erp_settings, shop)
    _sync(erp_db, erp_registry, erp_settings, shop, stream="refunds")
    with erp_db.tenant_session(tid) as s:
        order = s.scalar(select(Order).where(Order.platform_order_id == tid_))
        assert order is not None
        assert (order.status, order.hold_code) == ("held", "refund")
        assert all(inv.get_move(s, m).state == "cancelled" for m in moves)
        assert svc.process(s).reserved == 0  # a held order stays put


def test_two_shops_never_oversell_the_last_units(
    erp_db: Any,
    erp_registry: Any,
    erp_settings: Any,
    shop: dict[str, Any],
    sandbox: TmallSandbox,
) -> None:
    tid = shop["tenant"].id
    with running(TmallSandbox(seed=42)) as other:
        second = _account(erp_db, erp_registry, erp_settings, tid, other)
        now = datetime.now(UTC)
        for box in (sandbox, other):
            for h in range(4):
                box.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h + 2))
        _sync(erp_db, erp_registry, erp_settings, shop)
        _sync(erp_db, erp_registry, erp_settings, {**shop, "account_id": second})
    with erp_db.tenant_session(tid) as s:
        # leave only a few units of everything
        for code in CODES:
            for wh in ("HZ", "BJ"):
                level = inv.stock_levels(s, sku=code, warehouse=wh)
                on_hand = sum((r.on_hand for r in level), D(0))
                if on_hand > 1:
                    loc = inv.warehouse_stock_location(s, wh)
                    inv.scrap(s, code, on_hand - 1, location=loc)
        svc.process(s)
        lines = s.execute(
            select(OrderLine.sku_id, func.sum(ParcelLine.quantity))
            .join(ParcelLine, ParcelLine.order_line_id == OrderLine.id)
            .join(Parcel, Parcel.id == ParcelLine.parcel_id)
            .where(Parcel.state == "reserved")
            .group_by(OrderLine.sku_id)
        ).all()
        for _sku, qty in lines:
            assert qty <= 2  # one unit left in each of the two warehouses
        held = s.scalars(select(Order).where(Order.status == "held")).all()
        assert held and all(o.hold_code in ("stock", "no_stock", "review") for o in held)
        for code in CODES:
            for r in inv.stock_levels(s, sku=code):
                assert r.available >= 0


def test_the_couriers_trail_is_kept_on_the_parcel_until_delivery(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    from erp_oms.writeback import run_trails

    now = datetime.now(UTC)
    pid = sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=2))
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        svc.process(s)
        [parcel] = s.scalars(select(Parcel).where(Parcel.state == "reserved"))
        svc.ship(s, parcel, tracking_no="SF7777777777", courier_code="SF")
        assert svc.due_trails(s) == []  # not before the platform knows the tracking number
        assert run_due(s, erp_registry, erp_settings) == {"done": 1, "failed": 0}
        parcel_id = parcel.id
    # just shipped: the courier has not come yet, the platform says so with an empty trail
    with erp_db.tenant_session(tid) as s:
        assert run_trails(s, erp_registry, erp_settings) == {
            "refreshed": 1,
            "missed": 0,
            "delivered": 0,
        }
        p = s.get(Parcel, parcel_id)
        assert p is not None and p.trail == [] and p.trail_courier == "顺丰速运"
        assert p.trail_checked_at is not None and p.delivered_at is None
        assert svc.due_trails(s) == []  # asked again only after TRAIL_EVERY
        p.trail_checked_at = p.trail_checked_at - svc.TRAIL_EVERY
    call = [c for c in sandbox.calls if c.api == "taobao.logistics.trace.search"][-1]
    assert call.params["tid"] == pid and "is_split" not in call.params
    # a day and a half later (the sandbox's couriers made fast): delivered
    sandbox.trail_pace = 10**6
    time.sleep(1.1)  # TOP's times are whole seconds: the ship-back's was rounded up
    with erp_db.tenant_session(tid) as s:
        assert run_trails(s, erp_registry, erp_settings)["delivered"] == 1
        p = s.get(Parcel, parcel_id)
        assert p is not None and p.delivered_at is not None
        assert [x["action"] for x in p.trail] == [
            "collected",
            "in_transit",
            "in_transit",
            "out_for_delivery",
            "delivered",
        ]
        assert p.trail[-1]["text"].startswith("快件已签收")
        order = s.get(Order, p.order_id)
        assert order is not None
        delivered = list(s.scalars(select(Event).where(Event.kind == "delivered")))
        assert len(delivered) == 1 and delivered[0].order_id == order.id
        p.trail_checked_at = None
        assert svc.due_trails(s) == []  # delivered: never asked again


def test_a_platform_without_trails_is_asked_once(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    class NoTrail:
        def logistics_trail(self, order_id: str, **kw: Any) -> None:
            return None

    class Down:
        def logistics_trail(self, order_id: str, **kw: Any) -> None:
            raise ConnectionError("platform unreachable")

    now = datetime.now(UTC)
    sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=2))
    _sync(erp_db, erp_registry, erp_settings, shop)
    with erp_db.tenant_session(shop["tenant"].id) as s:
        svc.process(s)
        [parcel] = s.scalars(select(Parcel).where(Parcel.state == "reserved"))
        svc.ship(s, parcel, tracking_no="SF8888888888", courier_code="SF")
        run_due(s, erp_registry, erp_settings)
        assert svc.refresh_trail(s, parcel, Down()) is False  # asked again later
        assert parcel.trail_checked_at is not None and parcel.delivered_at is None
        parcel.trail_checked_at = parcel.trail_checked_at - svc.TRAIL_EVERY
        assert svc.due_trails(s) == [parcel]
        assert svc.refresh_trail(s, parcel, NoTrail()) is False
        assert svc.due_trails(s) == []  # the platform has none: not asked again
        assert parcel.trail == []


def _reserved_orders(
    db: Any,
    registry: Any,
    settings: Any,
    shop: dict[str, Any],
    box: TmallSandbox,
    n: int,
    lines: int,
) -> int:
    """``n`` paid orders of ``lines`` lines synced and taken to reserved; the tenant's id."""
    now = datetime.now(UTC)
    for h in range(3, 3 + n):
        box.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=lines)
    _sync(db, registry, settings, shop)
    tid: int = shop["tenant"].id
    with db.tenant_session(tid) as s:
        assert svc.process(s).reserved == n
    return tid


def test_a_page_of_parcels_ships_at_once_each_order_on_its_own_books(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    """ship_many: every parcel checked before anything ships; then one completion for all,
    each order's cost of goods sold and revenue on its own order dimension."""
    from erp_oms.service import OmsError

    from erp_core.ledger.models import Account

    tid = _reserved_orders(erp_db, erp_registry, erp_settings, shop, sandbox, 4, lines=2)
    with erp_db.tenant_session(tid) as s:
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        shipments = [(p, f"SF{p.id:010d}", "SF") for p in parcels]
        for bad, why in (
            ([*shipments, (parcels[0], "SF9", "SF")], "in the shipment twice"),
            ([*shipments[:-1], (parcels[-1], " ", "SF")], "tracking number of 1 to 64"),
        ):
            with pytest.raises(OmsError, match=why):
                svc.ship_many(s, bad)
            assert {p.state for p in parcels} == {"reserved"}
        assert (
            s.scalar(
                select(func.count())
                .select_from(JournalEntry)
                .where(JournalEntry.source_type == "oms_order")
            )
            == 0
        )
        svc.ship_many(s, shipments)
        svc.ship_many(s, shipments[:1])  # the same parcel with the same number: nothing
        assert {p.state for p in parcels} == {"shipped"}
        orders = list(s.scalars(select(Order).where(Order.status == "shipped")))
        assert len(orders) == 4
        by_order = {o.platform_order_id: o for o in orders}
        revenue = {
            e.source_id: e
            for e in s.scalars(
                select(JournalEntry).where(JournalEntry.idempotency_key.like("oms:order:%:revenue"))
            )
        }
        assert sorted(revenue) == sorted(str(o.id) for o in orders)
        cogs = s.execute(
            select(Posting.order_ref, func.sum(Posting.amount))
            .join(Account, Account.id == Posting.account_id)
            .where(Account.code == "5401")
            .group_by(Posting.order_ref)
        ).all()
        assert {ref for ref, _ in cogs} == set(by_order)
        for ref, amount in cogs:
            units = sum(
                (
                    ln.quantity
                    for ln in s.scalars(
                        select(OrderLine).where(OrderLine.order_id == by_order[ref].id)
                    )
                ),
                D(0),
            )
            assert amount == units * D("11.00")  # the moving average of both warehouses
        assert sum((r.balance_base for r in ledger.trial_balance(s)), D(0)) == 0


def test_shipping_takes_the_stock_last_and_tells_plugins_when_all_is_done(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    """ship_many marks the parcels and posts the revenue before it completes the stock moves
    (the shared SKU rows stay locked for less of the transaction); oms_order_shipped is
    called once the order's revenue is posted and its stock moves are done."""
    from erp_core.inventory.models import Move
    from erp_core.tenancy.service import tenant_hooks

    now = datetime.now(UTC)
    for h in (3, 4):
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=2)
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        assert svc.process(s).reserved == 2

    class Spy:
        def __init__(self, real: Any) -> None:
            self.real = real
            self.seen: dict[int, tuple[set[str], bool]] = {}

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

        def oms_order_shipped(self, session: Any, tenant_id: int, order_id: int) -> None:
            moves = [
                m
                for pl in session.scalars(
                    select(ParcelLine).join(Parcel).where(Parcel.order_id == order_id)
                )
                for m in pl.move_ids
            ]
            states = set(session.scalars(select(Move.state).where(Move.id.in_(moves))))
            key = f"oms:order:{order_id}:revenue"
            posted = session.scalar(
                select(JournalEntry.id).where(JournalEntry.idempotency_key == key)
            )
            self.seen[order_id] = (states, posted is not None)

    with erp_db.tenant_session(tid) as s:
        spy = Spy(tenant_hooks(s))
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        svc.ship_many(s, [(p, f"SF{p.id:010d}", "SF") for p in parcels], hooks=spy)
        assert spy.seen == {p.order_id: ({"done"}, True) for p in parcels}
        for p in parcels:
            revenue = s.scalar(
                select(JournalEntry.id).where(
                    JournalEntry.idempotency_key == f"oms:order:{p.order_id}:revenue"
                )
            )
            moves = [
                m
                for pl in s.scalars(select(ParcelLine).where(ParcelLine.parcel_id == p.id))
                for m in pl.move_ids
            ]
            cogs = list(
                s.scalars(
                    select(JournalEntry.id).where(
                        JournalEntry.idempotency_key.in_([f"stock-move:{m}" for m in moves])
                    )
                )
            )
            assert len(cogs) == len(moves) and revenue is not None
            assert revenue < min(cogs)  # the stock's entries come after the order's own


@pytest.mark.parametrize(
    ("latency", "batch", "requests"), [(0.0, None, 1), (0.05, 1, 6), (0.05, 2, 3)]
)
def test_write_back_goes_in_parallel_when_the_platform_makes_calls_wait(
    erp_db: Any,
    erp_registry: Any,
    erp_settings: Any,
    shop: dict[str, Any],
    sandbox: TmallSandbox,
    latency: float,
    batch: int | None,
    requests: int,
) -> None:
    """A platform that answers at once gets the requests one by one (threads would only
    contend for the CPU); one that makes a request wait gets the rest of them in parallel.
    Tmall's connector sends up to 20 ship-backs in one request (TOP's batch API)."""
    from erp_oms.writeback import channel_for

    now = datetime.now(UTC)
    for h in range(3, 9):
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=1)
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        assert svc.process(s).reserved == 6
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        svc.ship_many(s, [(p, f"ZT{p.id:08d}", "ZTO") for p in parcels])
        channel = channel_for(s, erp_registry, erp_settings, shop["account_id"])
        # the shop's rate limit (10 calls a second) would space the requests further apart
        # than the latency: this test is about the latency alone
        limiter = shared_limiter("tmall", qps=TmallChannel.qps)
        limiter.set_rate(sandbox.shop_id, qps=10_000, burst=100)
        sandbox.latency, sandbox.max_in_flight, before = latency, 0, sandbox.requests
        try:
            # "slow" is a tenth of the latency: far above a loopback call, far below the wait
            outcomes = svc.writeback_many(
                s, parcels, channel, parallel_after=latency / 10 or 1.0, batch=batch
            )
        finally:
            sandbox.latency = 0.0
            limiter.set_rate(sandbox.shop_id, qps=TmallChannel.qps, burst=5)
        assert outcomes == [True] * 6
        assert [p.writeback for p in parcels] == ["done"] * 6
        assert sandbox.requests - before == requests
        if latency:  # the first request waited: the others went at once
            assert 2 <= sandbox.max_in_flight <= min(requests - 1, svc.WRITEBACK_CONCURRENCY)
        else:
            assert sandbox.max_in_flight == 1
    assert len(sandbox.shipments()) == 6


def test_write_back_calls_in_parallel_and_keeps_each_refusal_on_its_parcel(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    now = datetime.now(UTC)
    for h in (3, 4, 5, 6, 7):
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=1)
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        assert svc.process(s).reserved == 5
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        svc.ship_many(s, [(p, f"YT{p.id:08d}", "YTO") for p in parcels])
        # the platform does not know this one (refused for good, not a transient error)
        lost = s.get(Order, parcels[2].order_id)
        assert lost is not None
        known = lost.platform_order_id
        lost.platform_order_id = "404404404"
        out = run_due(s, erp_registry, erp_settings)
        assert out == {"done": 4, "failed": 1}
        assert [p.writeback for p in parcels] == ["done", "done", "failed", "done", "done"]
        bad = parcels[2]
        assert bad.writeback_error and bad.writeback_next_at is not None
        assert bad.writeback_attempts == 1
        kinds = {
            (e.order_id, e.kind)
            for e in s.scalars(
                select(Event).where(Event.kind.in_(("written_back", "writeback_failed")))
            )
        }
        assert (lost.id, "writeback_failed") in kinds
        assert {(p.order_id, "written_back") for p in parcels if p is not bad} <= kinds
        lost.platform_order_id = known
    got = {x["order_id"]: x["tracking_no"] for x in sandbox.shipments()}
    with erp_db.tenant_session(tid) as s:
        for p in s.scalars(select(Parcel).where(Parcel.writeback == "done")):
            order = s.get(Order, p.order_id)
            assert order is not None and got[order.platform_order_id] == p.tracking_no
        assert known not in got


def test_a_merged_parcel_in_a_batch_is_written_back_only_when_each_of_its_orders_is(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    """A parcel carrying two merged orders is two calls of the batch request: one refused
    fails the parcel (the other call went through, and goes again harmlessly next time), the
    other parcels of the batch are done; the next run writes back what is due, once."""
    now = datetime.now(UTC)
    tids = [
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h), lines=1)
        for h in (3, 4, 5, 6)
    ]
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        orders = {o.platform_order_id: o for o in s.scalars(select(Order))}
        first, second = orders[tids[0]], orders[tids[1]]
        second.buyer_key, second.address_key = first.buyer_key, first.address_key
        s.flush()
        result = svc.process(s)
        assert result.merged == 1 and result.reserved == 3
        parcels = list(s.scalars(select(Parcel).where(Parcel.state == "reserved")))
        svc.ship_many(s, [(p, f"JT{p.id:09d}", "JTSD") for p in parcels])
        merged = next(p for p in parcels if p.order_id in (first.id, second.id))
        second.platform_order_id = "404404404"  # the platform does not know this one
        before = sandbox.requests
        assert run_due(s, erp_registry, erp_settings) == {"done": 2, "failed": 1}
        assert sandbox.requests - before == 1  # four calls, one request
        assert merged.writeback == "failed" and "B01" in merged.writeback_error
        assert {p.writeback for p in parcels if p is not merged} == {"done"}
        assert tids[0] in {x["order_id"] for x in sandbox.shipments()}
        second.platform_order_id = tids[1]
        merged.writeback_next_at = now - timedelta(minutes=1)
        assert run_due(s, erp_registry, erp_settings) == {"done": 1, "failed": 0}
        assert merged.writeback == "done"
    shipped = [x["order_id"] for x in sandbox.shipments()]
    assert sorted(shipped) == sorted(tids[:4]) and len(shipped) == 4


def test_a_shipment_undone_by_a_savepoint_leaves_parcel_and_order_as_stored(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    """Shipping writes the parcel's and the order's new state with statements of its own
    (``erp_core.db.direct.written``), not through a flush: a savepoint rolled back around it
    leaves both objects as the database has them, the write-back's outcome likewise; a
    parcel whose row is gone is an error, as a flush's would be."""
    from sqlalchemy import delete
    from sqlalchemy.orm.exc import StaleDataError

    now = datetime.now(UTC)
    for h in (3, 4):
        sandbox.order_with_status("WAIT_SELLER_SEND_GOODS", at=now - timedelta(hours=h))
    _sync(erp_db, erp_registry, erp_settings, shop)
    tid = shop["tenant"].id
    with erp_db.tenant_session(tid) as s:
        assert svc.process(s).reserved == 2
    with erp_db.tenant_session(tid) as s:
        first, second = s.scalars(
            select(Parcel).where(Parcel.state == "reserved").order_by(Parcel.id)
        ).all()
        order = s.get(Order, first.order_id)
        assert order is not None and order.status == "reserved"
        before = (first.state, first.tracking_no, first.writeback)
        undone = s.begin_nested()
        svc.ship(s, first, tracking_no="SF0000000001", courier_code="SF")
        assert (first.state, order.status) == ("shipped", "shipped")
        undone.rollback()
        assert (first.state, first.tracking_no, first.writeback) == before
        assert order.status == "reserved" and not s.dirty
        svc.ship(s, first, tracking_no="SF0000000001", courier_code="SF")
        first_id, second_id = first.id, second.id
    with erp_db.tenant_session(tid) as s:
        parcel = s.get(Parcel, first_id)
        assert parcel is not None
        assert (parcel.state, parcel.tracking_no, parcel.writeback) == (
            "shipped",
            "SF0000000001",
            "pending",
        )
        assert s.scalar(select(Order.status).where(Order.id == parcel.order_id)) == "shipped"
        undone = s.begin_nested()
        assert run_due(s, erp_registry, erp_settings) == {"done": 1, "failed": 0}
        assert parcel.writeback == "done"
        undone.rollback()
        assert parcel.writeback == "pending" and parcel.writeback_attempts == 0
    with erp_db.session(tid) as s:
        gone = s.get(Parcel, second_id)
        assert gone is not None
        conn = s.connection()
        conn.execute(delete(ParcelLine.__table__).where(ParcelLine.parcel_id == second_id))
        conn.execute(delete(Parcel.__table__).where(Parcel.id == second_id))
        with pytest.raises(StaleDataError, match="1 row"):
            svc.ship(s, gone, tracking_no="SF0000000002", courier_code="SF")
        s.rollback()
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(Parcel.state).where(Parcel.id == second_id)) == "reserved"


def test_parcels_read_as_rows_ship_and_write_back_as_parcels_do(
    erp_db: Any, erp_registry: Any, erp_settings: Any, shop: dict[str, Any], sandbox: TmallSandbox
) -> None:
    """parcel_rows and due_writeback_rows: shipping and the write-back take the parcels' rows
    as they take Parcels; a Parcel the session holds shows what they wrote; a due parcel
    whose order has no shop has nothing to write back."""
    from erp_oms.writeback import channel_for

    tid = _reserved_orders(erp_db, erp_registry, erp_settings, shop, sandbox, 4, lines=2)
    with erp_db.tenant_session(tid) as s:
        ids = sorted(s.scalars(select(Order.id)))
    with erp_db.tenant_session(tid) as s:
        held = s.scalars(select(Parcel).where(Parcel.order_id == ids[0])).one()
        rows = svc.parcel_rows(s, ids, state="reserved")
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        assert {r.order_id for r in rows} == set(ids) and {r.state for r in rows} == {"reserved"}
        assert svc.parcel_rows(s, ids, state="shipped") == []
        svc.ship_many(s, [(r, f"SF{r.id:010d}", "SF") for r in rows])
        assert (held.state, held.tracking_no, held.writeback) == (
            "shipped",
            f"SF{held.id:010d}",
            "pending",
        )
        assert svc.parcel_rows(s, ids, state="reserved") == []
        assert len(svc.parcel_rows(s, ids, state="shipped")) == len(rows)
        assert set(s.scalars(select(Order.status))) == {"shipped"}
        assert sum((r.balance_base for r in ledger.trial_balance(s)), D(0)) == 0
    with erp_db.tenant_session(tid) as s:
        held = s.scalars(select(Parcel).where(Parcel.order_id == ids[0])).one()
        due = svc.due_writeback_rows(s, order_ids=ids[:2])
        assert {r.order_id for r in due} == set(ids[:2])
        assert len(svc.due_writeback_rows(s, limit=1)) == 1
        assert len(svc.due_writeback_rows(s, limit=1, order_ids=ids)) == len(ids)  # all of them
        channel = channel_for(s, erp_registry, erp_settings, shop["account_id"])
        assert svc.writeback_many(s, due, channel) == [True] * len(due)
        assert (held.writeback, held.writeback_attempts) == ("done", 1)
        assert {r.order_id for r in svc.due_writeback_rows(s)} == set(ids[2:])
        # an order with no shop (as a manual order): its parcel has nothing to write back
        manual = s.get(Order, ids[2])
        assert manual is not None
        manual.channel_account_id = None
        assert run_due(s, erp_registry, erp_settings) == {"done": 1, "failed": 0}
        states = dict(s.execute(select(Parcel.order_id, Parcel.writeback)).all())
        assert states == {ids[0]: "done", ids[1]: "done", ids[2]: "none", ids[3]: "done"}
    got = {x["tracking_no"] for x in sandbox.shipments()}
    assert got == {f"SF{r.id:010d}" for r in rows if r.order_id != ids[2]}


def test_loaded_columns_leave_out_what_the_model_does_not_map() -> None:
    """``process`` reads its orders' rows with the columns ``loaded`` makes objects of: the
    bulk-insert sentinel the model does not map is left out."""
    from sqlalchemy import Table

    from erp_core.db.direct import loaded_columns

    names = [c.name for c in loaded_columns(Order)]
    table = Order.__table__
    assert isinstance(table, Table)
    assert "insert_sentinel" in table.c and "insert_sentinel" not in names
    assert names == [c.name for c in table.c if c.name != "insert_sentinel"]
