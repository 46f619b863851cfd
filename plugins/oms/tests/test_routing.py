"""Tests of the routing engine and merge grouping (pure functions, no database)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from erp_oms.routing import (
    BUILTIN_STRATEGIES,
    CourierRate,
    MergeCandidate,
    NoRoute,
    Parcel,
    Plan,
    RouteLine,
    WarehouseOption,
    address_key,
    can_serve,
    choose_courier,
    merge_groups,
    province_key,
    route,
    shipping_cost,
)
from hypothesis import given, settings
from hypothesis import strategies as st

D = Decimal


def line(line_id: int, sku_id: int, qty: str, weight: str = "1") -> RouteLine:
    return RouteLine(line_id=line_id, sku_id=sku_id, quantity=D(qty), weight_kg=D(weight))


def wh(
    warehouse_id: int,
    code: str,
    priority: int,
    stock: dict[int, str],
    regions: Sequence[str] = (),
    active: bool = True,
) -> WarehouseOption:
    return WarehouseOption(
        warehouse_id=warehouse_id,
        code=code,
        priority=priority,
        regions=frozenset(regions),
        available={sku: D(q) for sku, q in stock.items()},
        active=active,
    )


def rate(
    warehouse_id: int,
    courier: str,
    region: str = "*",
    first_kg: str = "1",
    first_cost: str = "8.00",
    extra: str = "2.00",
    priority: int = 0,
) -> CourierRate:
    return CourierRate(
        warehouse_id=warehouse_id,
        courier_code=courier,
        region=region,
        first_kg=D(first_kg),
        first_cost=D(first_cost),
        extra_cost_per_kg=D(extra),
        priority=priority,
    )


def plan(result: Plan | NoRoute) -> Plan:
    assert isinstance(result, Plan), result
    return result


def no_route(result: Plan | NoRoute) -> NoRoute:
    assert isinstance(result, NoRoute), result
    return result


def single(result: Plan | NoRoute) -> Parcel:
    p = plan(result)
    assert len(p.parcels) == 1 and not p.split
    return p.parcels[0]


# --------------------------------------------------------------------------------------------
# shipping_cost
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "expected"),
    [
        ("0", "8.00"),  # a weightless parcel still pays the first weight
        ("0.4", "8.00"),
        ("1", "8.00"),  # exactly the first weight: no extra
        ("1.0001", "10.00"),  # any started kilogram is billed
        ("2", "10.00"),
        ("2.3", "12.00"),  # 1.3 kg over -> 2 extra kg
        ("3", "12.00"),
        ("10.5", "28.00"),  # 9.5 over -> 10 extra kg
    ],
)
def test_shipping_cost_rounds_extra_weight_up(weight: str, expected: str) -> None:
    assert shipping_cost(D(weight), rate(1, "SF")) == D(expected)


def test_shipping_cost_with_fractional_first_weight_and_money_rounding() -> None:
    r = rate(1, "YTO", first_kg="0.5", first_cost="4.5", extra="1.255")
    # 1.2 kg: 0.7 over -> 1 extra kg; 4.5 + 1.255 = 5.755 -> 5.76 (half up, to the cent)
    assert shipping_cost(D("1.2"), r) == D("5.76")
    assert shipping_cost(D("1.2"), r).as_tuple().exponent == -2


def test_shipping_cost_refuses_negative_weight_and_float() -> None:
    with pytest.raises(ValueError):
        shipping_cost(D("-0.1"), rate(1, "SF"))
    with pytest.raises(TypeError):
        shipping_cost(2.3, rate(1, "SF"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# choose_courier
# --------------------------------------------------------------------------------------------


def test_choose_courier_takes_the_cheapest() -> None:
    rates = [
        rate(1, "SF", first_cost="12.00"),
        rate(1, "YTO", first_cost="6.00"),
        rate(1, "ZTO", first_cost="7.00"),
    ]
    assert choose_courier(1, "浙江", D("1"), rates) == ("YTO", D("6.00"))


def test_province_rate_beats_the_catch_all_of_the_same_courier_even_when_dearer() -> None:
    rates = [rate(1, "YTO", "*", first_cost="6.00"), rate(1, "YTO", "新疆", first_cost="20.00")]
    assert choose_courier(1, "新疆维吾尔自治区", D("1"), rates) == ("YTO", D("20.00"))
    # Elsewhere the catch-all applies.
    assert choose_courier(1, "浙江省", D("1"), rates) == ("YTO", D("6.00"))


def test_province_rate_of_one_courier_does_not_hide_another_couriers_catch_all() -> None:
    rates = [rate(1, "YTO", "新疆", first_cost="20.00"), rate(1, "ZTO", "*", first_cost="15.00")]
    assert choose_courier(1, "新疆", D("1"), rates) == ("ZTO", D("15.00"))


def test_choose_courier_depends_on_weight() -> None:
    # Cheap first weight but dear extra kilos versus the opposite.
    rates = [
        rate(1, "A", first_cost="5.00", extra="5.00"),
        rate(1, "B", first_cost="9.00", extra="1.00"),
    ]
    assert choose_courier(1, "浙江", D("1"), rates) == ("A", D("5.00"))
    assert choose_courier(1, "浙江", D("5"), rates) == ("B", D("13.00"))


def test_choose_courier_ties_by_priority_then_code() -> None:
    rates = [
        rate(1, "ZTO", priority=1),
        rate(1, "YTO", priority=2),
        rate(1, "STO", priority=2),
    ]
    assert choose_courier(1, "浙江", D("1"), rates) == ("ZTO", D("8.00"))
    assert choose_courier(1, "浙江", D("1"), rates[1:]) == ("STO", D("8.00"))


def test_choose_courier_ignores_other_warehouses_and_provinces() -> None:
    rates = [rate(2, "SF", first_cost="1.00"), rate(1, "YTO", "广东", first_cost="1.00")]
    assert choose_courier(1, "浙江", D("1"), rates) is None
    assert choose_courier(1, "广东省", D("1"), rates) == ("YTO", D("1.00"))


def test_province_key_drops_administrative_suffixes_and_spacing() -> None:
    assert province_key("浙江省") == province_key(" 浙江 ") == "浙江"
    assert province_key("北京市") == "北京"
    assert province_key("广西壮族自治区") == "广西"
    assert province_key("新疆维吾尔自治区") == "新疆"
    assert province_key("内蒙古自治区") == "内蒙古"
    assert province_key("香港特别行政区") == "香港"
    assert province_key("Zhejiang") == province_key("ＺＨＥＪＩＡＮＧ")
    assert province_key("浙江") != province_key("江苏")


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

HZ = wh(1, "HZ", 1, {10: "5", 11: "5"})
SH = wh(2, "SH", 2, {10: "5", 11: "5"})
GZ = wh(3, "GZ", 3, {10: "5", 11: "5"})
RATES = [
    rate(1, "YTO", first_cost="10.00"),
    rate(2, "YTO", first_cost="7.00"),
    rate(3, "YTO", first_cost="7.00"),
]


def test_priority_strategy_takes_the_best_ranked_warehouse_that_holds_everything() -> None:
    lines = [line(1, 10, "2"), line(2, 11, "1")]
    parcel = single(route(lines, "浙江", [GZ, SH, HZ], RATES))
    assert parcel.warehouse_id == HZ.warehouse_id
    assert parcel.lines == ((1, D("2")), (2, D("1")))
    assert parcel.weight_kg == D("3")
    assert (parcel.courier_code, parcel.cost) == ("YTO", D("14.00"))


def test_priority_strategy_skips_a_warehouse_missing_one_line() -> None:
    hz = wh(1, "HZ", 1, {10: "5", 11: "0"})
    parcel = single(route([line(1, 10, "2"), line(2, 11, "1")], "浙江", [hz, SH, GZ], RATES))
    assert parcel.warehouse_id == SH.warehouse_id


def test_priority_ties_are_broken_by_code() -> None:
    b = wh(1, "B", 1, {10: "5"})
    a = wh(2, "A", 1, {10: "5"})
    assert single(route([line(1, 10, "1")], "浙江", [b, a], [])).warehouse_id == 2


def test_cost_strategy_takes_the_cheapest_and_breaks_ties_by_priority() -> None:
    lines = [line(1, 10, "1")]
    # SH and GZ cost 7.00, HZ 10.00: cost ignores HZ's better rank; SH beats GZ on priority.
    parcel = single(route(lines, "浙江", [GZ, HZ, SH], RATES, strategy="cost"))
    assert (parcel.warehouse_id, parcel.cost) == (SH.warehouse_id, D("7.00"))
    assert plan(route(lines, "浙江", [GZ, HZ, SH], RATES, strategy="cost")).strategy == "cost"
    # The priority strategy on the same input keeps HZ.
    assert single(route(lines, "浙江", [GZ, HZ, SH], RATES)).warehouse_id == HZ.warehouse_id


def test_cost_strategy_prices_the_whole_order_weight() -> None:
    # HZ is cheaper for 1 kg, SH for 6 kg.
    rates = [
        rate(1, "YTO", first_cost="5.00", extra="3.00"),
        rate(2, "YTO", first_cost="8.00", extra="1.00"),
    ]
    light = single(route([line(1, 10, "1")], "浙江", [HZ, SH], rates, strategy="cost"))
    heavy = single(route([line(1, 10, "3", "2")], "浙江", [HZ, SH], rates, strategy="cost"))
    assert light.warehouse_id == HZ.warehouse_id
    assert (heavy.warehouse_id, heavy.cost) == (SH.warehouse_id, D("13.00"))


def test_cost_strategy_ranks_unpriced_warehouses_last_and_only_serving_ones() -> None:
    lines = [line(1, 10, "1")]
    # HZ has no rate at all, GZ is dear, SH is cheapest but lacks stock.
    sh = wh(2, "SH", 2, {10: "0"})
    rates = [rate(2, "YTO", first_cost="1.00"), rate(3, "YTO", first_cost="30.00")]
    parcel = single(route(lines, "浙江", [HZ, sh, GZ], rates, strategy="cost"))
    assert (parcel.warehouse_id, parcel.cost) == (GZ.warehouse_id, D("30.00"))
    # With no rates anywhere it falls back to priority.
    assert single(route(lines, "浙江", [GZ, SH, HZ], [], strategy="cost")).warehouse_id == 1


def test_builtin_strategies_have_titles_in_both_languages() -> None:
    assert set(BUILTIN_STRATEGIES) == {"priority", "cost"}
    for name, strategy in BUILTIN_STRATEGIES.items():
        assert strategy.name == name
        assert strategy.title_zh and strategy.title_en


def test_unknown_strategy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="fastest"):
        route([line(1, 10, "1")], "浙江", [HZ], [], strategy="fastest")


class MostStock:
    """A plugin strategy: ship from the warehouse holding the most of the order's SKUs."""

    name = "most_stock"
    title_zh = "库存最多"
    title_en = "Most stock"

    def pick(
        self,
        lines: Sequence[RouteLine],
        province: str,
        candidates: Sequence[WarehouseOption],
        rates: Sequence[CourierRate],
    ) -> WarehouseOption | None:
        serving = [w for w in candidates if can_serve(w, lines)]
        if not serving:
            return None
        skus = {ln.sku_id for ln in lines}
        return max(serving, key=lambda w: sum(w.available.get(s, D(0)) for s in skus))


