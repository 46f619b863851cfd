"""Warehouse and courier routing, and merge grouping of orders.

Everything here is pure Python over plain values: the caller reads stock, warehouses and
courier rates from the database, hands them in, and stores the answer. Keeping the engine free
of I/O is what lets it answer in milliseconds during a 618 or Double 11 peak, lets a merchant
preview "where would this order go?" without reserving anything, and lets property tests check
it on thousands of random cases.

The engine is deterministic: the same inputs give the same plan whatever order the warehouses,
lines or rates arrive in, because every choice ends in a total tie-break (priority, code, id).
Quantities, weights and money are ``Decimal`` throughout; a float is refused with ``TypeError``
because a float quantity silently loses units (0.1 + 0.2 != 0.3) and a router that "almost"
assigns a line is worse than one that fails loudly.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Protocol

from erp_core.i18n import N_

__all__ = [
    "ANY_REGION",
    "BUILTIN_STRATEGIES",
    "CostStrategy",
    "CourierRate",
    "MergeCandidate",
    "NoRoute",
    "Parcel",
    "Plan",
    "PriorityStrategy",
    "RouteLine",
    "Strategy",
    "WarehouseOption",
    "address_key",
    "available",
    "can_serve",
    "choose_courier",
    "demand",
    "merge_groups",
    "province_key",
    "route",
    "shipping_cost",
]

_ZERO = Decimal(0)
_CENT = Decimal("0.01")
ANY_REGION = "*"


def _decimal(value: object, what: str) -> Decimal:
    """Accept Decimal (and int, which converts exactly); refuse float, which does not."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__} {value!r}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return result


