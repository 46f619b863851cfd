"""The OMS pages without a browser: the order pool (filters, keyset pages, bulk actions with
their problems per order), the exception queue (SKU mapping, address fixes, release), one
order (ship, hold, cancel, release, address), the review rule editor and the routing settings;
inline errors on bad input with nothing stored, both languages, permissions, tenant isolation,
and no GET that writes."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from erp_oms import manual
from erp_oms import service as svc
from erp_oms.manifest import MANIFEST
from erp_oms.models import (
    CourierRate,
    Event,
    Order,
    OrderLine,
    Parcel,
    ReviewRule,
    Setting,
    SkuMap,
    WarehouseRoute,
)
from jinja2 import Environment
from sqlalchemy import event, func, select

from erp_core.channels.models import ChannelAccount
from erp_core.channels.types import Address, OrderStatus
from erp_core.channels.types import Order as ChannelOrder
from erp_core.channels.types import OrderLine as ChannelLine
from erp_core.i18n import Catalogs
from erp_core.i18n_tools import Domain, problems
from erp_core.inventory import service as inv
from erp_core.testing.fixtures import PASSWORD, csrf_of, login

HX = {"HX-Request": "true"}
D = Decimal
PLUGIN_DIR = Path(__file__).resolve().parents[1] / "erp_oms"
TEMPLATES = sorted((PLUGIN_DIR / "templates").rglob("*.html"))
ROOT = Path(__file__).resolve().parents[3]

GOOD = Address(
    name="张三",
    phone="13800138000",
    province="浙江省",
    city="杭州市",
    district="西湖区",
    detail="文三路100号",
)
BAD = Address(
    name="李四",
    phone="13900139000",
    province="火星",
    city="杭州市",
    district="西湖区",
    detail="1",
)


# --- test data --------------------------------------------------------------------------------


def channel_order(
    number: str,
    *,
    status: OrderStatus = OrderStatus.PAID,
    lines: tuple[tuple[str, int], ...] = (("TEA", 1),),
    receiver: Address = GOOD,
    buyer: str = "",
    note: str = "",
    at: datetime | None = None,
) -> ChannelOrder:
    at = at or datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    order_lines = tuple(
        ChannelLine(
            line_id=f"{number}-{i}",
            platform_sku_id="",
            merchant_sku=code,
            title=f"{code} x{n}",
            quantity=n,
            unit_price=D("35.50"),
            paid=D("35.50") * n,
        )
        for i, (code, n) in enumerate(lines)
    )
    total = sum((ln.paid for ln in order_lines), D(0)) + D(8)
    return ChannelOrder(
        order_id=number,
        account="S1",
        status=status,
        raw_status=status.value.upper(),
        buyer_id=buyer or f"buyer-{number}",
        buyer_nick=buyer or f"nick-{number}",
        receiver=receiver,
        buyer_note=note,
        lines=order_lines,
        shipping_fee=D(8),
        total_paid=total,
        created_at=at,
        paid_at=at if status is not OrderStatus.PENDING_PAYMENT else None,
        modified_at=at,
    )


@dataclass
class Pool:
    """A tenant with orders in every state, by state name."""

    tenant: Any
    shop_id: int
    warehouse_id: int
    ids: dict[str, int]

    @property
    def auth(self) -> dict[str, str]:
        return dict(self.tenant.auth)


def build_pool(erp_db: Any, tenant: Any, prefix: str = "T") -> Pool:
    ids: dict[str, int] = {}
    with erp_db.tenant_session(tenant.id) as s:
        hz = inv.create_warehouse(s, code="HZ", name="杭州仓")
        for code in ("TEA", "MILK"):
            inv.create_sku(s, code=code, name=f"{code} name")
            inv.receive(s, code, 50, warehouse=hz, unit_cost=D("10.00"))
        s.add(WarehouseRoute(warehouse_id=hz.id, priority=10, regions=[]))
        s.add(
            CourierRate(
                warehouse_id=hz.id,
                courier_code="SF",
                region="*",
                first_kg=D(1),
                first_cost=D("8.00"),
                extra_cost_per_kg=D("2.00"),
            )
        )
        shop = ChannelAccount(connector="tmall", kind="sales", name="天猫旗舰店", shop_id="S1")
        s.add(shop)
        s.flush()
        day = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)

        def add(key: str, account: int | None = shop.id, **kw: Any) -> Order:
            kw.setdefault("at", day + timedelta(hours=len(ids)))
            row = svc.ingest(
                s, account, "tmall" if account else "", channel_order(f"{prefix}{key}", **kw)
            )
            ids[key] = row.id
            return row

        add("reserved")
        add("shipped")
        add("unmapped", lines=(("TEA", 1), ("NOPE-1", 2)))
        add("address", receiver=BAD)
        add("stock", lines=(("MILK", 999),))
        add("unpaid", status=OrderStatus.PENDING_PAYMENT)
        add("closed", status=OrderStatus.CLOSED)
        add("completed", status=OrderStatus.COMPLETED)
        add("noted", note="请周五发货", account=None)
        add("reviewed")
        add("routed")
        s.flush()
        pending = [ids[k] for k in ("reserved", "shipped", "unmapped", "address", "stock", "noted")]
        svc.process(s, order_ids=pending)
        for key, state in (("reviewed", "reviewed"), ("routed", "routed")):
            s.get(Order, ids[key]).status = state  # states the pipeline passes in one go
        parcel = s.scalar(select(Parcel).where(Parcel.order_id == ids["shipped"]))
        svc.ship(s, parcel, tracking_no="SF0000001", courier_code="SF")
        states = {k: s.get(Order, v).status for k, v in ids.items()}
    assert states == {
        "reserved": "reserved",
        "shipped": "shipped",
        "unmapped": "held",
        "address": "held",
        "stock": "held",
        "unpaid": "new",
        "closed": "cancelled",
        "completed": "completed",
        "noted": "reserved",
        "reviewed": "reviewed",
        "routed": "routed",
    }, states
    return Pool(tenant, shop.id, hz.id, ids)


@pytest.fixture
def oms_catalog(erp_app: Any) -> None:
    """The plugin's own catalog in the app's translations (the manifest's ``translations``
    adds it; until then the test adds it)."""
    if MANIFEST.translations:
        return
    ui = erp_app.state.templates
    ui.catalogs = Catalogs([*ui.catalogs.domains[1:], ("oms", PLUGIN_DIR / "locale")])


@pytest.fixture
def pool(client: Any, make_tenant: Any, erp_db: Any, oms_catalog: None) -> Pool:
    t = make_tenant("acme", plugins=("oms",))
    p = build_pool(erp_db, t)
    login(client, t.email)
    client.cookies.set("erp_locale", "en")
    return p


@pytest.fixture(autouse=True)
def _no_redirects(client: Any) -> None:
    client.follow_redirects = False


def _status(erp_db: Any, tid: int, order_id: int) -> str:
    with erp_db.tenant_session(tid) as s:
        return str(s.get(Order, order_id).status)


def _rows(html: str, list_id: str = "list-orders") -> list[int]:
    part = html.split(f'id="{list_id}"', 1)[1]
    return [int(x) for x in re.findall(r'<tr data-id="(\d+)"', part)]


def _cards(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<article class="card exception" id="exc-(\d+)"', html)]


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


@pytest.fixture
def token(client: Any, pool: Pool) -> str:
    return csrf_of(client)


def post(client: Any, url: str, token: str, data: dict[str, Any], *, htmx: bool = False) -> Any:
    return client.post(url, data={**data, "csrf_token": token}, headers=HX if htmx else {})


def field_error(html: str, field_id: str) -> str:
    """The error shown next to the field with this id ("" when there is none)."""
    m = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">(.*?)</p>', html, re.S)
    return unescape(m.group(1)).strip() if m else ""


# --- every page, both languages, labelled, no writes ------------------------------------------


def pages(p: Pool) -> list[str]:
    ids = p.ids
    return [
        "/oms/orders",
        "/oms/orders?status_is=held",
        "/oms/orders?size=3",
        "/oms/exceptions",
        "/oms/exceptions?code=sku_unmapped",
        "/oms/rules",
        "/oms/rules/new",
        "/oms/rules/new?kind=blacklist",
        "/oms/rules/new?kind=sku",
        "/oms/settings",
        *(f"/oms/orders/{i}" for i in ids.values()),
    ]


class _Controls(HTMLParser):
    """Form controls without a label, and the page's title."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.labels.add(str(a["for"]))
        elif tag in ("input", "select", "textarea") and a.get("type") not in (
            "hidden",
            "submit",
            "button",
        ):
            self.controls.append({"tag": tag, "wrapped": "1" if self._in_label else "", **a})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label = max(0, self._in_label - 1)

    def unlabelled(self) -> list[str]:
        return [
            f"{c['tag']} name={c.get('name')!r}"
            for c in self.controls
            if not (c["wrapped"] or c.get("id") in self.labels or c.get("aria-label"))
        ]