def test_plugin_strategy_is_merged_with_the_builtins() -> None:
    big = wh(3, "GZ", 9, {10: "500"})
    plugins = {"most_stock": MostStock()}
    lines = [line(1, 10, "1")]
    result = plan(
        route(lines, "浙江", [HZ, SH, big], [], strategy="most_stock", strategies=plugins)
    )
    assert result.strategy == "most_stock"
    assert result.parcels[0].warehouse_id == 3
    # The built-ins stay available next to the plugin's.
    assert single(route(lines, "浙江", [HZ, SH, big], [], strategies=plugins)).warehouse_id == 1
    # Without the plugin mapping the name is unknown.
    with pytest.raises(ValueError):
        route(lines, "浙江", [HZ], [], strategy="most_stock")


def test_plugin_strategy_only_sees_covering_active_warehouses() -> None:
    seen: list[int] = []

    class Spy(MostStock):
        def pick(self, lines, province, candidates, rates):  # type: ignore[no-untyped-def]
            seen.extend(w.warehouse_id for w in candidates)
            return super().pick(lines, province, candidates, rates)

    warehouses = [
        wh(1, "HZ", 1, {10: "5"}, regions=["江苏"]),
        wh(2, "SH", 2, {10: "5"}, active=False),
        wh(3, "GZ", 3, {10: "5"}),
        wh(4, "BJ", 0, {10: "5"}, regions=["浙江省"]),
    ]
    route([line(1, 10, "1")], "浙江", warehouses, [], strategy="spy", strategies={"spy": Spy()})
    assert seen == [4, 3]  # sorted by (priority, code)


