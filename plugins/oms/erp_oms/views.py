"""Pages of the OMS, under ``/oms``: the order pool, the exception queue, one order, the review
rules and the routing settings.

Every route names its permission (``oms.order.read`` to look, ``oms.order.write`` to handle
orders, ``oms.settings.manage`` for rules and settings) and the kernel adds the check that the
tenant enabled the OMS. Every form carries the CSRF token, posts to a URL of its own with
``method="post"`` and ``hx-post`` (it works without JavaScript), answers 422 with the form
re-rendered and its errors next to their fields, and redirects with a flash message after a
change. Changes go through :mod:`erp_oms.service` and :mod:`erp_oms.manual`; a GET never writes
(the settings page reads the settings row without creating it).

The two lists are the kernel's list component. Their bulk actions need more than the component
gives a bulk action (a reason for hold and cancel, problems per order shown in the page), so
``POST /oms/orders/bulk`` and ``POST /oms/exceptions/bulk`` are routes of this module,
registered before the list component's own bulk routes (which they replace).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from babel.numbers import format_currency
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import String, cast, false, func, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from erp_core.api.params import Id
from erp_core.auth.deps import DbSession, Hooks, require
from erp_core.auth.principal import Principal
from erp_core.channels.models import ChannelAccount
from erp_core.channels.types import OrderStatus
from erp_core.i18n import N_, Message
from erp_core.inventory.errors import InventoryError
from erp_core.inventory.models import Sku, Warehouse
from erp_core.web.flash import redirect
from erp_core.web.listing import BulkAction, Column, Filter, ListView, list_context, mount_list
from erp_core.web.shell import tenant_prefs
from erp_core.web.templating import is_htmx, render
from erp_oms import manual, regions
from erp_oms import review as rv
from erp_oms import routing as rt
from erp_oms import service as svc
from erp_oms.models import (
    OPEN_STATES,
    CourierRate,
    Event,
    Order,
    OrderLine,
    Parcel,
    ParcelLine,
    ReviewRule,
    Setting,
    WarehouseRoute,
)

router = APIRouter(include_in_schema=False)

#: Where the manifest mounts this router (list views learn their path from it).
PREFIX = "/oms"
READ = "oms.order.read"
WRITE = "oms.order.write"
MANAGE = "oms.settings.manage"
Reader = Annotated[Principal, Depends(require(READ))]
Writer = Annotated[Principal, Depends(require(WRITE))]
Manager = Annotated[Principal, Depends(require(MANAGE))]

#: How the pages name the codes the service stores (codes stay in URLs and filters).
STATUS_TITLES: dict[str, Message] = {
    "new": N_("New"),
    "held": N_("Held"),
    "reviewed": N_("Reviewed"),
    "routed": N_("Routed"),
    "reserved": N_("Stock reserved"),
    "shipped": N_("Shipped"),
    "completed": N_("Completed"),
    "cancelled": N_("Cancelled"),
}
PLATFORM_TITLES: dict[str, Message] = {
    OrderStatus.PENDING_PAYMENT.value: N_("Waiting for payment"),
    OrderStatus.PAID.value: N_("Paid"),
    OrderStatus.PARTIALLY_SHIPPED.value: N_("Partly shipped"),
    OrderStatus.SHIPPED.value: N_("Shipped"),
    OrderStatus.COMPLETED.value: N_("Completed"),
    OrderStatus.CANCELLED.value: N_("Cancelled"),
    OrderStatus.CLOSED.value: N_("Closed"),
    OrderStatus.UNKNOWN.value: N_("Unknown"),
}
#: Hold codes: the service's (``review``, ``sku_unmapped``, ``stock``, ``refund``, ``manual``),
#: the router's (``no_stock``, ``no_coverage``, ``split_needed``, ``no_courier``), and
#: ``address`` for when the service holds address problems under a code of their own.
HOLD_TITLES: dict[str, Message] = {
    "sku_unmapped": N_("SKU not mapped"),
    "review": N_("Held by a review rule"),
    "address": N_("Address problem"),
    "stock": N_("Stock ran short"),
    "no_stock": N_("Not enough stock"),
    "no_coverage": N_("No warehouse delivers there"),
    "split_needed": N_("Needs a split"),
    "no_courier": N_("No courier rate"),
    "refund": N_("Refund requested"),
    "manual": N_("Held by a person"),
}
PARCEL_TITLES: dict[str, Message] = {
    "planned": N_("Planned"),
    "reserved": N_("Stock reserved"),
    "shipped": N_("Shipped"),
    "cancelled": N_("Cancelled"),
}
WRITEBACK_TITLES: dict[str, Message] = {
    "none": N_("Not needed"),
    "pending": N_("Waiting"),
    "done": N_("Sent to the platform"),
    "failed": N_("Failed, will retry"),
}
TRAIL_TITLES: dict[str, Message] = {
    "collected": N_("Collected"),
    "in_transit": N_("In transit"),
    "out_for_delivery": N_("Out for delivery"),
    "delivered": N_("Delivered"),
    "problem": N_("Problem"),
}
EVENT_TITLES: dict[str, Message] = {
    "received": N_("Received"),
    "created": N_("Entered by hand"),
    "platform": N_("Platform status changed"),
    "reviewed": N_("Passed the review"),
    "held": N_("Held"),
    "released": N_("Released"),
    "review_again": N_("Back to the review"),
    "mapped": N_("SKU mapped"),
    "address": N_("Address corrected"),
    "merged": N_("Merged"),
    "routed": N_("Routed"),
    "split": N_("Split"),
    "reserved": N_("Stock reserved"),
    "shipped": N_("Shipped"),
    "written_back": N_("Tracking number sent to the platform"),
    "writeback_failed": N_("Sending the tracking number failed"),
    "delivered": N_("Delivered"),
    "completed": N_("Completed"),
    "intercepted": N_("Stopped for a refund"),
    "refund": N_("Refund after shipping"),
    "cancelled": N_("Cancelled"),
}
ACTION_TITLES: dict[str, Message] = {
    "hold": N_("Hold the order"),
    "tag": N_("Tag the order"),
    "pass": N_("Pass: skip the rules below"),
}
REFUND_TITLES: dict[str, Message] = {
    "none": N_("None"),
    "requested": N_("Refund requested"),
    "waiting_return": N_("Waiting for the return"),
    "returned": N_("Returned"),
    "refused": N_("Refund refused"),
    "refunded": N_("Refunded"),
    "closed": N_("Refund closed"),
    "unknown": N_("Unknown"),
}
#: Labels of the choice values of the built-in rule types' parameters (others show as they are).
CHOICE_TITLES: dict[str, Message] = {
    "buyer": N_("Buyer"),
    "phone": N_("Phone"),
    "address": N_("Address"),
}
SCOPE_CHOICES: tuple[tuple[str, Message], ...] = (
    ("shop", N_("This shop only")),
    ("all", N_("Every shop")),
)
SOURCE_TITLES: dict[str, Message] = {
    "channel": N_("Shop"),
    "manual": N_("Manual order"),
    "import": N_("Imported"),
}
#: States a person may hold an order in (held ones are held already).
HOLDABLE = ("new", "reviewed", "routed", "reserved")
#: States the pipeline takes an order from.
PROCESSABLE_STATES = ("new", "reviewed", "routed")
#: Orders one bulk action takes at most.
MAX_BULK = 500
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
TRACKING_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")


# --- helpers ---------------------------------------------------------------------------------


def actor_of(principal: Principal) -> str:
    """Who did it, as the order's timeline records it (the API records the same)."""
    if principal.via == "token":
        return f"{principal.email} via {principal.label}"
    return principal.email


def qty(value: Decimal | None) -> str:
    """A quantity without the trailing zeros of its stored places (``2.0000`` -> ``2``)."""
    if value is None:
        return ""
    n = Decimal(value).normalize()
    return format(n.quantize(Decimal(1)) if n == n.to_integral_value() else n, "f")


def money_in(locale: str) -> Callable[[Decimal | None, str], str]:
    """``money(amount, "CNY")``: an amount in its currency's format for the page's language."""

    def money(amount: Decimal | None, currency: str = "CNY") -> str:
        if amount is None:
            return ""
        return format_currency(amount, currency or "CNY", locale=locale)

    return money


def title_in(locale: str) -> Callable[[Any], str]:
    """The title of a rule type, parameter or strategy (``title_zh`` / ``title_en``)."""

    def title(obj: Any) -> str:
        zh, en = getattr(obj, "title_zh", ""), getattr(obj, "title_en", "")
        return str((zh if locale == "zh_CN" else en) or en or zh or getattr(obj, "kind", ""))

    return title


def _locale(request: Request, db: Session) -> str:
    return tenant_prefs(request, db)[0]


def _message(exc: BaseException) -> object:
    return exc.args[0] if exc.args else type(exc).__name__