@pytest.mark.parametrize("locale", ["en", "zh_CN"])
def test_every_page_renders_for_orders_in_every_state(client: Any, pool: Pool, locale: str) -> None:
    client.cookies.set("erp_locale", locale)
    for path in pages(pool):
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[-2000:])
        assert "Vary" in r.headers and "HX-Request" in r.headers["Vary"]
        parser = _Controls()
        parser.feed(r.text)
        assert parser.unlabelled() == [], path
        assert 'name="csrf_token"' in r.text or "/oms/orders/" in path, path
    orders = client.get("/oms/orders").text
    detail = client.get(f"/oms/orders/{pool.ids['reserved']}").text
    if locale == "zh_CN":
        assert "<h1>订单池</h1>" in orders
        assert "已占库存" in orders and "待付款" in orders
        assert "订单 Treserved" in detail and "时间线" in detail
        assert "审核规则" in client.get("/oms/rules").text
    else:
        assert "<h1>Order pool</h1>" in orders
        assert "Stock reserved" in orders and "Waiting for payment" in orders
        assert "Order Treserved" in detail and "Timeline" in detail
    # the list shows every order, newest first, and what each one is waiting for
    assert _rows(orders) == sorted(pool.ids.values(), reverse=True)
    assert "天猫旗舰店" in orders and "NOPE-1" in orders


def test_the_order_page_shows_lines_amounts_parcels_and_timeline(client: Any, pool: Pool) -> None:
    shipped = client.get(f"/oms/orders/{pool.ids['shipped']}").text
    assert "SF0000001" in shipped  # the tracking number of its parcel
    assert re.search(r'data-parcel="\d+" data-state="shipped"', shipped)
    assert "Waiting" in _text(shipped.split('id="order-parcels"')[1])  # write-back pending
    assert 'id="ship-' not in shipped  # nothing left to ship
    assert 'data-value="total_paid">CN¥43.50' in shipped
    timeline = _text(shipped.split('id="order-timeline"')[1])
    for step in ("Received", "Passed the review", "Routed", "Stock reserved", "Shipped"):
        assert step in timeline
    unmapped = client.get(f"/oms/orders/{pool.ids['unmapped']}").text
    lines = unmapped.split('id="order-lines"')[1].split("</table>")[0]
    assert "Not mapped" in lines and "NOPE-1" in lines and "/inventory/skus/" in lines
    assert "SKU not mapped: NOPE-1" in _text(unmapped)
    reserved = client.get(f"/oms/orders/{pool.ids['reserved']}").text
    assert 'id="ship-' in reserved and 'name="tracking_no"' in reserved
    assert (
        'data-open-dialog="hold-order"' in reserved
        and 'data-open-dialog="cancel-order"' in reserved
    )
    completed = client.get(f"/oms/orders/{pool.ids['completed']}").text
    assert 'data-open-dialog="cancel-order"' not in completed  # only unshipped orders cancel
    bad = client.get(f"/oms/orders/{pool.ids['address']}").text
    assert "Unknown province: 火星" in bad