def test_plugin_strategy_cannot_route_outside_its_candidates_or_beyond_stock() -> None:
    outsider = wh(99, "X", 0, {10: "100"})
    empty = wh(1, "HZ", 1, {10: "0"})

    class Rogue(MostStock):
        def __init__(self, answer: WarehouseOption) -> None:
            self.answer = answer

        def pick(self, lines, province, candidates, rates):  # type: ignore[no-untyped-def]
            return self.answer

    with pytest.raises(ValueError, match="not a candidate"):
        route([line(1, 10, "1")], "浙江", [HZ], [], strategy="r", strategies={"r": Rogue(outsider)})
    with pytest.raises(ValueError, match="cannot serve"):
        route([line(1, 10, "1")], "浙江", [empty], [], strategy="r", strategies={"r": Rogue(empty)})


# --------------------------------------------------------------------------------------------
# Coverage and activity
# --------------------------------------------------------------------------------------------


def test_only_warehouses_covering_the_province_are_candidates() -> None:
    north = wh(1, "BJ", 1, {10: "5"}, regions=["北京", "河北"])
    south = wh(2, "GZ", 2, {10: "5"}, regions=["广东省", "广西"])
    anywhere = wh(3, "SH", 3, {10: "5"})
    lines = [line(1, 10, "1")]
    assert single(route(lines, "广东省", [north, south, anywhere], [])).warehouse_id == 2
    assert single(route(lines, "北京市", [north, south, anywhere], [])).warehouse_id == 1
    assert single(route(lines, "浙江", [north, south, anywhere], [])).warehouse_id == 3
    result = no_route(route(lines, "浙江", [north, south], []))
    assert result.reason_code == "no_coverage"
    assert "浙江" in result.reason