def _text(form: Any, name: str, limit: int = 2000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _ids(form: Any) -> list[int]:
    out: list[int] = []
    for raw in form.getlist("ids"):
        try:
            n = int(raw)
        except (TypeError, ValueError):
            continue
        if 1 <= n < 2**63 and n not in out:
            out.append(n)
    return out[:MAX_BULK]


def _with_query(request: Request, url: str) -> None:
    """Let ``request`` carry the query string of ``url`` (a list re-rendered after a POST
    shows the page the form came from)."""
    request.scope["query_string"] = url.partition("?")[2].encode()
    request.__dict__.pop("_query_params", None)


def _safe_back(form: Any, default: str, *allowed: str) -> str:
    """The page a form came from (``back``), if it is one of ours; else ``default``."""
    back = _text(form, "back", 2000)
    for prefix in allowed or (default,):
        if back == prefix or back.startswith(prefix + "?"):
            return back
    return default


def _order_of(db: Session, principal: Principal, order_id: int) -> Order:
    order = db.scalar(select(Order).where(Order.id == order_id))
    if order is None or order.tenant_id != principal.tenant_id:
        raise HTTPException(404, "Not Found")
    return order


def _orders(db: Session, ids: Sequence[int]) -> list[Order]:
    if not ids:
        return []
    found = {o.id: o for o in db.scalars(select(Order).where(Order.id.in_(list(ids))))}
    return [found[i] for i in ids if i in found]


def _unmapped(db: Session, order_ids: Iterable[int]) -> dict[int, list[str]]:
    """Merchant SKU codes of the lines not mapped to a SKU, per order."""
    ids = sorted(set(order_ids))
    out: dict[int, list[str]] = defaultdict(list)
    if ids:
        rows = db.execute(
            select(OrderLine.order_id, OrderLine.merchant_sku).where(
                OrderLine.order_id.in_(ids), OrderLine.sku_id.is_(None)
            )
        )
        for oid, code in rows:
            if code not in out[oid]:
                out[oid].append(code)
    return {k: sorted(v) for k, v in out.items()}


def _shops(db: Session) -> dict[int, str]:
    return {
        a.id: a.name
        for a in db.scalars(
            select(ChannelAccount).where(ChannelAccount.kind == "sales").order_by(ChannelAccount.id)
        )
    }


# --- per-order actions (shared by the lists and the order page) ---------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one order was left as it was."""

    order_id: int | None
    number: str
    message: object

    @classmethod
    def of(cls, order: Order, message: object) -> Problem:
        return cls(order.id, order.platform_order_id, message)


@dataclass
class Done:
    """What an action did: the message to show and the orders it left as they were."""

    message: object
    problems: list[Problem] = field(default_factory=list)


def _status(order: Order) -> object:
    return STATUS_TITLES.get(order.status, order.status)


def _check_reason(reason: str, what: str) -> Message | None:
    if not reason.strip():
        if what == "hold":
            return N_("say why the orders are held")
        return N_("say why the orders are cancelled")
    if len(reason) > 400:
        return N_("at most %(n)s characters", n=400)
    return None


def release_orders(db: Session, principal: Principal, orders: Sequence[Order]) -> Done:
    """Release held orders (they skip the review and go on to routing); an order that is not
    held or still has an unmapped SKU is left held, with the reason."""
    unmapped = _unmapped(db, [o.id for o in orders])
    problems: list[Problem] = []
    ready: list[Order] = []
    for o in orders:
        if o.status != "held":
            problems.append(Problem.of(o, N_("it is %(status)s, not held", status=_status(o))))
        elif unmapped.get(o.id):
            skus = ", ".join(unmapped[o.id])
            problems.append(Problem.of(o, N_("map SKU %(skus)s first", skus=skus)))
        else:
            ready.append(o)
    for text in svc.release(db, ready, actor=actor_of(principal)):
        problems.append(Problem(None, "", text))  # the service found what the checks above missed
    done = sum(1 for o in ready if o.status == "reviewed")
    return Done(N_("%(n)s orders released.", n=done), problems)


def hold_orders(db: Session, principal: Principal, orders: Sequence[Order], reason: str) -> Done:
    problems: list[Problem] = []
    done = 0
    for o in orders:
        if o.status == "held":
            problems.append(Problem.of(o, N_("it is held already")))
        elif o.status not in HOLDABLE:
            problems.append(
                Problem.of(o, N_("it is %(status)s; it can no longer be held", status=_status(o)))
            )
        else:
            svc._drop_parcels(db, o)  # its reserved stock goes back (as the API does)
            svc.hold(db, o, "manual", reason, actor=actor_of(principal))
            done += 1
    return Done(N_("%(n)s orders held.", n=done), problems)


def cancel_orders(db: Session, principal: Principal, orders: Sequence[Order], reason: str) -> Done:
    problems: list[Problem] = []
    done = 0
    for o in orders:
        if o.status not in OPEN_STATES:
            problems.append(
                Problem.of(
                    o,
                    N_(
                        "it is %(status)s; only unshipped orders can be cancelled",
                        status=_status(o),
                    ),
                )
            )
            continue
        svc.cancel(db, o, reason, actor=actor_of(principal))
        done += 1
    return Done(N_("%(n)s orders cancelled.", n=done), problems)


def process_orders(db: Session, principal: Principal, hooks: Any, orders: Sequence[Order]) -> Done:
    """Run the pipeline for these orders now: review, merge, route, reserve (and ship with
    automatic shipping); each order that stops on the way says why."""
    problems: list[Problem] = []
    ids: list[int] = []
    for o in orders:
        if o.merged_into_id is not None:
            problems.append(Problem.of(o, N_("it ships with order %(id)s", id=o.merged_into_id)))
        elif o.status not in PROCESSABLE_STATES:
            problems.append(
                Problem.of(o, N_("it is %(status)s; there is nothing to do", status=_status(o)))
            )
        else:
            ids.append(o.id)
    res = svc.process(db, order_ids=ids, hooks=hooks, actor=actor_of(principal)) if ids else None
    for o in orders:
        if o.id not in ids:
            continue
        if o.status == "new" and o.platform_status not in svc.PROCESSABLE:
            problems.append(Problem.of(o, N_("it waits for the buyer's payment")))
        elif o.status == "held":
            reason = svc.load_message(o.hold_detail, o.hold_reason)
            problems.append(Problem.of(o, N_("held: %(reason)s", reason=reason)))
    if res is None:
        return Done(N_("No order could be processed."), problems)
    return Done(
        N_(
            "%(n)s orders processed: %(reviewed)s passed the review, %(held)s held, "
            "%(reserved)s with stock reserved.",
            n=len(ids),
            reviewed=res.reviewed,
            held=res.held,
            reserved=res.reserved,
        ),
        problems,
    )


def _back_to_review(db: Session, principal: Principal) -> int:
    """Orders held only because a SKU was not mapped, now that every line is mapped, go back
    to the review (it checks them again with every rule, stock included)."""
    held = list(
        db.scalars(select(Order).where(Order.status == "held", Order.hold_code == "sku_unmapped"))
    )
    unmapped = _unmapped(db, [o.id for o in held])
    n = 0
    for o in held:
        if unmapped.get(o.id):
            continue
        o.status, o.hold_code, o.hold_reason = "new", "", ""
        svc.event(db, o, "review_again", N_("every SKU mapped"), actor=actor_of(principal))
        n += 1
    db.flush()
    return n


# --- bulk actions of the two lists ----------------------------------------------------------------


@dataclass
class BulkState:
    """What the bulk form area shows: the reason typed, its error, the last action's problems;
    ``oob`` when it is sent along with the list fragment (an htmx out-of-band swap)."""

    reason: str = ""
    errors: dict[str, object] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    oob: bool = False


Runner = Callable[[Session, Principal, Any, list[Order], str], Done]


def _run_release(db: Session, p: Principal, hooks: Any, orders: list[Order], reason: str) -> Done:
    return release_orders(db, p, orders)


def _run_process(db: Session, p: Principal, hooks: Any, orders: list[Order], reason: str) -> Done:
    return process_orders(db, p, hooks, orders)


def _run_hold(db: Session, p: Principal, hooks: Any, orders: list[Order], reason: str) -> Done:
    return hold_orders(db, p, orders, reason)


def _run_cancel(db: Session, p: Principal, hooks: Any, orders: list[Order], reason: str) -> Done:
    return cancel_orders(db, p, orders, reason)


RUNNERS: dict[str, tuple[Runner, str | None]] = {
    "process": (_run_process, None),
    "release": (_run_release, None),
    "hold": (_run_hold, "hold"),
    "cancel": (_run_cancel, "cancel"),
}


def _component_run(key: str) -> Callable[[Session, Principal, list[int]], object]:
    """The list component's ``BulkAction.run`` (used if its own bulk route ever runs: without
    a reason, so hold and cancel refuse)."""

    def run(db: Session, principal: Principal, ids: list[int]) -> object:
        runner, reason_for = RUNNERS[key]
        if reason_for:
            raise ValueError(_check_reason("", reason_for))
        hooks = svc.hooks_of(db)
        return runner(db, principal, hooks, _orders(db, ids), "").message

    return run


def _bulk_action(key: str, title: str, *, danger: bool = False) -> BulkAction:
    return BulkAction(
        key=key, title=title, permission=WRITE, run=_component_run(key), danger=danger
    )


def _bulk(
    request: Request,
    db: Session,
    principal: Principal,
    hooks: Any,
    form: Any,
    view: ListView,
    template: str,
    extra: Callable[[Request, Session], dict[str, Any]],
) -> Response:
    action = next((a for a in view.bulk_actions if a.key == form.get("action")), None)
    if action is None or action.key not in RUNNERS:
        raise HTTPException(422, N_("choose an action"))
    if not principal.can(action.permission):
        raise HTTPException(
            403, N_("permission %(name)s is required", name=repr(action.permission))
        )
    runner, reason_for = RUNNERS[action.key]
    ids = _ids(form)
    back = _safe_back(form, view.path)
    state = BulkState(reason=_text(form, "reason", 1000))
    level = "success"
    status = 200
    message: object
    if not ids:
        message, level = N_("select at least one row first"), "warning"
    elif reason_for and (problem := _check_reason(state.reason, reason_for)) is not None:
        state.errors["reason"] = problem
        message, level, status = problem, "error", 422
    else:
        orders = _orders(db, ids)
        missing = [i for i in ids if i not in {o.id for o in orders}]
        try:
            done = runner(db, principal, hooks, orders, state.reason)
            db.commit()
        except (ValueError, LookupError, InventoryError) as exc:
            db.rollback()
            message, level = _message(exc), "error"
        else:
            message = done.message
            state.problems = [
                *(Problem(None, "", N_("there is no order %(id)s", id=i)) for i in missing),
                *done.problems,
            ]
            state.reason = ""
            if state.problems:
                level = "warning"
    _with_query(request, back)
    if is_htmx(request) and state.errors:
        # only the reason field and its error change: the rows stay selected, the action chosen
        state.oob = True
        ctx = {**list_context(view, request, db, principal), **extra(request, db), "bulk": state}
        return render(
            request, "oms/_bulk_extra.html", ctx, status_code=status, headers={"HX-Reswap": "none"}
        )
    if is_htmx(request):
        state.oob = True
        ctx = {**list_context(view, request, db, principal), **extra(request, db), "bulk": state}
        return render(
            request, template, ctx, block="list", status_code=status, messages=[(level, message)]
        )
    if state.problems or state.errors:
        ctx = {**list_context(view, request, db, principal), **extra(request, db), "bulk": state}
        return render(request, template, ctx, status_code=status, messages=[(level, message)])
    return redirect(request, back, message, level)  # type: ignore[arg-type]


def _bound(view: ListView, path: str) -> ListView:
    return replace(view, path=PREFIX + path)


# --- the order pool ------------------------------------------------------------------------------


def _like_json(text: str) -> Any:
    pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(Order.tags, String).like(f"%{pattern}%", escape="\\")


def tag_condition(tag: str) -> Any:
    """Orders carrying ``tag`` (a JSON list, compared as its text: escaped or not)."""
    return or_(_like_json(json.dumps(tag)), _like_json(json.dumps(tag, ensure_ascii=False)))


def shop_condition(value: str) -> Any:
    if value == "manual":
        return Order.channel_account_id.is_(None)
    if value.isdigit() and len(value) <= 18:
        return Order.channel_account_id == int(value)
    return false()


def shop_choices(db: Session) -> list[tuple[str, str]]:
    return [
        *((str(i), name) for i, name in _shops(db).items()),
        ("manual", N_("Manual orders")),
    ]


def tag_choices(db: Session) -> list[tuple[str, str]]:
    """Tags the review rules give (the usual ones); any other tag works in the URL."""
    tags = {t.strip() for t in db.scalars(select(ReviewRule.tag)) if t and t.strip()}
    return [(t, t) for t in sorted(tags)]


def hold_choices(db: Session) -> list[tuple[str, str]]:
    found = set(db.scalars(select(Order.hold_code).where(Order.status == "held").distinct()))
    codes = [*HOLD_TITLES, *sorted(c for c in found if c and c not in HOLD_TITLES)]
    return [(c, HOLD_TITLES.get(c, c)) for c in codes]


def _hold_title(r: Any) -> object:
    return HOLD_TITLES.get(r.hold_code, r.hold_code) if r.hold_code else None


def _order_link(r: Any) -> str:
    return f"{PREFIX}/orders/{r.id}"


ORDER_QUERY = select(
    Order.id.label("id"),
    Order.platform_order_id.label("number"),
    Order.channel_account_id.label("channel_account_id"),
    ChannelAccount.name.label("shop_name"),
    Order.source.label("source"),
    Order.status.label("status"),
    Order.platform_status.label("platform_status"),
    Order.buyer_nick.label("buyer_nick"),
    Order.receiver_name.label("receiver_name"),
    Order.receiver_phone.label("receiver_phone"),
    Order.province.label("province"),
    Order.city.label("city"),
    Order.district.label("district"),
    Order.address.label("address"),
    Order.total_paid.label("total_paid"),
    Order.currency.label("currency"),
    Order.tags.label("tags"),
    Order.hold_code.label("hold_code"),
    Order.hold_reason.label("hold_reason"),
    Order.hold_detail.label("hold_detail"),
    Order.ordered_at.label("ordered_at"),
    Order.created_at.label("created_at"),
    Order.merged_into_id.label("merged_into_id"),
).outerjoin(ChannelAccount, ChannelAccount.id == Order.channel_account_id)

SEARCH = (Order.platform_order_id, Order.buyer_nick, Order.receiver_name, Order.receiver_phone)


def _shop_of(r: Any) -> object:
    return r.shop_name or SOURCE_TITLES.get(r.source, r.source)


ORDER_COLUMNS = (
    Column(key="number", title=N_("Order no."), expr=Order.platform_order_id, link=_order_link),
    Column(key="shop", title=N_("Shop"), value=_shop_of),
    Column(key="status", title=N_("Status"), value=lambda r: STATUS_TITLES.get(r.status, r.status)),
    Column(
        key="platform_status",
        title=N_("Platform status"),
        value=lambda r: PLATFORM_TITLES.get(r.platform_status, r.platform_status),
    ),
    Column(key="buyer", title=N_("Buyer"), value=lambda r: r.buyer_nick),
    Column(
        key="region",
        title=N_("Province and city"),
        value=lambda r: " ".join(x for x in (r.province, r.city) if x),
    ),
    Column(key="total_paid", title=N_("Paid"), value=lambda r: r.total_paid),
    Column(key="tags", title=N_("Tags"), value=lambda r: list(r.tags or [])),
    Column(key="hold_code", title=N_("Exception"), value=_hold_title),
    Column(
        key="hold_reason",
        title=N_("Hold reason"),
        value=lambda r: svc.load_message(r.hold_detail, r.hold_reason),
    ),
    Column(key="ordered_at", title=N_("Ordered at"), value=lambda r: r.ordered_at),
    Column(
        key="received",
        title=N_("Received"),
        expr=Order.id,
        sortable=True,
        visible=False,
        value=lambda r: r.created_at,
    ),
)

ORDERS_VIEW = ListView(
    name="orders",
    title=N_("Order pool"),
    query=ORDER_QUERY,
    id_expr=Order.id,
    columns=ORDER_COLUMNS,
    search=SEARCH,
    filters=(
        Filter(key="shop_is", title=N_("Shop"), choices=shop_choices, where=shop_condition),
        Filter(
            key="status_is",
            title=N_("Status"),
            expr=Order.status,
            choices=list(STATUS_TITLES.items()),
        ),
        Filter(key="exception", title=N_("Exception"), expr=Order.hold_code, choices=hold_choices),
        Filter(key="tag", title=N_("Tag"), choices=tag_choices, where=tag_condition),
        Filter(
            key="ordered_from", title=N_("Ordered from"), expr=Order.ordered_at, kind="date_from"
        ),
        Filter(key="ordered_to", title=N_("Ordered until"), expr=Order.ordered_at, kind="date_to"),
    ),
    sort="-received",
    bulk_actions=(
        _bulk_action("process", N_("Process now")),
        _bulk_action("release", N_("Release")),
        _bulk_action("hold", N_("Hold (give a reason)")),
        _bulk_action("cancel", N_("Cancel (give a reason)"), danger=True),
    ),
)


def _orders_extra(request: Request, db: Session) -> dict[str, Any]:
    principal: Principal = request.state.principal
    return {"bulk": BulkState(), "can_write": principal.can(WRITE), "reason_field": True}


@router.post("/orders/bulk")
async def orders_bulk(request: Request, db: DbSession, principal: Reader, hooks: Hooks) -> Response:
    form = await request.form()
    view = _bound(ORDERS, "/orders")
    return await run_in_threadpool(
        _bulk, request, db, principal, hooks, form, view, "oms/orders.html", _orders_extra
    )


ORDERS = mount_list(
    router,
    "/orders",
    ORDERS_VIEW,
    read=READ,
    template="oms/orders.html",
    context=_orders_extra,
)


# --- the exception queue ------------------------------------------------------------------------


@dataclass
class ExceptionItem:
    """One held order as the queue shows it, with its forms."""

    row: Any
    unmapped: list[str]
    address_problems: list[tuple[str, str]]
    errors: dict[str, dict[str, object]] = field(default_factory=dict)
    forms: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def address_form(self) -> dict[str, str]:
        r = self.row
        return self.forms.get("address") or {
            "receiver_name": r.receiver_name,
            "receiver_phone": r.receiver_phone,
            "province": r.province,
            "city": r.city,
            "district": r.district,
            "address": r.address,
        }

    @property
    def show_address(self) -> bool:
        return bool(self.address_problems or "address" in self.errors)


ADDRESS_FIELD_OF = {"province": "province", "city": "city", "district": "district"}


def address_problems(
    locale: str, province: str, city: str, district: str, detail: str
) -> list[tuple[str, str]]:
    """(form field, message in the page's language) of what makes an address undeliverable."""
    out = []
    for p in regions.address_errors(province, city, district, detail):
        text = p.message_zh if locale == "zh_CN" else p.message_en
        out.append((ADDRESS_FIELD_OF.get(p.field, "address"), text))
    return out


def _items(
    db: Session,
    locale: str,
    rows: Sequence[Any],
    errors: Mapping[int, dict[str, dict[str, object]]] | None = None,
    forms: Mapping[int, dict[str, dict[str, str]]] | None = None,
) -> list[ExceptionItem]:
    unmapped = _unmapped(db, [r.id for r in rows])
    return [
        ExceptionItem(
            row=r,
            unmapped=unmapped.get(r.id, []),
            address_problems=address_problems(locale, r.province, r.city, r.district, r.address),
            errors=dict((errors or {}).get(r.id, {})),
            forms=dict((forms or {}).get(r.id, {})),
        )
        for r in rows
    ]


def hold_groups(db: Session) -> list[tuple[str, object, int]]:
    """(code, title, held orders) for each hold code in use: held orders only (index on
    status), so this stays small however large the pool grows."""
    rows = db.execute(
        select(Order.hold_code, func.count())
        .where(Order.status == "held")
        .group_by(Order.hold_code)
        .order_by(Order.hold_code)
    ).all()
    return [(code, HOLD_TITLES.get(code, code or N_("Other")), int(n)) for code, n in rows]


EXCEPTIONS_VIEW = ListView(
    name="exceptions",
    title=N_("Exceptions"),
    query=ORDER_QUERY.where(Order.status == "held"),
    id_expr=Order.id,
    columns=ORDER_COLUMNS,
    search=SEARCH,
    filters=(
        Filter(key="code", title=N_("Exception"), expr=Order.hold_code, choices=hold_choices),
        Filter(key="shop_is", title=N_("Shop"), choices=shop_choices, where=shop_condition),
        Filter(key="tag", title=N_("Tag"), choices=tag_choices, where=tag_condition),
    ),
    sort="-received",
    bulk_actions=(_bulk_action("release", N_("Release")),),
)


def _exceptions_extra(
    request: Request,
    db: Session,
    errors: Mapping[int, dict[str, dict[str, object]]] | None = None,
    forms: Mapping[int, dict[str, dict[str, str]]] | None = None,
) -> dict[str, Any]:
    principal: Principal = request.state.principal
    locale = _locale(request, db)
    return {
        "bulk": BulkState(),
        "can_write": principal.can(WRITE),
        "reason_field": False,
        "groups": hold_groups(db),
        "items_of": lambda rows: _items(db, locale, rows, errors, forms),
        "money": money_in(locale),
        "hold_titles": HOLD_TITLES,
        "hold_text": _hold_text,
        "event_text": _event_text,
        "scope_choices": SCOPE_CHOICES,
    }


@router.post("/exceptions/bulk")
async def exceptions_bulk(
    request: Request, db: DbSession, principal: Reader, hooks: Hooks
) -> Response:
    form = await request.form()
    view = _bound(EXCEPTIONS, "/exceptions")
    return await run_in_threadpool(
        _bulk,
        request,
        db,
        principal,
        hooks,
        form,
        view,
        "oms/exceptions.html",
        _exceptions_extra,
    )


EXCEPTIONS = mount_list(
    router,
    "/exceptions",
    EXCEPTIONS_VIEW,
    read=READ,
    template="oms/exceptions.html",
    context=_exceptions_extra,
)


def _exception_error(
    request: Request,
    db: Session,
    principal: Principal,
    order_id: int,
    back: str,
    errors: dict[str, dict[str, object]],
    forms: dict[str, dict[str, str]],
) -> Response:
    """A refused form of the queue: the order's card again (htmx), or the whole queue, with
    the errors next to their fields."""
    view = _bound(EXCEPTIONS, "/exceptions")
    _with_query(request, back)
    if is_htmx(request):
        row = view.row(db, order_id)
        if row is None:
            return redirect(request, back)
        item = _items(db, _locale(request, db), [row], {order_id: errors}, {order_id: forms})[0]
        ctx = {
            **_exceptions_extra(request, db),
            "view": view,
            "item": item,
            "back": back,
        }
        return render(request, "oms/_exception_item.html", ctx, status_code=422)
    ctx = {
        **list_context(view, request, db, principal),
        **_exceptions_extra(request, db, {order_id: errors}, {order_id: forms}),
    }
    return render(request, "oms/exceptions.html", ctx, status_code=422)


@router.post("/exceptions/map-sku")
async def map_sku(request: Request, db: DbSession, principal: Writer) -> Response:
    form = await request.form()
    return await run_in_threadpool(_map_sku, request, db, principal, form)


def _map_sku(request: Request, db: Session, principal: Principal, form: Any) -> Response:
    back = _safe_back(form, f"{PREFIX}/exceptions")
    try:
        order_id = int(_text(form, "order_id", 20))
    except ValueError:
        raise HTTPException(422, N_("choose an order")) from None
    order = _order_of(db, principal, order_id)
    merchant_sku = _text(form, "merchant_sku", 200)
    code = _text(form, "sku", 200)
    scope = _text(form, "scope", 10) or "shop"
    key = f"map:{merchant_sku}"
    values = {"sku": code, "scope": scope}
    problem: object = None
    sku: Sku | None = None
    if not merchant_sku:
        problem = N_("the merchant SKU code is missing")
    elif not code:
        problem = N_("enter the code of the SKU to map %(code)s to", code=merchant_sku)
    else:
        sku = db.scalar(select(Sku).where(Sku.code == code))
        if sku is None:
            problem = N_("no SKU with code %(code)s", code=code)
        elif not sku.active:
            problem = N_("SKU %(code)s is not active", code=code)
    if problem is not None or sku is None:
        return _exception_error(
            request, db, principal, order.id, back, {key: {"sku": problem}}, {key: values}
        )
    account_id = order.channel_account_id if scope == "shop" else None
    filled = svc.map_sku(db, merchant_sku, sku.id, account_id=account_id, actor=actor_of(principal))
    again = _back_to_review(db, principal)
    db.commit()
    message = N_(
        "%(code)s is mapped to SKU %(sku)s: %(lines)s lines filled, %(orders)s orders back to "
        "the review.",
        code=merchant_sku,
        sku=sku.code,
        lines=filled,
        orders=again,
    )
    return redirect(request, back, message)


# --- one order -----------------------------------------------------------------------------------


def _hold_text(row: Any) -> str:
    """An order's (or a list row's) hold reason, translatable when it was made so."""
    return svc.load_message(getattr(row, "hold_detail", None), row.hold_reason)


def _event_text(ev: Event) -> str:
    return svc.load_message((ev.data or {}).get("_msg"), ev.message)


@dataclass
class TrailStep:
    at: datetime
    text: str
    action: str


@dataclass
class ParcelView:
    parcel: Parcel
    warehouse: Warehouse | None
    lines: list[tuple[OrderLine | None, Decimal]]

    @property
    def trail(self) -> list[TrailStep]:
        """The courier's steps, newest first (as the page lists them)."""
        out = []
        for x in self.parcel.trail or []:
            try:
                at = datetime.fromisoformat(str(x.get("at", "")))
            except ValueError:
                continue
            out.append(TrailStep(at, str(x.get("text", "")), str(x.get("action", ""))))
        return out[::-1]


def _order_ctx(
    request: Request,
    db: Session,
    principal: Principal,
    order: Order,
    *,
    errors: Mapping[str, Mapping[str, object]] | None = None,
    forms: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    locale = _locale(request, db)
    lines = list(db.scalars(select(OrderLine).where(OrderLine.order_id == order.id)))
    head_id = order.merged_into_id or order.id
    head = db.get(Order, head_id) if order.merged_into_id else order
    members = list(
        db.scalars(select(Order).where(Order.merged_into_id == head_id).order_by(Order.id))
    )
    parcels = list(db.scalars(select(Parcel).where(Parcel.order_id == head_id).order_by(Parcel.id)))
    pls = list(
        db.scalars(
            select(ParcelLine).where(ParcelLine.parcel_id.in_([p.id for p in parcels] or [-1]))
        )
    )
    line_ids = {pl.order_line_id for pl in pls}
    all_lines = {ln.id: ln for ln in lines}
    missing = line_ids - set(all_lines)
    if missing:
        all_lines.update(
            {ln.id: ln for ln in db.scalars(select(OrderLine).where(OrderLine.id.in_(missing)))}
        )
    warehouses = {
        w.id: w
        for w in db.scalars(
            select(Warehouse).where(Warehouse.id.in_({p.warehouse_id for p in parcels} or {-1}))
        )
    }
    by_parcel: dict[int, list[tuple[OrderLine | None, Decimal]]] = defaultdict(list)
    for pl in pls:
        by_parcel[pl.parcel_id].append((all_lines.get(pl.order_line_id), pl.quantity))
    sku_ids = {ln.sku_id for ln in all_lines.values() if ln.sku_id is not None}
    skus = {s.id: s for s in db.scalars(select(Sku).where(Sku.id.in_(sku_ids or {-1})))}
    shop = db.get(ChannelAccount, order.channel_account_id) if order.channel_account_id else None
    events = list(db.scalars(select(Event).where(Event.order_id == order.id).order_by(Event.id)))
    can_write = principal.can(WRITE)
    form_defaults: dict[str, Mapping[str, str]] = {
        "hold": {"reason": ""},
        "cancel": {"reason": ""},
        "address": {
            "receiver_name": order.receiver_name,
            "receiver_phone": order.receiver_phone,
            "province": order.province,
            "city": order.city,
            "district": order.district,
            "address": order.address,
        },
    }
    for p in parcels:
        form_defaults[f"ship-{p.id}"] = {"tracking_no": "", "courier_code": p.courier_code}
    return {
        "order": order,
        "head": head,
        "members": members,
        "shop": shop,
        "lines": lines,
        "skus": skus,
        "parcels": [
            ParcelView(p, warehouses.get(p.warehouse_id), by_parcel[p.id]) for p in parcels
        ],
        "events": events,
        "address_problems": address_problems(
            locale, order.province, order.city, order.district, order.address
        ),
        "money": money_in(locale),
        "qty": qty,
        "status_titles": STATUS_TITLES,
        "platform_titles": PLATFORM_TITLES,
        "hold_titles": HOLD_TITLES,
        "hold_text": _hold_text,
        "event_text": _event_text,
        "parcel_titles": PARCEL_TITLES,
        "writeback_titles": WRITEBACK_TITLES,
        "trail_titles": TRAIL_TITLES,
        "event_titles": EVENT_TITLES,
        "source_titles": SOURCE_TITLES,
        "refund_titles": REFUND_TITLES,
        "can_write": can_write,
        "can_release": can_write and order.status == "held",
        "can_hold": can_write and order.status in HOLDABLE,
        "can_cancel": can_write and order.status in OPEN_STATES,
        "can_fix_address": can_write and order.status in OPEN_STATES,
        "can_process": can_write
        and order.status in PROCESSABLE_STATES
        and order.merged_into_id is None,
        "can_ship": can_write and order.merged_into_id is None,
        "errors": {k: dict(v) for k, v in (errors or {}).items()},
        "forms": {**form_defaults, **(forms or {})},
    }


def _order_error(
    request: Request,
    db: Session,
    principal: Principal,
    order: Order,
    errors: Mapping[str, Mapping[str, object]],
    forms: Mapping[str, Mapping[str, str]] | None = None,
) -> Response:
    db.rollback()
    order = _order_of(db, principal, order.id)
    ctx = _order_ctx(request, db, principal, order, errors=errors, forms=forms)
    return render(request, "oms/order.html", ctx, block="order", status_code=422)


def _order_url(order: Order) -> str:
    return f"{PREFIX}/orders/{order.id}"


@router.get("/orders/{order_id:int}")
def order_page(order_id: Id, request: Request, db: DbSession, principal: Reader) -> Response:
    order = _order_of(db, principal, order_id)
    return render(
        request, "oms/order.html", _order_ctx(request, db, principal, order), block="order"
    )


def _single(
    request: Request, db: Session, principal: Principal, order: Order, done: Done, form: str
) -> Response:
    if done.problems:
        return _order_error(request, db, principal, order, {form: {"": done.problems[0].message}})
    db.commit()
    return redirect(request, _order_url(order), done.message)


@router.post("/orders/{order_id:int}/release")
def order_release(order_id: Id, request: Request, db: DbSession, principal: Writer) -> Response:
    order = _order_of(db, principal, order_id)
    return _single(request, db, principal, order, release_orders(db, principal, [order]), "")


@router.post("/orders/{order_id:int}/process")
def order_process(
    order_id: Id, request: Request, db: DbSession, principal: Writer, hooks: Hooks
) -> Response:
    order = _order_of(db, principal, order_id)
    try:
        done = process_orders(db, principal, hooks, [order])
    except (ValueError, LookupError, InventoryError) as exc:
        return _order_error(request, db, principal, order, {"": {"": _message(exc)}})
    if done.problems and order.status == "held":  # held by the review: that is an outcome
        db.commit()
        return redirect(request, _order_url(order), done.problems[0].message, "warning")
    return _single(request, db, principal, order, done, "")


async def _reason_action(
    request: Request, db: Session, principal: Principal, order_id: int, what: str
) -> Response:
    form = await request.form()
    reason = _text(form, "reason", 1000)

    def run() -> Response:
        order = _order_of(db, principal, order_id)
        problem = _check_reason(reason, what)
        if problem is not None:
            return _order_error(
                request,
                db,
                principal,
                order,
                {what: {"reason": problem}},
                {what: {"reason": reason}},
            )
        if what == "hold":
            done = hold_orders(db, principal, [order], reason)
        else:
            done = cancel_orders(db, principal, [order], reason)
        return _single(request, db, principal, order, done, what)

    return await run_in_threadpool(run)


@router.post("/orders/{order_id:int}/hold")
async def order_hold(order_id: Id, request: Request, db: DbSession, principal: Writer) -> Response:
    return await _reason_action(request, db, principal, order_id, "hold")


@router.post("/orders/{order_id:int}/cancel")
async def order_cancel(
    order_id: Id, request: Request, db: DbSession, principal: Writer
) -> Response:
    return await _reason_action(request, db, principal, order_id, "cancel")


ADDRESS_LIMITS = {
    "receiver_name": 128,
    "receiver_phone": 64,
    "province": 64,
    "city": 64,
    "district": 64,
    "address": 400,
}


def check_address_form(values: Mapping[str, str], locale: str) -> dict[str, object]:
    """Errors of a corrected address, by field: every part is needed, the province must be
    one, and the address must not have a problem that would hold the order again."""
    errors: dict[str, object] = {}
    for name, limit in ADDRESS_LIMITS.items():
        v = values.get(name, "")
        if not v:
            errors[name] = N_("this is needed")
        elif len(v) > limit:
            errors[name] = N_("at most %(n)s characters", n=limit)
    if "province" not in errors and regions.normalize_province(values["province"]) is None:
        errors["province"] = N_("%(value)s is not a province of China", value=values["province"])
    if not errors:
        found = address_problems(
            locale, values["province"], values["city"], values["district"], values["address"]
        )
        for name, text in found:
            errors.setdefault(name, text)
    return errors


@router.post("/orders/{order_id:int}/address")
async def order_address(
    order_id: Id, request: Request, db: DbSession, principal: Writer
) -> Response:
    form = await request.form()
    return await run_in_threadpool(_order_address, request, db, principal, order_id, form)


def _order_address(
    request: Request, db: Session, principal: Principal, order_id: int, form: Any
) -> Response:
    order = _order_of(db, principal, order_id)
    from_queue = _text(form, "origin", 20) == "exceptions"
    back = _safe_back(form, f"{PREFIX}/exceptions") if from_queue else _order_url(order)
    values = {name: _text(form, name, limit + 100) for name, limit in ADDRESS_LIMITS.items()}

    def refuse(errors: dict[str, object]) -> Response:
        if from_queue:
            db.rollback()
            return _exception_error(
                request, db, principal, order.id, back, {"address": errors}, {"address": values}
            )
        return _order_error(request, db, principal, order, {"address": errors}, {"address": values})

    if order.status not in OPEN_STATES:
        return refuse(
            {
                "": N_(
                    "the order is %(status)s; its address can no longer change",
                    status=_status(order),
                )
            }
        )
    errors = check_address_form(values, _locale(request, db))
    if errors:
        return refuse(errors)
    changes = {k: v for k, v in values.items() if getattr(order, k) != v}
    if not changes:
        return refuse({"": N_("nothing changed; correct the address first")})
    try:
        manual.fix_address(db, order, changes, actor=actor_of(principal))
    except (svc.OmsError, InventoryError) as exc:
        return refuse({"": _message(exc)})
    db.commit()
    message = N_(
        "The address of order %(no)s is corrected; the order goes back to the review.",
        no=order.platform_order_id,
    )
    return redirect(request, back, message)


@router.post("/orders/{order_id:int}/parcels/{parcel_id:int}/ship")
async def parcel_ship(
    order_id: Id,
    parcel_id: Id,
    request: Request,
    db: DbSession,
    principal: Writer,
    hooks: Hooks,
) -> Response:
    form = await request.form()
    return await run_in_threadpool(
        _parcel_ship, request, db, principal, hooks, order_id, parcel_id, form
    )


def _parcel_ship(
    request: Request,
    db: Session,
    principal: Principal,
    hooks: Any,
    order_id: int,
    parcel_id: int,
    form: Any,
) -> Response:
    order = _order_of(db, principal, order_id)
    parcel = db.scalar(select(Parcel).where(Parcel.id == parcel_id, Parcel.order_id == order.id))
    if parcel is None:
        raise HTTPException(404, "Not Found")
    key = f"ship-{parcel.id}"
    values = {
        "tracking_no": _text(form, "tracking_no", 200),
        "courier_code": _text(form, "courier_code", 200),
    }
    errors: dict[str, object] = {}
    if not values["tracking_no"]:
        errors["tracking_no"] = N_("enter the tracking number")
    elif not TRACKING_RE.match(values["tracking_no"]):
        errors["tracking_no"] = N_("letters, digits and '-', at most 64 characters")
    courier = values["courier_code"] or parcel.courier_code
    if not courier:
        errors["courier_code"] = N_("enter the courier's code, e.g. SF or YTO")
    elif not CODE_RE.match(courier):
        errors["courier_code"] = N_("letters, digits, '.', '_' and '-', at most 32 characters")
    if parcel.state != "reserved":  # no form for it on the page: said above everything
        problem = N_(
            "the parcel is %(state)s; only a parcel with its stock reserved ships",
            state=PARCEL_TITLES.get(parcel.state, parcel.state),
        )
        return _order_error(request, db, principal, order, {"": {"": problem}})
    if errors:
        return _order_error(request, db, principal, order, {key: errors}, {key: values})
    try:
        svc.ship(
            db,
            parcel,
            tracking_no=values["tracking_no"],
            courier_code=courier,
            hooks=hooks,
            actor=actor_of(principal),
        )
    except (svc.OmsError, InventoryError) as exc:
        return _order_error(
            request, db, principal, order, {key: {"": _message(exc)}}, {key: values}
        )
    db.commit()
    message = N_(
        "Parcel %(id)s shipped with %(tracking)s.", id=parcel.id, tracking=parcel.tracking_no
    )
    return redirect(request, _order_url(order), message)


# --- review rules --------------------------------------------------------------------------------


def rule_types(hooks: Any) -> dict[str, Any]:
    """The built-in rule types and those of the tenant's plugins."""
    return {**rv.BUILTIN_TYPES, **svc.extra_rule_types(hooks)}


def _rules(db: Session) -> list[ReviewRule]:
    return list(db.scalars(select(ReviewRule).order_by(ReviewRule.position, ReviewRule.id)))


def _rule_of(db: Session, principal: Principal, rule_id: int) -> ReviewRule:
    rule = db.scalar(select(ReviewRule).where(ReviewRule.id == rule_id))
    if rule is None or rule.tenant_id != principal.tenant_id:
        raise HTTPException(404, "Not Found")
    return rule


def params_summary(rtype: Any, params: Mapping[str, Any], title: Callable[[Any], str]) -> str:
    """A rule's parameters as people read them: "Amount: 1000; Keywords: a, b"."""
    if rtype is None:
        return ", ".join(f"{k}: {v}" for k, v in params.items())
    parts = []
    for f in rtype.params:
        value = params.get(f.name)
        if value in (None, "", [], ()):
            continue
        shown = ", ".join(rv.to_items(value)) if f.type == "list" else str(value)
        parts.append(f"{title(f)}: {shown}")
    return "; ".join(parts)


def _rules_ctx(
    request: Request,
    db: Session,
    hooks: Any,
    problems: Mapping[int, object] | None = None,
) -> dict[str, Any]:
    locale = _locale(request, db)
    title = title_in(locale)
    types = rule_types(hooks)
    rules = _rules(db)
    return {
        "rules": rules,
        "types": types,
        "title_of": title,
        "summary": lambda r: params_summary(types.get(r.kind), r.params or {}, title),
        "action_titles": ACTION_TITLES,
        "problems": dict(problems or {}),
    }


@router.get("/rules")
def rules_page(request: Request, db: DbSession, principal: Manager, hooks: Hooks) -> Response:
    return render(request, "oms/rules.html", _rules_ctx(request, db, hooks), block="rules")


@dataclass
class RuleForm:
    """The rule form's values as typed, and what they mean."""

    name: str = ""
    kind: str = ""
    action: str = "hold"
    reason: str = ""
    tag: str = ""
    active: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def _param_value(f: rv.ParamField, text: str) -> Any:
    if f.type == "list":
        return rv.to_items(text)
    if f.type == "number":
        number = rv.to_decimal(text)
        if number is None:
            return text
        return int(number) if number == number.to_integral_value() else format(number, "f")
    return text


def read_rule_form(form: Any, types: Mapping[str, Any], *, kind: str | None = None) -> RuleForm:
    """The rule form (a POST's form or a GET's query string) as :class:`RuleForm`; parameters
    are read by the fields of the chosen type (``param-<name>``)."""
    rf = RuleForm(
        name=_text(form, "name", 300),
        kind=kind if kind is not None else _text(form, "kind", 60),
        action=_text(form, "action", 10) or "hold",
        reason=_text(form, "reason", 500),
        tag=_text(form, "tag", 100),
        active=_text(form, "active", 5) in ("1", "on", "true"),
    )
    rtype = types.get(rf.kind)
    for f in rtype.params if rtype is not None else ():
        key = f"param-{f.name}"
        if f.type == "list" and f.choices:
            chosen = [v for v in form.getlist(key) if isinstance(v, str) and v]
            rf.raw[f.name] = chosen
            if chosen:
                rf.params[f.name] = chosen
            continue
        text = _text(form, key, 4000)
        rf.raw[f.name] = text
        if text:
            rf.params[f.name] = _param_value(f, text)
    return rf


def rule_form_of(rule: ReviewRule, types: Mapping[str, Any]) -> RuleForm:
    rf = RuleForm(
        name=rule.name,
        kind=rule.kind,
        action=rule.action,
        reason=rule.reason,
        tag=rule.tag,
        active=rule.active,
        params=dict(rule.params or {}),
    )
    rtype = types.get(rule.kind)
    for f in rtype.params if rtype is not None else ():
        value = rf.params.get(f.name)
        if f.type == "list" and f.choices:
            rf.raw[f.name] = rv.to_items(value)
        elif f.type == "list":
            rf.raw[f.name] = "\n".join(rv.to_items(value))
        else:
            rf.raw[f.name] = "" if value is None else str(value)
    return rf


def check_rule(rf: RuleForm, types: Mapping[str, Any], locale: str) -> dict[str, object]:
    """Errors of the rule form by field ("kind", "action", "reason", "tag", "name", "params",
    and ``param-<name>`` for each parameter), through :func:`erp_oms.review.validate_rule`."""
    errors: dict[str, object] = dict(
        rv.validate_rule(rf.kind, rf.params, rf.action, rf.reason, rf.tag, types)
    )
    if not rf.kind:
        errors["kind"] = N_("choose a rule type")
    if len(rf.name) > 200:
        errors["name"] = N_("at most %(n)s characters", n=200)
    if len(rf.reason) > 400:
        errors["reason"] = N_("at most %(n)s characters", n=400)
    if len(rf.tag) > 64:
        errors["tag"] = N_("at most %(n)s characters", n=64)
    rtype = types.get(rf.kind)
    if "params" in errors and rtype is not None:
        title = title_in(locale)
        fields = {f.name: f for f in rtype.params}
        rest: list[object] = []
        for problem in rtype.validate(rf.params):
            name = problem.params.get("param") if isinstance(problem, Message) else None
            if isinstance(name, str) and name in fields:
                shown = Message(problem.msgid, **{**problem.params, "param": title(fields[name])})
                errors.setdefault(f"param-{name}", shown)
            else:
                rest.append(problem)
        if rest:
            errors["params"] = rest[0] if len(rest) == 1 else "; ".join(str(r) for r in rest)
        else:
            del errors["params"]
    return errors


@dataclass(frozen=True, slots=True)
class ParamInput:
    """One parameter field of the rule form, described for the template."""

    name: str
    id: str
    title: str
    kind: str  # checkboxes, select, textarea, text
    value: Any
    required: bool
    choices: tuple[tuple[str, str], ...] = ()
    error: object = None
    attrs: dict[str, str] | None = None


def param_inputs(
    rtype: Any, rf: RuleForm, errors: Mapping[str, object], title: Callable[[Any], str]
) -> list[ParamInput]:
    out = []
    for f in rtype.params if rtype is not None else ():
        name = f"param-{f.name}"
        error = errors.get(name)
        if f.type == "list" and f.choices:
            chosen = rf.raw.get(f.name) or []
            choices = tuple((c, CHOICE_TITLES.get(c, c)) for c in f.choices)
            out.append(
                ParamInput(name, name, title(f), "checkboxes", chosen, f.required, choices, error)
            )
        elif f.type == "choice":
            choices = (("", "—"), *((c, CHOICE_TITLES.get(c, c)) for c in f.choices))
            value = rf.raw.get(f.name, "")
            out.append(
                ParamInput(name, name, title(f), "select", value, f.required, choices, error)
            )
        elif f.type == "list":
            value = rf.raw.get(f.name, "")
            out.append(ParamInput(name, name, title(f), "textarea", value, f.required, (), error))
        else:
            attrs = (
                {"inputmode": "numeric" if f.integer else "decimal"} if f.type == "number" else {}
            )
            if error:
                attrs["autofocus"] = "autofocus"
            value = rf.raw.get(f.name, "")
            out.append(
                ParamInput(
                    name, name, title(f), "text", value, f.required, (), error, attrs or None
                )
            )
    return out


def _rule_form_ctx(
    request: Request,
    db: Session,
    hooks: Any,
    rf: RuleForm,
    *,
    rule: ReviewRule | None,
    errors: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    types = rule_types(hooks)
    title = title_in(_locale(request, db))
    errors = dict(errors or {})
    inputs = param_inputs(types.get(rf.kind), rf, errors, title)
    order = ["kind", *(p.name for p in inputs), "action", "reason", "tag", "name"]
    return {
        "rule": rule,
        "form": rf,
        "param_inputs": inputs,
        "type_choices": [(k, title(t)) for k, t in types.items()],
        "action_choices": list(ACTION_TITLES.items()),
        "errors": errors,
        "focus": next((k for k in order if k in errors), None),
        "action_url": f"{PREFIX}/rules/{rule.id}" if rule else f"{PREFIX}/rules/new",
    }


@router.get("/rules/new")
def rule_new(request: Request, db: DbSession, principal: Manager, hooks: Hooks) -> Response:
    types = rule_types(hooks)
    kind = request.query_params.get("kind") or next(iter(types))
    rf = read_rule_form(request.query_params, types, kind=kind)
    if "action" not in request.query_params:
        rf.active = True
    ctx = _rule_form_ctx(request, db, hooks, rf, rule=None)
    return render(request, "oms/rule_form.html", ctx, block="rule_form")


@router.get("/rules/{rule_id:int}")
def rule_edit(
    rule_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    rule = _rule_of(db, principal, rule_id)
    types = rule_types(hooks)
    kind = request.query_params.get("kind")
    if kind and kind != rule.kind:  # another type chosen: its fields, the rest as typed
        rf = read_rule_form(request.query_params, types, kind=kind)
    else:
        rf = rule_form_of(rule, types)
    ctx = _rule_form_ctx(request, db, hooks, rf, rule=rule)
    return render(request, "oms/rule_form.html", ctx, block="rule_form")


async def _rule_save(
    request: Request, db: Session, principal: Principal, hooks: Any, rule_id: int | None
) -> Response:
    form = await request.form()

    def run() -> Response:
        types = rule_types(hooks)
        rule = _rule_of(db, principal, rule_id) if rule_id is not None else None
        rf = read_rule_form(form, types)
        errors = check_rule(rf, types, _locale(request, db))
        if errors:
            ctx = _rule_form_ctx(request, db, hooks, rf, rule=rule, errors=errors)
            return render(request, "oms/rule_form.html", ctx, block="rule_form", status_code=422)
        name = rf.name or rf.reason or rf.tag or title_in(_locale(request, db))(types[rf.kind])
        if rule is None:
            last = db.scalar(select(func.max(ReviewRule.position)))
            rule = ReviewRule(position=(last or 0) + 10)
            db.add(rule)
        rule.name, rule.kind, rule.params = name[:200], rf.kind, rf.params
        rule.action, rule.reason, rule.tag, rule.active = rf.action, rf.reason, rf.tag, rf.active
        db.commit()
        return redirect(request, f"{PREFIX}/rules", N_("Rule %(name)s saved.", name=rule.name))

    return await run_in_threadpool(run)


@router.post("/rules/new")
async def rule_create(
    request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    return await _rule_save(request, db, principal, hooks, None)


@router.post("/rules/{rule_id:int}")
async def rule_update(
    rule_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    return await _rule_save(request, db, principal, hooks, rule_id)


def _rules_changed(request: Request, db: Session, hooks: Any, message: Message) -> Response:
    db.commit()
    if is_htmx(request):
        ctx = _rules_ctx(request, db, hooks)
        return render(
            request, "oms/rules.html", ctx, block="rules", messages=[("success", message)]
        )
    return redirect(request, f"{PREFIX}/rules", message)


@router.post("/rules/{rule_id:int}/active")
async def rule_active(
    rule_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    form = await request.form()
    on = _text(form, "active", 5) == "1"

    def run() -> Response:
        rule = _rule_of(db, principal, rule_id)
        rule.active = on
        if on:
            message = N_("Rule %(name)s is on.", name=rule.name)
        else:
            message = N_("Rule %(name)s is off.", name=rule.name)
        return _rules_changed(request, db, hooks, message)

    return await run_in_threadpool(run)


@router.post("/rules/{rule_id:int}/move")
async def rule_move(
    rule_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    form = await request.form()
    up = _text(form, "direction", 5) == "up"

    def run() -> Response:
        rule = _rule_of(db, principal, rule_id)
        rules = _rules(db)
        i = rules.index(rule)
        j = i - 1 if up else i + 1
        if 0 <= j < len(rules):
            rules[i], rules[j] = rules[j], rules[i]
        for n, r in enumerate(rules):  # positions 10, 20, ...: room to insert between
            r.position = (n + 1) * 10
        return _rules_changed(request, db, hooks, N_("Rule %(name)s moved.", name=rule.name))

    return await run_in_threadpool(run)


@router.post("/rules/{rule_id:int}/delete")
def rule_delete(
    rule_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    rule = _rule_of(db, principal, rule_id)
    name = rule.name
    db.delete(rule)
    return _rules_changed(request, db, hooks, N_("Rule %(name)s deleted.", name=name))


# --- routing settings ----------------------------------------------------------------------------

SETTING_FIELDS = (
    "auto_process",
    "routing_strategy",
    "allow_split",
    "merge_orders",
    "auto_ship",
    "default_weight_kg",
)
SETTING_SWITCHES = ("auto_process", "allow_split", "merge_orders", "auto_ship")


def settings_values(db: Session) -> dict[str, Any]:
    """The tenant's OMS settings as they are, or the defaults when none are stored yet (read
    only: the row is created when the settings are first saved)."""
    row = db.scalar(select(Setting))
    if row is not None:
        return {k: getattr(row, k) for k in SETTING_FIELDS}
    columns = Setting.__table__.c
    return {k: columns[k].default.arg for k in SETTING_FIELDS}


def strategies_of(hooks: Any) -> dict[str, Any]:
    return {**rt.BUILTIN_STRATEGIES, **svc.extra_strategies(hooks)}


def _decimal(
    text: str, *, places: int, minimum: Decimal, maximum: Decimal, strict: bool
) -> tuple[Decimal | None, Message | None]:
    """A number typed in a form: its value, or why it is not one that fits."""
    try:
        n = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        return None, N_("enter a number, e.g. 1.5")
    if not n.is_finite():
        return None, N_("enter a number, e.g. 1.5")
    if (n <= minimum) if strict else (n < minimum):
        if strict:
            return None, N_("must be more than %(n)s", n=str(minimum))
        return None, N_("must not be negative")
    if n > maximum:
        return None, N_("at most %(n)s", n=str(maximum))
    if -n.normalize().as_tuple().exponent > places:  # type: ignore[operator]
        return None, N_("at most %(n)s decimal places", n=places)
    return n, None


def _int(text: str, low: int, high: int) -> tuple[int | None, Message | None]:
    try:
        n = int(text.strip())
    except ValueError:
        return None, N_("enter a whole number from %(low)s to %(high)s", low=low, high=high)
    if not low <= n <= high:
        return None, N_("enter a whole number from %(low)s to %(high)s", low=low, high=high)
    return n, None


def _provinces(text: str) -> tuple[list[str], Message | None]:
    names: list[str] = []
    for item in rv.to_items(text):
        name = regions.normalize_province(item)
        if name is None:
            return [], N_("%(value)s is not a province of China", value=item)
        if name not in names:
            names.append(name)
    return sorted(names), None


@dataclass
class SettingsPage:
    """What the settings page shows besides the settings: errors and values per form."""

    settings_form: dict[str, Any] | None = None
    settings_errors: dict[str, object] = field(default_factory=dict)
    route_forms: dict[int, dict[str, str]] = field(default_factory=dict)
    route_errors: dict[int, dict[str, object]] = field(default_factory=dict)
    rate_form: dict[str, str] | None = None
    rate_errors: dict[str, object] = field(default_factory=dict)


def _rate_values(rate: CourierRate | None) -> dict[str, str]:
    if rate is None:
        return {
            "id": "",
            "warehouse_id": "",
            "courier_code": "",
            "region": "*",
            "first_kg": "1",
            "first_cost": "",
            "extra_cost_per_kg": "0",
            "priority": "0",
        }
    return {
        "id": str(rate.id),
        "warehouse_id": str(rate.warehouse_id),
        "courier_code": rate.courier_code,
        "region": rate.region,
        "first_kg": qty(rate.first_kg),
        "first_cost": format(rate.first_cost, "f"),
        "extra_cost_per_kg": format(rate.extra_cost_per_kg, "f"),
        "priority": str(rate.priority),
    }


def _settings_ctx(
    request: Request, db: Session, hooks: Any, page: SettingsPage | None = None
) -> dict[str, Any]:
    page = page or SettingsPage()
    locale = _locale(request, db)
    title = title_in(locale)
    values = settings_values(db)
    warehouses = list(db.scalars(select(Warehouse).order_by(Warehouse.code)))
    routes = {r.warehouse_id: r for r in db.scalars(select(WarehouseRoute))}
    route_forms: dict[int, dict[str, str]] = {}
    for w in warehouses:
        route = routes.get(w.id)
        route_forms[w.id] = page.route_forms.get(w.id) or {
            "priority": str(route.priority if route else 100),
            "regions": ", ".join(route.regions if route else ()),
            "active": "1" if (route.active if route else True) else "",
        }
    rates = list(
        db.scalars(
            select(CourierRate).order_by(
                CourierRate.warehouse_id, CourierRate.courier_code, CourierRate.region
            )
        )
    )
    editing: CourierRate | None = None
    wanted = request.query_params.get("rate", "")
    if page.rate_form is None and wanted.isdigit() and len(wanted) < 19:
        editing = next((r for r in rates if r.id == int(wanted)), None)
    strategies = strategies_of(hooks)
    return {
        "settings": values,
        "settings_form": page.settings_form
        or {**values, "default_weight_kg": qty(values["default_weight_kg"])},
        "settings_errors": page.settings_errors,
        "strategy_choices": [(k, title(s)) for k, s in strategies.items()],
        "warehouses": warehouses,
        "warehouse_names": {w.id: w.code for w in warehouses},
        "routes": routes,
        "route_forms": route_forms,
        "route_errors": page.route_errors,
        "rates": rates,
        "rate_form": page.rate_form or _rate_values(editing),
        "rate_errors": page.rate_errors,
        "warehouse_choices": [(str(w.id), f"{w.code} · {w.name}") for w in warehouses],
        "qty": qty,
    }


@router.get("/settings")
def settings_page(request: Request, db: DbSession, principal: Manager, hooks: Hooks) -> Response:
    return render(request, "oms/settings.html", _settings_ctx(request, db, hooks))


def _settings_refused(
    request: Request, db: Session, hooks: Any, page: SettingsPage, block: str
) -> Response:
    db.rollback()
    ctx = _settings_ctx(request, db, hooks, page)
    return render(request, "oms/settings.html", ctx, block=block, status_code=422)


@router.post("/settings")
async def settings_save(
    request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    form = await request.form()

    def run() -> Response:
        values: dict[str, Any] = {k: _text(form, k, 5) in ("1", "on") for k in SETTING_SWITCHES}
        values["routing_strategy"] = _text(form, "routing_strategy", 60)
        values["default_weight_kg"] = _text(form, "default_weight_kg", 40)
        errors: dict[str, object] = {}
        if values["routing_strategy"] not in strategies_of(hooks):
            errors["routing_strategy"] = N_("choose a routing strategy")
        weight, problem = _decimal(
            values["default_weight_kg"],
            places=3,
            minimum=Decimal(0),
            maximum=Decimal(1000),
            strict=True,
        )
        if problem is not None:
            errors["default_weight_kg"] = problem
        if errors:
            page = SettingsPage(settings_form=values, settings_errors=errors)
            return _settings_refused(request, db, hooks, page, "settings_form")
        row = svc.settings_of(db)
        for k in SETTING_SWITCHES:
            setattr(row, k, values[k])
        row.routing_strategy = values["routing_strategy"]
        row.default_weight_kg = weight  # type: ignore[assignment]
        db.commit()
        return redirect(request, f"{PREFIX}/settings", N_("Settings saved."))

    return await run_in_threadpool(run)


@router.post("/settings/routes/{warehouse_id:int}")
async def route_save(
    warehouse_id: Id, request: Request, db: DbSession, principal: Manager, hooks: Hooks
) -> Response:
    form = await request.form()

    def run() -> Response:
        wh = db.scalar(select(Warehouse).where(Warehouse.id == warehouse_id))
        if wh is None:
            raise HTTPException(404, "Not Found")
        values = {
            "priority": _text(form, "priority", 20),
            "regions": _text(form, "regions", 2000),
            "active": "1" if _text(form, "active", 5) in ("1", "on") else "",
        }
        errors: dict[str, object] = {}
        priority, problem = _int(values["priority"], 0, 1_000_000)
        if problem is not None:
            errors["priority"] = problem
        names, problem = _provinces(values["regions"])
        if problem is not None:
            errors["regions"] = problem
        if errors or priority is None:
            page = SettingsPage(route_forms={wh.id: values}, route_errors={wh.id: errors})
            return _settings_refused(request, db, hooks, page, "routes")
        route = db.scalar(select(WarehouseRoute).where(WarehouseRoute.warehouse_id == wh.id))
        if route is None:
            route = WarehouseRoute(warehouse_id=wh.id)
            db.add(route)
        route.priority, route.regions, route.active = priority, names, bool(values["active"])
        db.commit()
        message = N_("Routing of warehouse %(code)s saved.", code=wh.code)
        if is_htmx(request):
            ctx = _settings_ctx(request, db, hooks)
            return render(
                request, "oms/settings.html", ctx, block="routes", messages=[("success", message)]
            )
        return redirect(request, f"{PREFIX}/settings", message)

    return await run_in_threadpool(run)


RATE_FIELDS = (
    "id",
    "warehouse_id",
    "courier_code",
    "region",
    "first_kg",
    "first_cost",
    "extra_cost_per_kg",
    "priority",
)


def check_rate_form(
    db: Session, values: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, object]]:
    """A courier rate from the form: its cleaned values, or errors by field."""
    errors: dict[str, object] = {}
    out: dict[str, Any] = {}
    wid = values["warehouse_id"]
    wh = (
        db.scalar(select(Warehouse).where(Warehouse.id == int(wid)))
        if wid.isdigit() and len(wid) < 19
        else None
    )
    if wh is None:
        errors["warehouse_id"] = N_("choose a warehouse")
    else:
        out["warehouse_id"] = wh.id
    code = values["courier_code"]
    if not code:
        errors["courier_code"] = N_("enter the courier's code, e.g. SF or YTO")
    elif not CODE_RE.match(code):
        errors["courier_code"] = N_("letters, digits, '.', '_' and '-', at most 32 characters")
    else:
        out["courier_code"] = code
    region = values["region"] or "*"
    if region != rt.ANY_REGION:
        name = regions.normalize_province(region)
        if name is None:
            errors["region"] = N_("a province of China, or * for every other province")
        region = name or region
    out["region"] = region
    checks = (
        ("first_kg", 3, True, Decimal(1000)),
        ("first_cost", 2, False, Decimal(100_000)),
        ("extra_cost_per_kg", 2, False, Decimal(100_000)),
    )
    for name, places, strict, maximum in checks:
        n, problem = _decimal(
            values[name], places=places, minimum=Decimal(0), maximum=maximum, strict=strict
        )
        if problem is not None:
            errors[name] = problem
        out[name] = n
    priority, problem = _int(values["priority"] or "0", 0, 1000)
    if problem is not None:
        errors["priority"] = problem
    out["priority"] = priority
    return out, errors


@router.post("/settings/rates")
async def rate_save(request: Request, db: DbSession, principal: Manager, hooks: Hooks) -> Response:
    form = await request.form()

    def run() -> Response:
        values = {k: _text(form, k, 100) for k in RATE_FIELDS}
        rate: CourierRate | None = None
        if values["id"]:
            rate = (
                db.scalar(select(CourierRate).where(CourierRate.id == int(values["id"])))
                if values["id"].isdigit() and len(values["id"]) < 19
                else None
            )
            if rate is None:
                raise HTTPException(404, "Not Found")
        cleaned, errors = check_rate_form(db, values)
        if not errors:
            same = db.scalar(
                select(CourierRate).where(
                    CourierRate.warehouse_id == cleaned["warehouse_id"],
                    CourierRate.courier_code == cleaned["courier_code"],
                    CourierRate.region == cleaned["region"],
                )
            )
            if same is not None and same is not rate:
                errors["courier_code"] = N_(
                    "this courier has a rate from this warehouse to %(region)s already; "
                    "change that one",
                    region=cleaned["region"],
                )
        if errors:
            page = SettingsPage(rate_form=values, rate_errors=errors)
            return _settings_refused(request, db, hooks, page, "rates")
        if rate is None:
            rate = CourierRate(
                warehouse_id=cleaned["warehouse_id"],
                courier_code=cleaned["courier_code"],
                region=cleaned["region"],
            )
            db.add(rate)
        for k in ("warehouse_id", "courier_code", "region", "first_kg", "first_cost"):
            setattr(rate, k, cleaned[k])
        rate.extra_cost_per_kg, rate.priority = cleaned["extra_cost_per_kg"], cleaned["priority"]
        db.commit()
        message = N_(
            "Rate of %(courier)s to %(region)s saved.",
            courier=rate.courier_code,
            region=rate.region,
        )
        return redirect(request, f"{PREFIX}/settings#rates", message)

    return await run_in_threadpool(run)


@router.post("/settings/rates/{rate_id:int}/delete")
def rate_delete(rate_id: Id, request: Request, db: DbSession, principal: Manager) -> Response:
    rate = db.scalar(select(CourierRate).where(CourierRate.id == rate_id))
    if rate is None:
        raise HTTPException(404, "Not Found")
    message = N_(
        "Rate of %(courier)s to %(region)s deleted.", courier=rate.courier_code, region=rate.region
    )
    db.delete(rate)
    db.commit()
    return redirect(request, f"{PREFIX}/settings#rates", message)