def test_stored_reasons_and_timeline_texts_are_shown_in_the_readers_language(
    client: Any, pool: Pool
) -> None:
    en = client.get(f"/oms/orders/{pool.ids['reserved']}").text
    timeline = _text(en.split('id="order-timeline"')[1])
    assert "passed" in timeline and "1 parcel(s)" in timeline
    assert "SKU not mapped: NOPE-1" in _text(client.get(f"/oms/orders/{pool.ids['unmapped']}").text)
    client.cookies.set("erp_locale", "zh_CN")
    zh = client.get(f"/oms/orders/{pool.ids['reserved']}").text
    timeline = _text(zh.split('id="order-timeline"')[1])
    assert "通过" in timeline and "1 个包裹" in timeline and "parcel(s)" not in timeline
    held = _text(client.get(f"/oms/orders/{pool.ids['unmapped']}").text)
    assert "NOPE-1" in held and "SKU not mapped" not in held
    queue = _text(client.get("/oms/exceptions").text)
    assert "NOPE-1" in queue and "SKU not mapped" not in queue


def test_the_order_page_shows_the_couriers_trail(client: Any, pool: Pool, erp_db: Any) -> None:
    page = client.get(f"/oms/orders/{pool.ids['shipped']}").text
    assert "once the tracking number is sent to it" in _text(page)  # not asked yet
    with erp_db.tenant_session(pool.tenant.id) as s:
        [p] = s.scalars(select(Parcel).where(Parcel.order_id == pool.ids["shipped"]))
        p.trail = [
            {"at": "2026-11-11T09:00:00+08:00", "text": "已揽收", "action": "collected"},
            {"at": "2026-11-12T15:30:00+08:00", "text": "快件已签收", "action": "delivered"},
            {"at": "not a time", "text": "dropped", "action": ""},
        ]
        p.trail_courier = "顺丰速运"
        p.trail_checked_at = p.shipped_at
        parcel_id = p.id
    page = client.get(f"/oms/orders/{pool.ids['shipped']}").text
    trail = page.split(f'id="trail-{parcel_id}"')[1].split("</section>")[0]
    assert "顺丰速运" in trail and "SF0000001" in trail
    steps = re.findall(r'<li data-action="(\w*)">', trail)
    assert steps == ["delivered", "collected"]  # newest first
    assert "Delivered" in _text(trail) and "快件已签收" in trail and "dropped" not in trail
    assert 'datetime="2026-11-12T15:30:00+08:00"' in trail
    client.cookies.set("erp_locale", "zh_CN")
    zh = client.get(f"/oms/orders/{pool.ids['shipped']}").text
    assert "已签收" in zh.split(f'id="trail-{parcel_id}"')[1].split("</section>")[0]


@pytest.fixture
def writes(erp_db: Any) -> Iterator[list[str]]:
    """Statements that change an OMS or inventory table while the test runs."""
    found: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        head = statement.lstrip().split(None, 1)
        changes = head and head[0].upper() in ("INSERT", "UPDATE", "DELETE")
        if changes and ("oms_" in statement or "inv_" in statement):
            found.append(statement[:120])

    event.listen(erp_db.engine, "before_cursor_execute", listen)
    yield found
    event.remove(erp_db.engine, "before_cursor_execute", listen)


def test_no_get_writes(client: Any, pool: Pool, erp_db: Any, writes: list[str]) -> None:
    with erp_db.tenant_session(pool.tenant.id) as s:  # no settings row yet: GET must not add one
        s.execute(Setting.__table__.delete().where(Setting.tenant_id == pool.tenant.id))
        rule = s.scalar(select(ReviewRule.id))
        rate = s.scalar(select(CourierRate.id))
    writes.clear()
    extra = [
        f"/oms/rules/{rule}",
        f"/oms/rules/{rule}?kind=amount_over&name=x",
        f"/oms/settings?rate={rate}",
        "/oms/orders/export.csv",
        "/oms/orders/export.xlsx",
        "/oms/exceptions/export.csv",
        "/oms/orders?tag=buyer+note&shop_is=manual&ordered_from=2026-05-01",
    ]
    for path in [*pages(pool), *extra]:
        for headers in ({}, HX):
            r = client.get(path, headers=headers)
            assert r.status_code == 200, (path, r.status_code)
    assert writes == []
    assert "Lowest shipping cost" in client.get("/oms/settings").text
    with erp_db.tenant_session(pool.tenant.id) as s:
        assert s.scalar(select(func.count()).select_from(Setting)) == 0


# --- the order pool ---------------------------------------------------------------------------


def test_filters_narrow_the_order_pool(client: Any, pool: Pool) -> None:
    ids = pool.ids

    def keys(query: str) -> set[str]:
        html = client.get(f"/oms/orders?{query}", headers=HX).text
        assert "<html" not in html  # htmx gets the list only
        found = set(_rows(html))
        return {k for k, v in ids.items() if v in found}

    assert keys("status_is=held") == {"unmapped", "address", "stock"}
    assert keys("status_is=reserved") == {"reserved", "noted"}
    assert keys("shop_is=manual") == {"noted"}
    assert keys(f"shop_is={pool.shop_id}") == set(ids) - {"noted"}
    assert keys("shop_is=nonsense") == set()
    assert keys("exception=sku_unmapped") == {"unmapped"}
    assert keys("exception=address") == {"address"}
    assert keys("exception=stock") == {"stock"}
    assert keys("tag=buyer+note") == {"noted"}
    assert keys("tag=nothing-like-it") == set()
    assert keys("q=Tunpaid") == {"unpaid"}
    assert keys("q=nick-Tstock") == {"stock"}
    assert keys("q=13900139000") == {"address"}
    # dates are days in the tenant's zone (Asia/Shanghai): 10:00 UTC + n hours
    first_day = {"reserved", "shipped", "unmapped", "address", "stock", "unpaid"}
    assert keys("ordered_to=2026-05-01") == first_day
    assert keys("ordered_from=2026-05-02") == set(ids) - first_day
    assert keys("status_is=held&ordered_to=2026-05-01&q=T") == {"unmapped", "address", "stock"}


def test_the_order_pool_pages_newest_first(client: Any, pool: Pool) -> None:
    newest = sorted(pool.ids.values(), reverse=True)
    seen: list[int] = []
    url = "/oms/orders?size=4"
    while url:
        html = client.get(url).text
        seen += _rows(html)
        m = re.search(r'rel="next" href="([^"]+)"', html)
        url = unescape(m.group(1)) if m else ""
    assert seen == newest
    last = client.get("/oms/orders?size=4").text
    assert 'rel="prev"' not in last