def test_inactive_warehouses_are_never_used() -> None:
    closed = wh(1, "HZ", 0, {10: "100"}, active=False)
    open_ = wh(2, "SH", 5, {10: "5"})
    lines = [line(1, 10, "3")]
    assert single(route(lines, "浙江", [closed, open_], [])).warehouse_id == 2
    # Its stock does not count towards a split either.
    short = no_route(route([line(1, 10, "8")], "浙江", [closed, open_], []))
    assert short.reason_code == "no_stock"
    assert no_route(route(lines, "浙江", [closed], [])).reason_code == "no_coverage"


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def test_split_by_quantity_across_warehouses() -> None:
    hz = wh(1, "HZ", 1, {10: "6"})
    sh = wh(2, "SH", 2, {10: "4"})
    result = plan(route([line(1, 10, "10")], "浙江", [sh, hz], [rate(1, "YTO"), rate(2, "ZTO")]))
    assert result.split
    assert [(p.warehouse_id, p.lines) for p in result.parcels] == [
        (1, ((1, D("6")),)),
        (2, ((1, D("4")),)),
    ]
    assert [(p.courier_code, p.weight_kg, p.cost) for p in result.parcels] == [
        ("YTO", D("6"), D("18.00")),
        ("ZTO", D("4"), D("14.00")),
    ]


def test_split_takes_the_warehouse_serving_most_units_first() -> None:
    lines = [line(1, 10, "3"), line(2, 11, "3")]
    small = wh(1, "HZ", 1, {10: "3"})  # best rank, serves 3
    large = wh(2, "SH", 9, {10: "2", 11: "3"})  # worse rank, serves 5
    result = plan(route(lines, "浙江", [small, large], []))
    assert [(p.warehouse_id, p.lines) for p in result.parcels] == [
        (2, ((1, D("2")), (2, D("3")))),
        (1, ((1, D("1")),)),
    ]


def test_split_ties_on_units_go_to_priority() -> None:
    lines = [line(1, 10, "2"), line(2, 11, "2")]
    a = wh(1, "A", 5, {10: "2"})
    b = wh(2, "B", 1, {11: "2"})
    result = plan(route(lines, "浙江", [a, b], []))
    assert [p.warehouse_id for p in result.parcels] == [2, 1]


def test_split_of_two_lines_of_one_sku_shares_the_stock() -> None:
    # A paid item and the same SKU as a gift: 4 + 1 wanted, no warehouse holds 5.
    lines = [line(1, 10, "4"), line(2, 10, "1")]
    hz = wh(1, "HZ", 1, {10: "4"})
    sh = wh(2, "SH", 2, {10: "4"})
    assert not can_serve(hz, lines)
    result = plan(route(lines, "浙江", [hz, sh], []))
    assert [(p.warehouse_id, p.lines) for p in result.parcels] == [
        (1, ((1, D("4")),)),
        (2, ((2, D("1")),)),
    ]


def test_fractional_quantities_split_exactly() -> None:
    rice = line(1, 10, "2.5", "1")  # 2.5 kg sold by the kilogram
    hz = wh(1, "HZ", 1, {10: "1.75"})
    sh = wh(2, "SH", 2, {10: "0.8"})
    result = plan(route([rice], "浙江", [hz, sh], []))
    assert [p.lines for p in result.parcels] == [((1, D("1.75")),), ((1, D("0.75")),)]
    assert sum(q for p in result.parcels for _, q in p.lines) == D("2.5")


def test_negative_stock_counts_as_none_not_as_debt() -> None:
    # An oversold warehouse (-2) must not cancel the stock of the others.
    hz = wh(1, "HZ", 1, {10: "3"})
    oversold = wh(2, "SH", 2, {10: "-2"})
    gz = wh(3, "GZ", 3, {10: "2"})
    result = plan(route([line(1, 10, "5")], "浙江", [hz, oversold, gz], []))
    assert [(p.warehouse_id, p.lines) for p in result.parcels] == [
        (1, ((1, D("3")),)),
        (3, ((1, D("2")),)),
    ]