# --------------------------------------------------------------------------------------------
# Input and output values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteLine:
    """One order line to place. ``weight_kg`` is the weight of ONE unit, so a line of 2.5 kg of
    rice sold by the kilogram has quantity 2.5 and weight 1."""

    line_id: int
    sku_id: int
    quantity: Decimal
    weight_kg: Decimal

    def __post_init__(self) -> None:
        if _decimal(self.quantity, f"quantity of line {self.line_id}") <= _ZERO:
            # A zero line has nothing to ship; routing it would create empty parcels.
            raise ValueError(f"quantity of line {self.line_id} must be positive")
        if _decimal(self.weight_kg, f"weight of line {self.line_id}") < _ZERO:
            raise ValueError(f"weight of line {self.line_id} must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class WarehouseOption:
    """A warehouse as the router sees it: where it delivers and what it can sell right now.

    ``available`` is the sellable quantity (on hand minus reservations) per SKU; a missing SKU
    or a negative number means none. ``regions`` empty means it delivers everywhere.
    """

    warehouse_id: int
    code: str
    priority: int  # lower is preferred
    regions: frozenset[str]
    # A dict is not hashable; leaving it out of the hash keeps the option usable in sets.
    available: Mapping[int, Decimal] = field(hash=False)
    active: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CourierRate:
    """A courier's first-weight/extra-weight tariff (首重/续重) from one warehouse to a province
    (or ``"*"`` for every province not priced specifically)."""

    warehouse_id: int
    courier_code: str
    region: str
    first_kg: Decimal
    first_cost: Decimal
    extra_cost_per_kg: Decimal
    priority: int = 0  # lower is preferred, used only to break cost ties

    def __post_init__(self) -> None:
        label = f"rate {self.courier_code}@{self.warehouse_id}/{self.region}"
        for what, value in (
            ("first_kg", self.first_kg),
            ("first_cost", self.first_cost),
            ("extra_cost_per_kg", self.extra_cost_per_kg),
        ):
            if _decimal(value, f"{what} of {label}") < _ZERO:
                raise ValueError(f"{what} of {label} must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Parcel:
    """What one warehouse ships: ``lines`` are (line_id, quantity), sorted by line id.

    ``courier_code`` and ``cost`` are None when no rate covers the destination; the plan is
    still useful (stock is right) and the caller decides whether to hold the order.
    """

    warehouse_id: int
    courier_code: str | None
    lines: tuple[tuple[int, Decimal], ...]
    weight_kg: Decimal
    cost: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A complete assignment of every line. ``split`` is True when more than one parcel."""

    parcels: tuple[Parcel, ...]
    strategy: str
    split: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NoRoute:
    """Why no plan exists. ``reason_code`` is stable (for rules and translations: "no_coverage",
    "no_stock", "split_needed", "no_courier"); ``reason`` is for a person. ``sku_ids`` names the
    short SKUs for "no_stock" so the exception queue can link to them without parsing text."""

    reason_code: str
    reason: str
    sku_ids: tuple[int, ...] = ()


# --------------------------------------------------------------------------------------------
# Provinces and courier cost
# --------------------------------------------------------------------------------------------

# Longest first: "新疆维吾尔自治区" must lose "维吾尔自治区", not just "自治区".
_PROVINCE_SUFFIXES = (
    "维吾尔自治区",
    "壮族自治区",
    "回族自治区",
    "特别行政区",
    "自治区",
    "省",
    "市",
)


def province_key(name: str) -> str:
    """Canonical form of a province name for comparisons.

    Platforms send "浙江省" while a merchant types "浙江" when configuring a warehouse or a
    tariff; without this a warehouse would silently stop covering a province. Strips spaces,
    folds full-width characters and latin case, and drops the administrative suffix.
    """
    text = "".join(unicodedata.normalize("NFKC", name).split()).casefold()
    for suffix in _PROVINCE_SUFFIXES:
        if text.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return text


def shipping_cost(weight_kg: Decimal, rate: CourierRate) -> Decimal:
    """First weight plus every STARTED extra kilogram, as Chinese couriers bill (续重 rounds up):
    2.3 kg at 8.00 for the first 1 kg and 2.00 per extra kg is 8.00 + 2 x 2.00 = 12.00.

    A parcel at or under the first weight (including a weightless one) costs the first weight:
    the courier still picks it up. Money is rounded half-up to the cent.
    """
    weight = _decimal(weight_kg, "weight")
    if weight < _ZERO:
        raise ValueError(f"weight must not be negative, got {weight_kg}")
    over = weight - rate.first_kg
    extra_kg = over.to_integral_value(rounding=ROUND_CEILING) if over > _ZERO else _ZERO
    return (rate.first_cost + extra_kg * rate.extra_cost_per_kg).quantize(_CENT, ROUND_HALF_UP)


def choose_courier(
    warehouse_id: int, province: str, weight_kg: Decimal, rates: Iterable[CourierRate]
) -> tuple[str, Decimal] | None:
    """The cheapest courier from a warehouse to a province for a parcel weight, or None.

    A courier's province-specific rate replaces its ``"*"`` rate even when dearer: the specific
    one is the negotiated tariff for that destination (remote provinces cost more), and the
    catch-all would under-quote it. Ties go to the rate priority, then the courier code.
    """
    wanted = province_key(province)
    best_per_courier: dict[str, tuple[bool, Decimal, int]] = {}
    for rate in rates:
        if rate.warehouse_id != warehouse_id:
            continue
        if rate.region == ANY_REGION:
            specific = False
        elif province_key(rate.region) == wanted:
            specific = True
        else:
            continue
        cost = shipping_cost(weight_kg, rate)
        # Rank: specific beats generic; then cheaper; then lower priority number.
        candidate = (specific, cost, rate.priority)
        current = best_per_courier.get(rate.courier_code)
        if current is None or _rate_rank(candidate) < _rate_rank(current):
            best_per_courier[rate.courier_code] = candidate
    if not best_per_courier:
        return None
    code, (_, cost, _) = min(
        best_per_courier.items(), key=lambda item: (item[1][1], item[1][2], item[0])
    )
    return code, cost


def _rate_rank(entry: tuple[bool, Decimal, int]) -> tuple[bool, Decimal, int]:
    specific, cost, priority = entry
    return (not specific, cost, priority)


# --------------------------------------------------------------------------------------------
# Stock helpers (public so plugin strategies check stock the same way the engine does)
# --------------------------------------------------------------------------------------------


def demand(lines: Iterable[RouteLine]) -> dict[int, Decimal]:
    """Total quantity wanted per SKU: two lines of one SKU (a paid item and the same item as a
    gift) draw on the same stock, so availability must be checked against the sum."""
    wanted: dict[int, Decimal] = {}
    for line in lines:
        wanted[line.sku_id] = wanted.get(line.sku_id, _ZERO) + line.quantity
    return wanted


def available(warehouse: WarehouseOption, sku_id: int) -> Decimal:
    """Sellable quantity of a SKU in a warehouse; missing or negative counts as none."""
    value = warehouse.available.get(sku_id)
    if value is None:
        return _ZERO
    qty = _decimal(value, f"available quantity of SKU {sku_id} in {warehouse.code}")
    return qty if qty > _ZERO else _ZERO


def can_serve(warehouse: WarehouseOption, lines: Iterable[RouteLine]) -> bool:
    """Whether the warehouse alone holds every line in full."""
    return all(available(warehouse, sku) >= qty for sku, qty in demand(lines).items())


def _rank(warehouse: WarehouseOption) -> tuple[int, str, int]:
    return (warehouse.priority, warehouse.code, warehouse.warehouse_id)


def _covers(warehouse: WarehouseOption, region: str) -> bool:
    return not warehouse.regions or any(province_key(r) == region for r in warehouse.regions)


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------


class Strategy(Protocol):
    """How to choose the single warehouse that ships a whole order.

    ``pick`` gets every active warehouse covering the province, sorted by (priority, code), and
    returns one that can serve every line in full (check with :func:`can_serve`), or None when
    no single warehouse suits; the engine then splits if allowed. Members are read-only
    properties so plain classes, class attributes and frozen dataclasses all conform.
    """

    @property
    def name(self) -> str: ...

    @property
    def title_zh(self) -> str: ...

    @property
    def title_en(self) -> str: ...

    def pick(
        self,
        lines: Sequence[RouteLine],
        province: str,
        candidates: Sequence[WarehouseOption],
        rates: Sequence[CourierRate],
    ) -> WarehouseOption | None: ...


class PriorityStrategy:
    """The merchant's own ranking wins: the best-ranked warehouse that holds everything. Most
    merchants start here because it matches how they already think ("ship from Hangzhou unless
    it is out")."""

    name = "priority"
    title_zh = "按仓库优先级"
    title_en = "By warehouse priority"

    def pick(
        self,
        lines: Sequence[RouteLine],
        province: str,
        candidates: Sequence[WarehouseOption],
        rates: Sequence[CourierRate],
    ) -> WarehouseOption | None:
        for warehouse in sorted(candidates, key=_rank):
            if can_serve(warehouse, lines):
                return warehouse
        return None


class CostStrategy:
    """The cheapest shipment wins among warehouses that hold everything; ranking only breaks
    ties. A warehouse with no rate to the province ranks after every priced one, because an
    unknown cost must not look like a free one."""

    name = "cost"
    title_zh = "运费最低"
    title_en = "Lowest shipping cost"

    def pick(
        self,
        lines: Sequence[RouteLine],
        province: str,
        candidates: Sequence[WarehouseOption],
        rates: Sequence[CourierRate],
    ) -> WarehouseOption | None:
        weight = sum((line.quantity * line.weight_kg for line in lines), _ZERO)
        best: tuple[tuple[bool, Decimal, int, str, int], WarehouseOption] | None = None
        for warehouse in candidates:
            if not can_serve(warehouse, lines):
                continue
            choice = choose_courier(warehouse.warehouse_id, province, weight, rates)
            key = (choice is None, choice[1] if choice else _ZERO, *_rank(warehouse))
            if best is None or key < best[0]:
                best = (key, warehouse)
        return None if best is None else best[1]


BUILTIN_STRATEGIES: Mapping[str, Strategy] = MappingProxyType(
    {"priority": PriorityStrategy(), "cost": CostStrategy()}
)


# --------------------------------------------------------------------------------------------
# The router
# --------------------------------------------------------------------------------------------


def route(
    lines: Sequence[RouteLine],
    province: str,
    warehouses: Sequence[WarehouseOption],
    rates: Sequence[CourierRate],
    *,
    strategy: str = "priority",
    allow_split: bool = True,
    strategies: Mapping[str, Strategy] | None = None,
    require_courier: bool = False,
) -> Plan | NoRoute:
    """Decide which warehouse ships which quantity of each line, and with which courier.

    The named strategy picks one warehouse for the whole order. If it finds none, the order is
    split greedily (the warehouse that can serve the most remaining units first, so the order
    ends in as few parcels as this simple rule finds) when ``allow_split``; otherwise the answer
    is ``NoRoute("split_needed")`` so a person decides. A shortfall across all candidate
    warehouses is ``NoRoute("no_stock")`` whatever ``allow_split`` says, because splitting
    would not help. ``strategies`` adds plugin strategies to the built-in ones (a plugin may
    replace a built-in by using its name). A parcel without a courier rate is kept with a note
    unless ``require_courier``, which turns it into ``NoRoute("no_courier")``.

    Raises ValueError for caller mistakes (unknown strategy, no lines, repeated ids, a strategy
    returning a warehouse it was not offered or one that cannot serve the order).
    """
    registry: dict[str, Strategy] = {**BUILTIN_STRATEGIES, **(strategies or {})}
    chosen = registry.get(strategy)
    if chosen is None:
        known = ", ".join(sorted(registry))
        raise ValueError(f"unknown routing strategy {strategy!r} (known: {known})")
    ordered = _checked_lines(lines)
    _check_unique([w.warehouse_id for w in warehouses], "warehouse id")

    region = province_key(province)
    candidates = tuple(
        sorted((w for w in warehouses if w.active and _covers(w, region)), key=_rank)
    )
    if not candidates:
        return NoRoute(
            reason_code="no_coverage",
            reason=N_("no active warehouse delivers to province %(province)s", province=province),
        )

    picked = chosen.pick(ordered, province, candidates, tuple(rates))
    if picked is not None:
        warehouse = _offered(picked, candidates, strategy)
        if not can_serve(warehouse, ordered):
            raise ValueError(
                f"strategy {strategy!r} picked warehouse {warehouse.code}, "
                "which cannot serve every line in full"
            )
        assignments = [(warehouse, tuple((line.line_id, line.quantity) for line in ordered))]
    else:
        short = _shortage(ordered, candidates)
        if short:
            return NoRoute(
                reason_code="no_stock",
                reason=N_(
                    "not enough stock in warehouses delivering to %(province)s: %(short)s",
                    province=province,
                    short="; ".join(text for _, text in short),
                ),
                sku_ids=tuple(sku for sku, _ in short),
            )
        if not allow_split:
            return NoRoute(
                reason_code="split_needed",
                reason=N_("no single warehouse holds every line in full and splitting is off"),
            )
        assignments = _greedy_split(ordered, candidates)

    by_line = {line.line_id: line for line in ordered}
    parcels: list[Parcel] = []
    notes: list[str] = []
    for warehouse, parcel_lines in assignments:
        weight = sum((qty * by_line[line_id].weight_kg for line_id, qty in parcel_lines), _ZERO)
        courier = choose_courier(warehouse.warehouse_id, province, weight, rates)
        if courier is None:
            notes.append(f"no courier rate for warehouse {warehouse.code} to province {province}")
        parcels.append(
            Parcel(
                warehouse_id=warehouse.warehouse_id,
                courier_code=courier[0] if courier else None,
                lines=parcel_lines,
                weight_kg=weight,
                cost=courier[1] if courier else None,
            )
        )
    if require_courier and notes:
        return NoRoute(reason_code="no_courier", reason="; ".join(notes))
    return Plan(
        parcels=tuple(parcels), strategy=strategy, split=len(parcels) > 1, notes=tuple(notes)
    )


def _checked_lines(lines: Sequence[RouteLine]) -> tuple[RouteLine, ...]:
    """Lines sorted by id, so quantities are handed out in the same order whatever the input
    order was."""
    if not lines:
        raise ValueError("an order without lines cannot be routed")
    _check_unique([line.line_id for line in lines], "line id")
    return tuple(sorted(lines, key=lambda line: line.line_id))


def _check_unique(ids: Sequence[int], what: str) -> None:
    seen: set[int] = set()
    for value in ids:
        if value in seen:
            raise ValueError(f"{what} {value} appears twice")
        seen.add(value)


def _offered(
    picked: WarehouseOption, candidates: Sequence[WarehouseOption], strategy: str
) -> WarehouseOption:
    """Map a strategy's answer back to the candidate it was offered: a plugin must not route to
    an inactive or non-covering warehouse by building its own option."""
    for candidate in candidates:
        if candidate.warehouse_id == picked.warehouse_id:
            return candidate
    raise ValueError(
        f"strategy {strategy!r} picked warehouse {picked.code}, which is not a candidate"
    )


def _shortage(
    lines: Sequence[RouteLine], candidates: Sequence[WarehouseOption]
) -> list[tuple[int, str]]:
    short: list[tuple[int, str]] = []
    for sku, need in sorted(demand(lines).items()):
        have = sum((available(w, sku) for w in candidates), _ZERO)
        if have < need:
            short.append((sku, f"SKU {sku} needs {need}, has {have}"))
    return short


def _greedy_split(
    lines: Sequence[RouteLine], candidates: Sequence[WarehouseOption]
) -> list[tuple[WarehouseOption, tuple[tuple[int, Decimal], ...]]]:
    """Assign the order warehouse by warehouse, taking the one that can serve the most remaining
    units each round (ties by rank). Each warehouse is used at most once and takes as much as it
    can, so once total stock covers the demand (checked before) this always finishes."""
    remaining = demand(lines)
    line_left = {line.line_id: line.quantity for line in lines}
    unused = list(candidates)
    result: list[tuple[WarehouseOption, tuple[tuple[int, Decimal], ...]]] = []

    def servable(warehouse: WarehouseOption) -> Decimal:
        return sum((min(q, available(warehouse, s)) for s, q in remaining.items()), _ZERO)

    while any(q > _ZERO for q in remaining.values()):
        best = min(unused, key=lambda w: (-servable(w), *_rank(w)))
        if servable(best) <= _ZERO:  # pragma: no cover - excluded by the shortage check
            raise AssertionError("greedy split ran out of stock after the shortage check")
        unused.remove(best)
        # The warehouse's share of each SKU is handed to that SKU's lines in line-id order.
        budget = {sku: min(q, available(best, sku)) for sku, q in remaining.items()}
        taken: list[tuple[int, Decimal]] = []
        for line in lines:
            give = min(line_left[line.line_id], budget[line.sku_id])
            if give > _ZERO:
                taken.append((line.line_id, give))
                budget[line.sku_id] -= give
                line_left[line.line_id] -= give
                remaining[line.sku_id] -= give
        result.append((best, tuple(taken)))
    return result


# --------------------------------------------------------------------------------------------
# Merging orders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeCandidate:
    """An order as merge grouping sees it. ``buyer_key`` identifies the buyer within the shop
    (platform buyer id or nick); ``address_key`` comes from :func:`address_key`."""

    order_id: int
    channel_account_id: int | None
    buyer_key: str
    address_key: str
    status: str
    created_at: datetime


def merge_groups(
    orders: Sequence[MergeCandidate], *, mergeable_statuses: frozenset[str]
) -> list[tuple[int, ...]]:
    """Groups of order ids that may ship together as one parcel.

    Orders merge only within one shop: platforms require a tracking number written back per
    shop, and two shops' buyers with the same nick are different people. Orders without a shop
    (manual orders) merge with each other but never with a shop's. An empty buyer or address
    key means "unknown" (masked by the platform), which must never match another unknown.
    Each group is sorted by (created_at, order_id); groups by their first order id.
    """
    _check_unique([o.order_id for o in orders], "order id")
    buckets: dict[tuple[int | None, str, str], list[MergeCandidate]] = {}
    for order in orders:
        if order.status not in mergeable_statuses:
            continue
        if not order.buyer_key or not order.address_key:
            continue
        key = (order.channel_account_id, order.buyer_key, order.address_key)
        buckets.setdefault(key, []).append(order)
    groups = [
        tuple(o.order_id for o in sorted(members, key=lambda o: (o.created_at, o.order_id)))
        for members in buckets.values()
        if len(members) > 1
    ]
    return sorted(groups, key=lambda group: group[0])


# Traditional forms of characters common in addresses; enough to match 號/号 typed by a buyer
# on a Hong Kong or Taiwan keyboard, without pulling in a full conversion table.
_TRADITIONAL = str.maketrans(
    {
        "號": "号",
        "樓": "楼",
        "區": "区",
        "縣": "县",
        "鎮": "镇",
        "鄉": "乡",
        "門": "门",
        "棟": "栋",
        "層": "层",
        "單": "单",
        "東": "东",
        "廣": "广",
        "灣": "湾",
        "島": "岛",
        "園": "园",
        "廈": "厦",
        "華": "华",
        "國": "国",
        "陽": "阳",
        "內": "内",
        "莊": "庄",
        "與": "与",
        "劃": "划",
    }
)


def _text_key(value: str | None) -> str:
    """Drop what buyers type inconsistently (spaces, punctuation, symbols, width, latin case,
    traditional forms) and keep letters and digits, which carry the meaning."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKC", value).translate(_TRADITIONAL).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in "LMN")


def _phone_key(value: str | None) -> str:
    """Digits of the phone without the +86 country code; ``*`` is kept because platforms mask
    the middle digits and "138****5678" must not collapse to "1385678"."""
    if not value:
        return ""
    text = unicodedata.normalize("NFKC", value)
    kept = "".join(ch for ch in text if ch.isdigit() or ch == "*")
    if kept.startswith("0086"):
        return kept[4:]
    if kept.startswith("86") and len(kept) == 13:
        return kept[2:]
    return kept


def address_key(
    province: str | None,
    city: str | None,
    district: str | None,
    detail: str | None,
    name: str | None,
    phone: str | None,
) -> str:
    """A normalized key for "same buyer, same address" so two orders typed slightly differently
    ("浙江省 杭州市 西湖区 文三路１号" and "浙江杭州西湖区文三路1號") still merge.

    Normalization is deliberately light: it removes differences of form, not of content, so a
    false merge (shipping one buyer's goods to another) stays impossible short of identical
    letters and digits. The parts are joined with ``|``, which no part can contain.
    """
    city_key = _text_key(city)
    if city_key.endswith("市") and len(city_key) > 1:
        city_key = city_key[:-1]
    parts = (
        _text_key(province_key(province or "")),
        city_key,
        _text_key(district),
        _text_key(detail),
        _text_key(name),
        _phone_key(phone),
    )
    return "|".join(parts)