def test_bulk_release_releases_what_it_can_and_says_why_not(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    ids = pool.ids
    tid = pool.tenant.id
    chosen = [ids["unmapped"], ids["address"], ids["stock"], ids["reserved"], 999_999]
    r = post(
        client,
        "/oms/orders/bulk",
        token,
        {"action": "release", "ids": chosen, "back": "/oms/orders?status_is=held"},
        htmx=True,
    )
    assert r.status_code == 200, r.text
    assert _status(erp_db, tid, ids["address"]) == "reviewed"
    assert _status(erp_db, tid, ids["stock"]) == "reviewed"
    assert _status(erp_db, tid, ids["unmapped"]) == "held"
    assert _status(erp_db, tid, ids["reserved"]) == "reserved"
    # the list of the page the form came from (held orders: one left), and the problems
    assert _rows(r.text) == [ids["unmapped"]]
    problems = r.text.split('id="bulk-extra-orders" class="bulk-extra" hx-swap-oob="true"')[1]
    text = _text(problems)
    assert "Tunmapped : map SKU NOPE-1 first" in text
    assert "Treserved : it is Stock reserved, not held" in text
    assert "there is no order 999999" in text
    assert "2 orders released." in _text(r.text.split('id="flash"')[1])
    # the timeline says who released it
    with erp_db.tenant_session(tid) as s:
        ev = s.scalar(
            select(Event).where(Event.order_id == ids["address"], Event.kind == "released")
        )
        assert ev is not None and ev.actor == pool.tenant.email
    # without JavaScript: the page with the problems, or a redirect when there are none
    r = post(client, "/oms/orders/bulk", token, {"action": "release", "ids": [ids["unmapped"]]})
    assert r.status_code == 200 and "map SKU NOPE-1 first" in r.text and "<html" in r.text
    r = post(client, "/oms/orders/bulk", token, {"action": "release", "ids": []})
    assert r.status_code == 303
    assert r.headers["location"] == "/oms/orders"


def test_bulk_hold_and_cancel_need_a_reason(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    ids, tid = pool.ids, pool.tenant.id
    r = post(
        client, "/oms/orders/bulk", token, {"action": "hold", "ids": [ids["reserved"]]}, htmx=True
    )
    assert r.status_code == 422 and r.headers["HX-Reswap"] == "none"  # the selection stays
    assert field_error(r.text, "bulk-reason-orders") == "say why the orders are held"
    assert 'id="bulk-extra-orders" class="bulk-extra" hx-swap-oob="true"' in r.text
    assert _status(erp_db, tid, ids["reserved"]) == "reserved"
    r = post(
        client,
        "/oms/orders/bulk",
        token,
        {"action": "hold", "ids": [ids["reserved"], ids["shipped"]], "reason": "改期"},
        htmx=True,
    )
    assert r.status_code == 200
    assert "it is Shipped; it can no longer be held" in _text(r.text)
    with erp_db.tenant_session(tid) as s:
        o = s.get(Order, ids["reserved"])
        assert (o.status, o.hold_code, o.hold_reason) == ("held", "manual", "改期")
        parcel = s.scalar(select(Parcel).where(Parcel.order_id == o.id))
        assert parcel.state == "cancelled"  # its stock went back
    r = post(
        client,
        "/oms/orders/bulk",
        token,
        {"action": "cancel", "ids": [ids["unpaid"], ids["completed"]], "reason": "buyer asked"},
    )
    assert r.status_code == 200  # a problem: the page shows it
    assert "only unshipped orders can be cancelled" in r.text
    assert _status(erp_db, tid, ids["unpaid"]) == "cancelled"
    assert _status(erp_db, tid, ids["completed"]) == "completed"


def test_bulk_process_runs_the_pipeline(client: Any, pool: Pool, token: str, erp_db: Any) -> None:
    ids, tid = pool.ids, pool.tenant.id
    r = post(
        client,
        "/oms/orders/bulk",
        token,
        {"action": "process", "ids": [ids["reviewed"], ids["unpaid"], ids["shipped"]]},
        htmx=True,
    )
    assert r.status_code == 200
    assert _status(erp_db, tid, ids["reviewed"]) == "reserved"
    text = _text(r.text)
    assert "3 orders processed" not in text and "2 orders processed" in text
    assert "Tunpaid : it waits for the buyer's payment" in text
    assert "Tshipped : it is Shipped; there is nothing to do" in text


def test_bulk_actions_need_the_permission_and_the_token(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    r = client.post("/oms/orders/bulk", data={"action": "release", "ids": [pool.ids["address"]]})
    assert r.status_code == 403  # no CSRF token
    r = client.post(
        "/api/v1/users",
        json={"email": "viewer@acme.test", "role": "viewer", "password": PASSWORD},
        headers=pool.auth,
    )
    assert r.status_code == 201, r.text
    viewer = client.__class__(client.app)
    viewer.follow_redirects = False
    login(viewer, "viewer@acme.test")
    page = viewer.get("/oms/orders")
    assert page.status_code == 200 and 'name="ids"' not in page.text
    assert 'id="bulk-reason-orders"' not in page.text
    exc = viewer.get("/oms/exceptions")
    assert exc.status_code == 200 and "Map the SKU" not in exc.text
    detail = viewer.get(f"/oms/orders/{pool.ids['reserved']}").text
    assert 'id="ship-' not in detail and "data-open-dialog" not in detail
    vt = csrf_of(viewer)
    for url, data in (
        ("/oms/orders/bulk", {"action": "release", "ids": [pool.ids["address"]]}),
        (f"/oms/orders/{pool.ids['address']}/release", {}),
        ("/oms/exceptions/map-sku", {"order_id": pool.ids["unmapped"], "merchant_sku": "x"}),
        ("/oms/settings", {}),
    ):
        assert post(viewer, url, vt, data).status_code == 403, url
    assert viewer.get("/oms/rules").status_code == 403
    assert viewer.get("/oms/settings").status_code == 403
    assert _status(erp_db, pool.tenant.id, pool.ids["address"]) == "held"


def test_pages_need_the_plugin(client: Any, make_tenant: Any) -> None:
    t = make_tenant("plain")
    login(client, t.email)
    for path in ("/oms/orders", "/oms/exceptions", "/oms/rules", "/oms/settings", "/oms/orders/1"):
        assert client.get(path).status_code == 404, path


# --- the exception queue ----------------------------------------------------------------------


def test_the_exception_queue_groups_held_orders(client: Any, pool: Pool) -> None:
    html = client.get("/oms/exceptions").text
    ids = pool.ids
    assert set(_cards(html)) == {ids["unmapped"], ids["address"], ids["stock"]}
    groups = _text(html.split('id="exception-groups"')[1].split("</nav>")[0])
    assert "SKU not mapped 1" in re.sub(r"\s+", " ", groups)
    assert "Address problem 1" in re.sub(r"\s+", " ", groups)
    assert "Stock ran short 1" in re.sub(r"\s+", " ", groups)
    only = client.get("/oms/exceptions?code=sku_unmapped", headers=HX).text
    assert _cards(only) == [ids["unmapped"]]
    assert "<html" not in only
    # a map form for the unmapped SKU; the bad address's form is open with its problems
    card = html.split(f'id="exc-{ids["unmapped"]}"')[1].split("</article>")[0]
    assert 'name="merchant_sku" value="NOPE-1"' in card and 'name="scope"' in card
    card = html.split(f'id="exc-{ids["address"]}"')[1].split("</article>")[0]
    assert '<details class="fix-address" open>' in card
    assert "Unknown province: 火星" in card and 'name="merchant_sku"' not in card


def test_map_a_sku_with_inline_errors_then_mapped(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    oid = pool.ids["unmapped"]
    base = {"order_id": oid, "merchant_sku": "NOPE-1", "back": "/oms/exceptions"}
    r = post(client, "/oms/exceptions/map-sku", token, {**base, "sku": "GHOST"}, htmx=True)
    assert r.status_code == 422
    assert r.text.lstrip().startswith(f'<article class="card exception" id="exc-{oid}"')
    assert field_error(r.text, f"map-{oid}-1") == "no SKU with code GHOST"
    assert f'id="map-{oid}-1" name="sku" type="text" value="GHOST"' in r.text
    r = post(client, "/oms/exceptions/map-sku", token, {**base, "sku": ""})
    assert r.status_code == 422 and "<html" in r.text  # without JavaScript: the whole queue
    assert field_error(r.text, f"map-{oid}-1") == "enter the code of the SKU to map NOPE-1 to"
    with erp_db.tenant_session(pool.tenant.id) as s:
        assert s.scalar(select(func.count()).select_from(SkuMap)) == 0
    r = post(
        client,
        "/oms/exceptions/map-sku",
        token,
        {**base, "sku": "MILK", "scope": "shop"},
        htmx=True,
    )
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/oms/exceptions"
    with erp_db.tenant_session(pool.tenant.id) as s:
        m = s.scalar(select(SkuMap))
        assert (m.merchant_sku, m.channel_account_id) == ("NOPE-1", pool.shop_id)
        line = s.scalar(select(OrderLine).where(OrderLine.merchant_sku == "NOPE-1"))
        assert line.sku_id is not None
        order = s.get(Order, oid)
        assert (order.status, order.hold_code) == ("new", "")  # back to the review
    flash = client.get("/oms/exceptions").text
    assert "NOPE-1 is mapped to SKU MILK: 1 lines filled, 1 orders back to the review." in flash
    assert oid not in _cards(flash)


def test_fix_an_address_in_the_queue_with_inline_errors(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    oid = pool.ids["address"]
    url = f"/oms/orders/{oid}/address"
    good = {
        "origin": "exceptions",
        "back": "/oms/exceptions?code=review",
        "receiver_name": "李四",
        "receiver_phone": "13900139000",
        "province": "江苏",
        "city": "南京市",
        "district": "玄武区",
        "address": "中山路 18 号 3 楼",
    }
    r = post(client, url, token, {**good, "province": "火星", "city": ""}, htmx=True)
    assert r.status_code == 422
    assert r.text.lstrip().startswith(f'<article class="card exception" id="exc-{oid}"')
    assert field_error(r.text, f"addr-{oid}-province") == "火星 is not a province of China"
    assert field_error(r.text, f"addr-{oid}-city") == "this is needed"
    assert 'value="中山路 18 号 3 楼"' in r.text  # what was typed stays
    r = post(client, url, token, {**good, "address": "1"}, htmx=True)
    assert r.status_code == 422
    assert "Street address is too short" in field_error(r.text, f"addr-{oid}-address")
    assert _status(erp_db, pool.tenant.id, oid) == "held"
    r = post(client, url, token, good, htmx=True)
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/oms/exceptions?code=review"
    with erp_db.tenant_session(pool.tenant.id) as s:
        o = s.get(Order, oid)
        assert (o.status, o.province, o.city, o.address) == (
            "new",
            "江苏",
            "南京市",
            "中山路 18 号 3 楼",
        )
        assert s.scalar(select(Event).where(Event.order_id == oid, Event.kind == "address"))
    # it goes through the review again, and passes now
    with erp_db.tenant_session(pool.tenant.id) as s:
        svc.process(s, order_ids=[oid])
    assert _status(erp_db, pool.tenant.id, oid) == "reserved"


def test_release_one_order_from_the_queue(client: Any, pool: Pool, token: str, erp_db: Any) -> None:
    ids = pool.ids
    r = post(
        client,
        "/oms/exceptions/bulk",
        token,
        {"action": "release", "ids": [ids["stock"]], "back": "/oms/exceptions"},
        htmx=True,
    )
    assert r.status_code == 200
    assert set(_cards(r.text)) == {ids["unmapped"], ids["address"]}
    assert _status(erp_db, pool.tenant.id, ids["stock"]) == "reviewed"
    r = post(client, "/oms/exceptions/bulk", token, {"action": "release", "ids": [ids["unmapped"]]})
    assert r.status_code == 200 and "map SKU NOPE-1 first" in r.text


# --- one order --------------------------------------------------------------------------------


def test_ship_a_parcel_with_inline_errors(client: Any, pool: Pool, token: str, erp_db: Any) -> None:
    oid = pool.ids["reserved"]
    with erp_db.tenant_session(pool.tenant.id) as s:
        pid = s.scalar(select(Parcel.id).where(Parcel.order_id == oid))
    url = f"/oms/orders/{oid}/parcels/{pid}/ship"
    r = post(client, url, token, {"tracking_no": "", "courier_code": "SF"}, htmx=True)
    assert r.status_code == 422 and 'id="order"' in r.text and "<html" not in r.text
    assert field_error(r.text, f"ship-{pid}-tracking") == "enter the tracking number"
    r = post(client, url, token, {"tracking_no": "SF 12", "courier_code": "S F"})
    assert r.status_code == 422
    assert "at most 64 characters" in field_error(r.text, f"ship-{pid}-tracking")
    assert "at most 32 characters" in field_error(r.text, f"ship-{pid}-courier")
    assert _status(erp_db, pool.tenant.id, oid) == "reserved"
    r = post(client, url, token, {"tracking_no": "SF1234567", "courier_code": "SF"})
    assert r.status_code == 303 and r.headers["location"] == f"/oms/orders/{oid}"
    page = client.get(f"/oms/orders/{oid}").text
    assert f"Parcel {pid} shipped with SF1234567." in page
    with erp_db.tenant_session(pool.tenant.id) as s:
        p = s.get(Parcel, pid)
        assert (p.state, p.tracking_no, p.writeback) == ("shipped", "SF1234567", "pending")
        assert s.get(Order, oid).status == "shipped"
    r = post(client, url, token, {"tracking_no": "SF7654321", "courier_code": "SF"})
    assert r.status_code == 422  # shipped already: said above the form, nothing changes
    assert "the parcel is Shipped; only a parcel with its stock reserved ships" in r.text
    # another order's parcel through this order's URL is not found
    other = pool.ids["noted"]
    assert post(client, f"/oms/orders/{other}/parcels/{pid}/ship", token, {}).status_code == 404


def test_order_actions_hold_release_cancel_and_address(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    oid, tid = pool.ids["reserved"], pool.tenant.id
    r = post(client, f"/oms/orders/{oid}/hold", token, {"reason": " "}, htmx=True)
    assert r.status_code == 422
    assert field_error(r.text, "hold-reason") == "say why the orders are held"
    assert (
        'id="hold-order" class="dialog" aria-labelledby="hold-order-title" open data-open-modal'
        in r.text
    )
    r = post(client, f"/oms/orders/{oid}/hold", token, {"reason": "等客户确认"}, htmx=True)
    assert r.status_code == 200 and r.headers["HX-Redirect"] == f"/oms/orders/{oid}"
    assert _status(erp_db, tid, oid) == "held"
    page = client.get(f"/oms/orders/{oid}").text
    assert "Held by a person: 等客户确认" in _text(page)
    r = post(client, f"/oms/orders/{oid}/release", token, {})
    assert r.status_code == 303
    assert _status(erp_db, tid, oid) == "reviewed"
    r = post(client, f"/oms/orders/{oid}/release", token, {}, htmx=True)
    assert r.status_code == 422 and "it is Reviewed, not held" in r.text
    r = post(client, f"/oms/orders/{oid}/address", token, {"origin": "order", "city": "x"})
    assert r.status_code == 422
    assert field_error(r.text, "address-province") == "this is needed"
    assert 'id="fix-address" class="dialog" aria-labelledby="fix-address-title" open' in r.text
    r = post(client, f"/oms/orders/{oid}/cancel", token, {"reason": ""})
    assert r.status_code == 422
    assert field_error(r.text, "cancel-reason") == "say why the orders are cancelled"
    r = post(client, f"/oms/orders/{oid}/cancel", token, {"reason": "买家取消"})
    assert r.status_code == 303 and _status(erp_db, tid, oid) == "cancelled"
    r = post(client, f"/oms/orders/{oid}/cancel", token, {"reason": "again"}, htmx=True)
    assert r.status_code == 422
    unpaid = pool.ids["unpaid"]
    r = post(client, f"/oms/orders/{unpaid}/process", token, {}, htmx=True)
    assert r.status_code == 422 and "it waits for the buyer&#39;s payment" in r.text
    routed = pool.ids["reviewed"]
    r = post(client, f"/oms/orders/{routed}/process", token, {})
    assert r.status_code == 303 and _status(erp_db, tid, routed) == "reserved"


# --- review rules -----------------------------------------------------------------------------


def test_create_a_rule_with_inline_errors_then_edit_it(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    tid = pool.tenant.id
    page = client.get("/oms/rules").text
    assert len(re.findall(r'<tr data-rule="\d+"', page)) == 5  # the rules a tenant starts with
    form = client.get(
        "/oms/rules/new?kind=amount_over&name=Big&action=hold&reason=check", headers=HX
    ).text
    assert form.lstrip().startswith('<form id="rule-form"') and 'name="param-amount"' in form
    assert 'value="Big"' in form and 'value="check"' in form
    assert 'name="param-check"' in client.get("/oms/rules/new?kind=blacklist").text
    data = {"kind": "amount_over", "action": "hold", "reason": "", "active": "1"}
    r = post(client, "/oms/rules/new", token, data, htmx=True)
    assert r.status_code == 422
    assert field_error(r.text, "param-amount") == "Amount is required"
    assert field_error(r.text, "rule-reason") == "A hold rule needs a reason"
    r = post(client, "/oms/rules/new", token, {**data, "param-amount": "lots", "reason": "大单"})
    assert r.status_code == 422 and "<html" in r.text
    assert field_error(r.text, "param-amount") == "Amount must be a number"
    assert 'name="param-amount" type="text" value="lots"' in r.text
    r = post(client, "/oms/rules/new", token, {**data, "param-amount": "40", "reason": "大单"})
    assert r.status_code == 303 and r.headers["location"] == "/oms/rules"
    with erp_db.tenant_session(tid) as s:
        rule = s.scalar(select(ReviewRule).where(ReviewRule.kind == "amount_over"))
        assert (rule.name, rule.params, rule.action, rule.active) == (
            "大单",
            {"amount": 40},
            "hold",
            True,
        )
        assert rule.position == max(s.scalars(select(ReviewRule.position)))
        rid = rule.id
    assert "Rule 大单 saved." in client.get("/oms/rules").text
    # the rule reviews the next order
    with erp_db.tenant_session(tid) as s:
        o = svc.ingest(s, pool.shop_id, "tmall", channel_order("Tbig", buyer="big"))
        svc.process(s, order_ids=[o.id])
        assert (o.status, o.hold_reason) == ("held", "大单 (paid 43.50 > 40)")
    # edit: the form shows it, errors inline, then saved
    edit = client.get(f"/oms/rules/{rid}").text
    assert 'name="param-amount" type="text" value="40"' in edit
    upd = {"kind": "amount_over", "action": "tag", "tag": "", "param-amount": "2000.5"}
    r = post(client, f"/oms/rules/{rid}", token, upd, htmx=True)
    assert r.status_code == 422 and field_error(r.text, "rule-tag") == "A tag rule needs a tag"
    r = post(client, f"/oms/rules/{rid}", token, {**upd, "tag": "大额", "name": "Big orders"})
    assert r.status_code == 303
    with erp_db.tenant_session(tid) as s:
        rule = s.get(ReviewRule, rid)
        assert (rule.name, rule.params, rule.action, rule.tag, rule.active) == (
            "Big orders",
            {"amount": "2000.5"},
            "tag",
            "大额",
            False,  # the box was not ticked
        )
    # lists and choices
    r = post(
        client,
        "/oms/rules/new",
        token,
        {"kind": "sku", "action": "hold", "reason": "易碎", "param-merchant_skus": "A-1, B\nC"},
    )
    assert r.status_code == 303
    r = post(
        client,
        "/oms/rules/new",
        token,
        {
            "kind": "blacklist",
            "action": "hold",
            "reason": "黑名单",
            "param-check": ["buyer", "phone"],
        },
    )
    assert r.status_code == 303
    with erp_db.tenant_session(tid) as s:
        params = {r.reason: r.params for r in s.scalars(select(ReviewRule))}
    assert params["易碎"] == {"merchant_skus": ["A-1", "B", "C"]}
    assert params["黑名单"] == {"check": ["buyer", "phone"]}
    r = post(
        client,
        "/oms/rules/new",
        token,
        {"kind": "channel", "action": "pass", "param-channel_account_ids": "x"},
    )
    assert r.status_code == 422
    assert field_error(r.text, "param-channel_account_ids") == "Shops: x is not a whole number"
    r = post(client, "/oms/rules/new", token, {"kind": "nope", "action": "hold", "reason": "x"})
    assert r.status_code == 422 and field_error(r.text, "rule-kind") == "Unknown rule type: nope"


def test_switch_move_and_delete_rules(client: Any, pool: Pool, token: str, erp_db: Any) -> None:
    tid = pool.tenant.id

    def order() -> list[int]:
        with erp_db.tenant_session(tid) as s:
            rows = s.scalars(select(ReviewRule).order_by(ReviewRule.position, ReviewRule.id))
            return [r.id for r in rows]

    first, second, *_, last = order()
    r = post(client, f"/oms/rules/{first}/active", token, {"active": "0"}, htmx=True)
    assert r.status_code == 200 and r.text.lstrip().startswith('<div id="rules">')
    assert f'<tr data-rule="{first}" data-active="off">' in r.text
    r = post(client, f"/oms/rules/{last}/move", token, {"direction": "up"}, htmx=True)
    assert order()[-2] == last
    r = post(client, f"/oms/rules/{first}/move", token, {"direction": "up"})
    assert r.status_code == 303 and order()[0] == first  # the first stays first
    r = post(client, f"/oms/rules/{first}/move", token, {"direction": "down"})
    assert order()[:2] == [second, first]
    r = post(client, f"/oms/rules/{second}/delete", token, {}, htmx=True)
    assert r.status_code == 200 and second not in order()
    assert f'data-rule="{second}"' not in r.text


# --- settings ---------------------------------------------------------------------------------


def test_change_the_settings_with_inline_errors(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    tid = pool.tenant.id
    page = client.get("/oms/settings").text
    assert 'id="set-auto_process" name="auto_process" value="1" checked' in page
    data = {
        "auto_process": "1",
        "routing_strategy": "cost",
        "allow_split": "1",
        "default_weight_kg": "0",
    }
    r = post(client, "/oms/settings", token, data, htmx=True)
    assert r.status_code == 422 and r.text.lstrip().startswith('<form id="settings-form"')
    assert field_error(r.text, "set-default_weight_kg") == "must be more than 0"
    r = post(client, "/oms/settings", token, {**data, "routing_strategy": "magic"})
    assert field_error(r.text, "set-routing_strategy") == "choose a routing strategy"
    r = post(client, "/oms/settings", token, {**data, "default_weight_kg": "1.2345"})
    assert field_error(r.text, "set-default_weight_kg") == "at most 3 decimal places"
    r = post(client, "/oms/settings", token, {**data, "default_weight_kg": "1.25"})
    assert r.status_code == 303
    with erp_db.tenant_session(tid) as s:
        row = s.scalar(select(Setting))
        assert (row.routing_strategy, row.default_weight_kg, row.merge_orders, row.auto_ship) == (
            "cost",
            D("1.25"),
            False,
            False,
        )
    assert "Settings saved." in client.get("/oms/settings").text


def test_warehouse_routes_and_courier_rates(
    client: Any, pool: Pool, token: str, erp_db: Any
) -> None:
    tid, wid = pool.tenant.id, pool.warehouse_id
    url = f"/oms/settings/routes/{wid}"
    r = post(client, url, token, {"priority": "x", "regions": "浙江, 火星"}, htmx=True)
    assert r.status_code == 422 and r.text.lstrip().startswith('<div id="routes">')
    assert field_error(r.text, f"route-{wid}-priority").startswith("enter a whole number")
    assert field_error(r.text, f"route-{wid}-regions") == "火星 is not a province of China"
    r = post(
        client, url, token, {"priority": "5", "regions": "浙江，江苏", "active": "1"}, htmx=True
    )
    assert r.status_code == 200 and "Routing of warehouse HZ saved." in r.text
    with erp_db.tenant_session(tid) as s:
        route = s.scalar(select(WarehouseRoute))
        assert (route.priority, route.active) == (5, True)
        assert route.regions == ["江苏省", "浙江省"]
    rate = {
        "warehouse_id": str(wid),
        "courier_code": "YTO",
        "region": "浙江",
        "first_kg": "1",
        "first_cost": "6",
        "extra_cost_per_kg": "1.5",
        "priority": "0",
    }
    r = post(
        client,
        "/oms/settings/rates",
        token,
        {**rate, "region": "Mars", "first_cost": "-1"},
        htmx=True,
    )
    assert r.status_code == 422 and r.text.lstrip().startswith('<div id="rates">')
    assert (
        field_error(r.text, "rate-region") == "a province of China, or * for every other province"
    )
    assert field_error(r.text, "rate-first_cost") == "must not be negative"
    r = post(client, "/oms/settings/rates", token, rate)
    assert r.status_code == 303
    r = post(client, "/oms/settings/rates", token, {**rate, "region": "浙江省"})
    assert r.status_code == 422 and "already" in field_error(r.text, "rate-courier")
    with erp_db.tenant_session(tid) as s:
        yto = s.scalar(select(CourierRate).where(CourierRate.courier_code == "YTO"))
        assert (yto.region, yto.first_cost, yto.extra_cost_per_kg) == (
            "浙江省",
            D("6.00"),
            D("1.50"),
        )
    edit = client.get(f"/oms/settings?rate={yto.id}").text
    assert "Edit a rate" in edit and f'name="id" value="{yto.id}"' in edit
    r = post(client, "/oms/settings/rates", token, {**rate, "id": str(yto.id), "first_cost": "7"})
    assert r.status_code == 303
    r = post(client, f"/oms/settings/rates/{yto.id}/delete", token, {})
    assert r.status_code == 303
    with erp_db.tenant_session(tid) as s:
        assert s.scalar(select(func.count()).select_from(CourierRate)) == 1


# --- tenants ----------------------------------------------------------------------------------


def test_another_tenants_ids_answer_404(
    client: Any, pool: Pool, token: str, erp_db: Any, make_tenant: Any
) -> None:
    other = build_pool(erp_db, make_tenant("rival", plugins=("oms",)), prefix="R")
    with erp_db.tenant_session(other.tenant.id) as s:
        parcel = s.scalar(select(Parcel.id).where(Parcel.order_id == other.ids["reserved"]))
        rule = s.scalar(select(ReviewRule.id))
        rate = s.scalar(select(CourierRate.id))
    theirs = other.ids["address"]
    for path in (
        f"/oms/orders/{theirs}",
        f"/oms/rules/{rule}",
    ):
        assert client.get(path).status_code == 404, path
    for url, data in (
        (f"/oms/orders/{theirs}/release", {}),
        (f"/oms/orders/{theirs}/hold", {"reason": "x"}),
        (f"/oms/orders/{theirs}/cancel", {"reason": "x"}),
        (f"/oms/orders/{theirs}/process", {}),
        (f"/oms/orders/{theirs}/address", {"city": "x"}),
        (f"/oms/orders/{other.ids['reserved']}/parcels/{parcel}/ship", {"tracking_no": "SF1"}),
        (f"/oms/rules/{rule}", {"kind": "duplicate", "action": "tag", "tag": "x"}),
        (f"/oms/rules/{rule}/active", {"active": "0"}),
        (f"/oms/rules/{rule}/move", {"direction": "up"}),
        (f"/oms/rules/{rule}/delete", {}),
        (f"/oms/settings/routes/{other.warehouse_id}", {"priority": "1"}),
        (f"/oms/settings/rates/{rate}/delete", {}),
        ("/oms/settings/rates", {"id": str(rate), "warehouse_id": str(other.warehouse_id)}),
        ("/oms/exceptions/map-sku", {"order_id": theirs, "merchant_sku": "NOPE-1", "sku": "TEA"}),
    ):
        assert post(client, url, token, data).status_code == 404, url
    r = post(client, "/oms/orders/bulk", token, {"action": "release", "ids": [theirs]}, htmx=True)
    assert f"there is no order {theirs}" in _text(r.text)
    assert _status(erp_db, other.tenant.id, theirs) == "held"
    assert not set(_rows(client.get("/oms/orders").text)) & set(other.ids.values())
    assert not set(_cards(client.get("/oms/exceptions").text)) & set(other.ids.values())
    with erp_db.tenant_session(other.tenant.id) as s:
        assert s.get(ReviewRule, rule) is not None and s.get(CourierRate, rate) is not None


# --- translations -----------------------------------------------------------------------------


def _kernel_scanner() -> Any:
    spec = importlib.util.spec_from_file_location(
        "kernel_ui_i18n", ROOT / "tests" / "test_ui_i18n.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.untranslated_text


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_has_no_text_outside_translation_calls(path: Path) -> None:
    untranslated_text = _kernel_scanner()
    env = Environment(extensions=["jinja2.ext.i18n"])
    assert untranslated_text(env, path.read_text(encoding="utf-8")) == []


def test_the_catalogs_translate_every_message() -> None:
    """The plugin's own catalogs (``translations="erp_oms:locale"`` in the manifest makes the
    kernel's test check them too)."""
    m = MANIFEST
    extra = (m.title, m.description, *(p.title for p in m.permissions), *(i.title for i in m.menus))
    domain = Domain("oms", PLUGIN_DIR, PLUGIN_DIR / "locale", tuple(extra))
    assert problems(domain) == []
    zh = Catalogs([("oms", PLUGIN_DIR / "locale")]).for_locale("zh_CN")
    assert zh.dgettext("oms", "Order pool") == "订单池"
    assert zh.dgettext("oms", "Orders") == "订单"


def test_manual_orders_show_up_as_such(client: Any, pool: Pool, erp_db: Any) -> None:
    with erp_db.tenant_session(pool.tenant.id) as s:
        o = manual.create_manual(
            s,
            {
                "number": "M-1",
                "buyer": "微信客户",
                "receiver_name": "王五",
                "receiver_phone": "13700137000",
                "province": "上海市",
                "city": "上海市",
                "district": "浦东新区",
                "address": "世纪大道 1 号",
                "lines": [{"sku": "TEA", "quantity": "2", "unit_price": "30"}],
            },
            actor="test",
        )
        oid = o.id
    html = client.get("/oms/orders?shop_is=manual", headers=HX).text
    assert oid in _rows(html) and "Manual order" in html
    detail = client.get(f"/oms/orders/{oid}").text
    assert "Entered by hand" in detail and "Manual order" in detail