def test_no_split_when_not_allowed() -> None:
    hz = wh(1, "HZ", 1, {10: "6"})
    sh = wh(2, "SH", 2, {10: "4"})
    result = no_route(route([line(1, 10, "10")], "浙江", [hz, sh], [], allow_split=False))
    assert result.reason_code == "split_needed"
    # When one warehouse can serve it, allow_split=False changes nothing.
    assert single(route([line(1, 10, "4")], "浙江", [hz, sh], [], allow_split=False))


def test_no_stock_names_the_short_skus() -> None:
    lines = [line(1, 10, "5"), line(2, 11, "1"), line(3, 12, "9")]
    hz = wh(1, "HZ", 1, {10: "2", 11: "1", 12: "4"})
    sh = wh(2, "SH", 2, {10: "2", 12: "-3"})  # negative stock counts as none
    for allow_split in (True, False):
        result = no_route(route(lines, "浙江", [hz, sh], [], allow_split=allow_split))
        assert result.reason_code == "no_stock"
        assert result.sku_ids == (10, 12)
        assert "SKU 10" in result.reason and "SKU 12" in result.reason
        assert "SKU 11" not in result.reason
        assert "SKU 12 needs 9, has 4" in result.reason


# --------------------------------------------------------------------------------------------
# Couriers on parcels
# --------------------------------------------------------------------------------------------


def test_missing_courier_rate_keeps_the_plan_with_a_note() -> None:
    hz = wh(1, "HZ", 1, {10: "5"}, regions=[])
    result = plan(route([line(1, 10, "1")], "西藏自治区", [hz], [rate(1, "SF", "浙江")]))
    parcel = result.parcels[0]
    assert (parcel.courier_code, parcel.cost) == (None, None)
    assert result.notes == ("no courier rate for warehouse HZ to province 西藏自治区",)


def test_require_courier_turns_a_missing_rate_into_no_route() -> None:
    hz = wh(1, "HZ", 1, {10: "5"})
    result = no_route(route([line(1, 10, "1")], "西藏", [hz], [], require_courier=True))
    assert result.reason_code == "no_courier"
    assert "HZ" in result.reason
    assert plan(route([line(1, 10, "1")], "西藏", [hz], [rate(1, "EMS")], require_courier=True))


def test_each_parcel_of_a_split_is_priced_on_its_own_weight() -> None:
    lines = [line(1, 10, "3", "0.5"), line(2, 11, "1", "2.3")]
    hz = wh(1, "HZ", 1, {10: "3"})
    sh = wh(2, "SH", 2, {11: "1"})
    result = plan(route(lines, "浙江", [hz, sh], [rate(1, "YTO"), rate(2, "YTO")]))
    assert [(p.weight_kg, p.cost) for p in result.parcels] == [
        (D("1.5"), D("10.00")),
        (D("2.3"), D("12.00")),
    ]
    assert result.notes == ()


# --------------------------------------------------------------------------------------------
# Input checking and determinism
# --------------------------------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    with pytest.raises(TypeError):
        RouteLine(line_id=1, sku_id=1, quantity=1.5, weight_kg=D(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        line(1, 10, "0")
    with pytest.raises(ValueError):
        line(1, 10, "1", "-1")
    with pytest.raises(TypeError):
        CourierRate(
            warehouse_id=1,
            courier_code="SF",
            region="*",
            first_kg=1.0,  # type: ignore[arg-type]
            first_cost=D(8),
            extra_cost_per_kg=D(2),
        )
    with pytest.raises(ValueError):
        route([], "浙江", [HZ], [])
    with pytest.raises(ValueError, match="line id 1"):
        route([line(1, 10, "1"), line(1, 11, "1")], "浙江", [HZ], [])
    with pytest.raises(ValueError, match="warehouse id 1"):
        route([line(1, 10, "1")], "浙江", [HZ, HZ], [])
    float_stock = WarehouseOption(
        warehouse_id=1,
        code="HZ",
        priority=1,
        regions=frozenset(),
        available={10: 1.5},  # type: ignore[dict-item]
    )
    with pytest.raises(TypeError):
        route([line(1, 10, "1")], "浙江", [float_stock], [])


def test_warehouse_options_are_hashable_despite_the_stock_mapping() -> None:
    assert len({HZ, SH, HZ}) == 2


def test_the_plan_does_not_depend_on_input_order() -> None:
    lines = [line(3, 12, "2"), line(1, 10, "7"), line(2, 11, "1.5")]
    warehouses = [
        wh(1, "HZ", 1, {10: "3", 11: "1"}),
        wh(2, "SH", 1, {10: "3", 12: "2"}),
        wh(3, "GZ", 2, {10: "5", 11: "5"}),
        wh(4, "CD", 2, {10: "1", 11: "1", 12: "1"}),
    ]
    rates = [rate(w.warehouse_id, c) for w in warehouses for c in ("YTO", "ZTO")]
    expected = route(lines, "浙江", warehouses, rates)
    shuffler = random.Random(7)
    for _ in range(20):
        shuffler.shuffle(lines)
        shuffler.shuffle(warehouses)
        shuffler.shuffle(rates)
        assert route(lines, "浙江", warehouses, rates) == expected


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

PROVINCES = ("浙江", "江苏", "广东")
SKUS = (1, 2, 3)
quantities = st.decimals(min_value=D("0.01"), max_value=D(20), places=2)
stock_levels = st.decimals(min_value=D(-2), max_value=D(30), places=2)


@st.composite
def routing_cases(
    draw: st.DrawFn,
) -> tuple[list[RouteLine], str, list[WarehouseOption], list[CourierRate], str]:
    n_lines = draw(st.integers(min_value=1, max_value=4))
    lines = [
        RouteLine(
            line_id=i + 1,
            sku_id=draw(st.sampled_from(SKUS)),
            quantity=draw(quantities),
            weight_kg=draw(st.decimals(min_value=D(0), max_value=D(5), places=3)),
        )
        for i in range(n_lines)
    ]
    n_wh = draw(st.integers(min_value=0, max_value=5))
    warehouses = [
        WarehouseOption(
            warehouse_id=i + 1,
            code=f"W{draw(st.integers(min_value=0, max_value=3))}{i}",
            priority=draw(st.integers(min_value=0, max_value=3)),
            regions=frozenset(draw(st.lists(st.sampled_from(PROVINCES), max_size=2))),
            available=draw(st.dictionaries(st.sampled_from(SKUS), stock_levels)),
            active=draw(st.booleans()),
        )
        for i in range(n_wh)
    ]
    rates = draw(
        st.lists(
            st.builds(
                CourierRate,
                warehouse_id=st.integers(min_value=1, max_value=5),
                courier_code=st.sampled_from(("SF", "YTO", "ZTO")),
                region=st.sampled_from((*PROVINCES, "*")),
                first_kg=st.decimals(min_value=D(0), max_value=D(3), places=1),
                first_cost=st.decimals(min_value=D(0), max_value=D(30), places=2),
                extra_cost_per_kg=st.decimals(min_value=D(0), max_value=D(10), places=2),
                priority=st.integers(min_value=0, max_value=2),
            ),
            max_size=8,
        )
    )
    return (
        lines,
        draw(st.sampled_from(PROVINCES)),
        warehouses,
        rates,
        draw(st.sampled_from(("priority", "cost"))),
    )


def _stock(w: WarehouseOption, sku: int) -> Decimal:
    return max(w.available.get(sku, D(0)), D(0))


def _covering(warehouses: Sequence[WarehouseOption], province: str) -> list[WarehouseOption]:
    return [w for w in warehouses if w.active and (not w.regions or province in w.regions)]


def _enough_stock(lines: Sequence[RouteLine], candidates: Sequence[WarehouseOption]) -> bool:
    wanted: dict[int, Decimal] = {}
    for ln in lines:
        wanted[ln.sku_id] = wanted.get(ln.sku_id, D(0)) + ln.quantity
    return all(sum(_stock(w, s) for w in candidates) >= q for s, q in wanted.items())


def _check_plan(
    result: Plan, lines: Sequence[RouteLine], province: str, warehouses: Sequence[WarehouseOption]
) -> None:
    by_id = {w.warehouse_id: w for w in warehouses}
    sku_of = {ln.line_id: ln.sku_id for ln in lines}
    assigned = {ln.line_id: D(0) for ln in lines}
    for parcel in result.parcels:
        w = by_id[parcel.warehouse_id]
        assert w.active and (not w.regions or province in w.regions)
        taken: dict[int, Decimal] = {}
        for line_id, qty in parcel.lines:
            assert qty > 0
            assigned[line_id] += qty
            taken[sku_of[line_id]] = taken.get(sku_of[line_id], D(0)) + qty
        for sku, qty in taken.items():
            assert qty <= _stock(w, sku)
        weights = {ln.line_id: ln.weight_kg for ln in lines}
        assert parcel.weight_kg == sum((weights[i] * q for i, q in parcel.lines), D(0))
        assert (parcel.courier_code is None) == (parcel.cost is None)
    assert assigned == {ln.line_id: ln.quantity for ln in lines}
    assert len({p.warehouse_id for p in result.parcels}) == len(result.parcels)
    assert result.split == (len(result.parcels) > 1)


@settings(max_examples=300, deadline=None)
@given(routing_cases())
def test_a_plan_assigns_exactly_what_was_ordered_within_stock(case) -> None:  # type: ignore[no-untyped-def]
    lines, province, warehouses, rates, strategy = case
    result = route(lines, province, warehouses, rates, strategy=strategy)
    candidates = _covering(warehouses, province)
    if not candidates:
        assert isinstance(result, NoRoute) and result.reason_code == "no_coverage"
    elif _enough_stock(lines, candidates):
        # Splitting is allowed, so enough stock in covering warehouses always gives a plan.
        assert isinstance(result, Plan)
        _check_plan(result, lines, province, warehouses)
    else:
        assert isinstance(result, NoRoute) and result.reason_code == "no_stock"
        assert result.sku_ids


@settings(max_examples=300, deadline=None)
@given(routing_cases())
def test_without_splitting_a_plan_has_one_parcel(case) -> None:  # type: ignore[no-untyped-def]
    lines, province, warehouses, rates, strategy = case
    result = route(lines, province, warehouses, rates, strategy=strategy, allow_split=False)
    candidates = _covering(warehouses, province)
    one_can_serve = any(can_serve(w, lines) for w in candidates)
    if isinstance(result, Plan):
        assert len(result.parcels) == 1 and not result.split
        _check_plan(result, lines, province, warehouses)
    else:
        assert not one_can_serve
        assert result.reason_code in {"no_coverage", "no_stock", "split_needed"}
    assert isinstance(result, Plan) == one_can_serve


@settings(max_examples=200, deadline=None)
@given(routing_cases(), st.randoms(use_true_random=False))
def test_routing_is_deterministic_under_reordering(case, rnd) -> None:  # type: ignore[no-untyped-def]
    lines, province, warehouses, rates, strategy = case
    expected = route(lines, province, warehouses, rates, strategy=strategy)
    lines, warehouses, rates = list(lines), list(warehouses), list(rates)
    rnd.shuffle(lines)
    rnd.shuffle(warehouses)
    rnd.shuffle(rates)
    assert route(lines, province, warehouses, rates, strategy=strategy) == expected


@given(
    st.decimals(min_value=D(0), max_value=D(100), places=3),
    st.decimals(min_value=D(0), max_value=D(100), places=3),
)
def test_shipping_cost_never_drops_with_weight(a: Decimal, b: Decimal) -> None:
    r = rate(1, "SF", first_kg="1", first_cost="8.00", extra="2.50")
    low, high = sorted((a, b))
    assert shipping_cost(low, r) <= shipping_cost(high, r)
    # And is always first cost plus a whole number of extra kilograms.
    extra = (shipping_cost(high, r) - D("8.00")) / D("2.50")
    assert extra == extra.to_integral_value()
    assert extra >= max(high - 1, D(0))
    assert extra < max(high - 1, D(0)) + 1


# --------------------------------------------------------------------------------------------
# Merge grouping
# --------------------------------------------------------------------------------------------

T0 = datetime(2026, 6, 18, 0, 0, 0)
ADDR = address_key("浙江省", "杭州市", "西湖区", "文三路1号", "张三", "13800000000")
OTHER_ADDR = address_key("浙江省", "杭州市", "西湖区", "文三路2号", "张三", "13800000000")


def order(
    order_id: int,
    *,
    shop: int | None = 1,
    buyer: str = "buyer-a",
    addr: str = ADDR,
    status: str = "paid",
    minutes: int = 0,
) -> MergeCandidate:
    return MergeCandidate(
        order_id=order_id,
        channel_account_id=shop,
        buyer_key=buyer,
        address_key=addr,
        status=status,
        created_at=T0 + timedelta(minutes=minutes),
    )


MERGEABLE = frozenset({"paid", "reviewed"})


def test_same_buyer_and_address_in_one_shop_merge() -> None:
    orders = [order(1), order(2, minutes=5), order(3, status="reviewed", minutes=9)]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == [(1, 2, 3)]


def test_groups_are_sorted_by_time_then_id_and_listed_by_first_order() -> None:
    orders = [
        order(5, minutes=10),
        order(9, minutes=1),
        order(7, minutes=1),
        order(2, buyer="buyer-b", minutes=30),
        order(8, buyer="buyer-b", minutes=20),
    ]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == [(7, 9, 5), (8, 2)]


def test_different_shops_never_merge() -> None:
    orders = [order(1, shop=1), order(2, shop=2), order(3, shop=None)]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == []
    # Orders without a shop (manual orders) merge among themselves only.
    orders += [order(4, shop=None, minutes=1), order(5, shop=1, minutes=1)]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == [(1, 5), (3, 4)]


def test_only_mergeable_statuses_merge() -> None:
    orders = [order(1), order(2, status="shipped"), order(3, status="cancelled")]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == []
    assert merge_groups(orders, mergeable_statuses=frozenset({"paid", "shipped"})) == [(1, 2)]


def test_different_buyer_or_address_does_not_merge() -> None:
    orders = [order(1), order(2, buyer="buyer-b"), order(3, addr=OTHER_ADDR)]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == []


def test_unknown_buyer_or_address_never_merges() -> None:
    orders = [order(1, buyer=""), order(2, buyer=""), order(3, addr=""), order(4, addr="")]
    assert merge_groups(orders, mergeable_statuses=MERGEABLE) == []


def test_repeated_order_id_is_refused() -> None:
    with pytest.raises(ValueError):
        merge_groups([order(1), order(1)], mergeable_statuses=MERGEABLE)


def test_address_key_ignores_differences_of_form() -> None:
    variants = [
        ("浙江省", "杭州市", "西湖区", "文三路1号", "张三", "13800000000"),
        ("浙江", "杭州", "西湖区", "文三路 1 號", "张三", "+86 138-0000-0000"),
        (" 浙江省 ", "杭州市", "西湖區", "文三路１号。", "张 三", "0086 13800000000"),
        ("浙江省", "杭州市", "西湖区", "文三路(1)号,", "张三", "138 0000 0000"),
    ]
    keys = {address_key(*v) for v in variants}
    assert keys == {ADDR}


def test_address_key_folds_latin_case_and_width() -> None:
    a = address_key("广东", "深圳", "南山区", "Tower B, Room 1201", "Li Lei", "13900000000")
    b = address_key("广东", "深圳", "南山区", "ＴＯＷＥＲ ｂ room1201", "li lei", "13900000000")
    assert a == b


def test_address_key_keeps_differences_of_content() -> None:
    base = ("浙江省", "杭州市", "西湖区", "文三路1号", "张三", "13800000000")
    for i, changed in enumerate(
        ["江苏省", "湖州市", "拱墅区", "文三路11号", "李四", "13800000001"]
    ):
        other = list(base)
        other[i] = changed
        assert address_key(*other) != ADDR, other
    # A field boundary moving must not collide: "文三路" + "1号" vs "文三路1" + "号".
    assert address_key("a", "b", "c", "d", "e", "1") != address_key("a", "b", "cd", "", "e", "1")
    # Masked phones keep their mask.
    assert address_key(*base[:5], "138****0000") != address_key(*base[:5], "1380000")
    assert address_key(None, None, None, None, None, None) == "|||||"


mergeable_orders = st.lists(
    st.builds(
        MergeCandidate,
        order_id=st.integers(min_value=1, max_value=10_000),
        channel_account_id=st.sampled_from((None, 1, 2)),
        buyer_key=st.sampled_from(("", "a", "b")),
        address_key=st.sampled_from(("", "x", "y")),
        status=st.sampled_from(("paid", "shipped")),
        created_at=st.datetimes(min_value=T0, max_value=T0 + timedelta(days=2)),
    ),
    max_size=12,
    unique_by=lambda o: o.order_id,
)


@given(mergeable_orders)
def test_merge_groups_are_exactly_the_equivalence_classes(orders) -> None:  # type: ignore[no-untyped-def]
    groups = merge_groups(orders, mergeable_statuses=frozenset({"paid"}))
    by_id = {o.order_id: o for o in orders}

    def key(o: MergeCandidate) -> tuple[int | None, str, str]:
        return (o.channel_account_id, o.buyer_key, o.address_key)

    def eligible(o: MergeCandidate) -> bool:
        return o.status == "paid" and bool(o.buyer_key) and bool(o.address_key)

    seen: set[int] = set()
    for group in groups:
        assert len(group) >= 2
        members = [by_id[i] for i in group]
        assert all(eligible(o) for o in members)
        assert len({key(o) for o in members}) == 1
        assert members == sorted(members, key=lambda o: (o.created_at, o.order_id))
        assert not seen & set(group)
        seen |= set(group)
    assert [g[0] for g in groups] == sorted(g[0] for g in groups)
    # Maximal: any two eligible orders with the same key are grouped.
    for a in orders:
        for b in orders:
            if a.order_id != b.order_id and eligible(a) and eligible(b) and key(a) == key(b):
                assert any(a.order_id in g and b.order_id in g for g in groups)
    # Deterministic: the input order does not matter.
    assert merge_groups(orders[::-1], mergeable_statuses=frozenset({"paid"})) == groups
