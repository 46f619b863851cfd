"""Automatic order review: the merchant's rules decide which orders ship and which wait.

Every order that arrives is reviewed before it may go to a warehouse. The rules are the
merchant's own (configured in the UI, stored by the caller), evaluated here in pure Python so the
engine is fast, deterministic and testable without a database: whatever the rules need to know
about the world (stock, blacklists, other open orders) they ask a :class:`ReviewContext`, which
the caller answers from the database in batches.

Semantics, in the order they apply:

1. A line whose SKU is not mapped to a catalogue SKU always holds the order ("SKU not mapped:
   X"): the warehouse cannot pick what the ERP does not know, and no rule can waive that.
2. The active rules are evaluated in their order. A matching ``hold`` rule holds the order with
   the rule's reason; evaluation continues so that the person handling the exception sees every
   reason at once, not one per round trip. A matching ``tag`` rule adds its tag. A matching
   ``pass`` rule stops the evaluation: it is a whitelist for the rules *after* it ("VIP buyers
   pass" first exempts them from every later check). It cannot undo a hold already decided
   above it, so moving a rule down can only make the review stricter, never looser.
3. No hold -> the order passes.

Reasons are :class:`erp_core.i18n.Message` strings: plain English for the API, logs and message
cards, translated by the web UI. A rule's reason is the merchant's own text; the engine completes
it with a detail saying what matched ("Big order (paid 1200.00 > 1000)").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from erp_core.i18n import N_
from erp_oms import regions

Action = Literal["pass", "hold", "tag"]
ACTIONS: tuple[Action, ...] = ("pass", "hold", "tag")
ParamType = Literal["text", "number", "list", "choice"]
BLACKLIST_KINDS: tuple[str, ...] = ("buyer", "phone", "address")


# --- What is reviewed ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewLine:
    """One order line as the review sees it; ``sku_id`` is ``None`` while the merchant SKU is
    not mapped to a catalogue SKU."""

    line_id: int
    sku_id: int | None
    merchant_sku: str
    quantity: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewOrder:
    """The facts of an order the rules may look at (a snapshot: the engine never writes)."""

    order_id: int
    connector: str
    channel_account_id: int | None
    total_paid: Decimal
    buyer_id: str
    buyer_nick: str
    receiver_name: str
    receiver_phone: str
    province: str
    city: str
    district: str
    detail: str
    buyer_note: str
    seller_memo: str
    lines: tuple[ReviewLine, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A merchant's review rule: when the condition of type ``kind`` (with ``params``) matches,
    do ``action``. ``reason`` is required for "hold" and ``tag`` for "tag" (see
    :func:`validate_rule`)."""

    id: int
    kind: str
    params: Mapping[str, Any]
    action: Action
    reason: str = ""
    tag: str = ""
    active: bool = True


class ReviewContext(Protocol):
    """What the engine may ask about the world; the caller answers from the database, ideally
    from data loaded once for the whole batch of orders under review."""

    def available(self, sku_id: int) -> Decimal:
        """Sellable stock of the SKU over all warehouses (not counting this order's own
        reservation, if it already holds one)."""
        ...

    def blacklisted(self, kind: str, value: str) -> bool:
        """Whether ``value`` is on the merchant's blacklist of ``kind`` ("buyer", "phone",
        "address"); phones and addresses come normalized by :func:`normalize_phone` and
        :func:`normalize_address`, so the blacklist must store them the same way."""
        ...

    def similar_orders(self, order: ReviewOrder) -> Sequence[int]:
        """Ids of other open orders of the same buyer and address (suspected duplicates)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verdict: ``action`` "hold" with every reason, or "pass"; ``tags`` to add to the order;
    ``matched`` the ids of the rules whose condition matched, in evaluation order (for the
    order's history: which rule did this)."""

    action: Literal["pass", "hold"]
    reasons: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    matched: tuple[int, ...] = ()

    @property
    def held(self) -> bool:
        return self.action == "hold"


# --- Rule types ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamField:
    """One parameter of a rule type, described for the rule form: ``type`` picks the input
    ("list" is several values, typed one per line or comma-separated), ``choices`` the allowed
    values of a "choice" or of the items of a "list", ``integer`` whole numbers only."""

    name: str
    type: ParamType
    title_zh: str
    title_en: str
    required: bool = False
    choices: tuple[str, ...] = ()
    integer: bool = False


class RuleType(Protocol):
    """A kind of condition. Plugins contribute more through the OMS hook; the engine only needs
    these members. ``validate`` returns error messages for the rule form (empty: valid);
    ``matches`` returns whether the condition holds and a short detail completing the reason."""

    @property
    def kind(self) -> str: ...

    @property
    def title_zh(self) -> str: ...

    @property
    def title_en(self) -> str: ...

    @property
    def params(self) -> Sequence[ParamField]: ...

    def validate(self, params: Mapping[str, Any]) -> list[str]: ...

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]: ...


class UnknownRuleType(LookupError):
    """A rule names a kind no installed type provides. Rules are validated when saved, so at
    review time this is a bug (or a plugin was uninstalled): the review fails loudly rather than
    silently passing orders the merchant wanted checked."""

    def __init__(self, kind: str) -> None:
        super().__init__(N_("Unknown rule type: %(kind)s", kind=kind))
        self.kind = kind


def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | set | frozenset):
        return not any(not _blank(v) for v in value)
    return False


def to_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a parameter value (Decimal, int, numeric text; a float only because
    JSON columns may hand one back, converted through its shortest text so 0.1 stays 0.1), or
    ``None`` when it is not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


_LIST_SEPARATORS = (",", ";", "\n", "\uff0c", "\uff1b", "\u3001")  # also full-width , ; and 、


def to_items(value: object) -> list[str]:
    """The items of a "list" parameter: a list of values, or text with one item per line or
    separated by commas (half- or full-width) or 、, as people type them in a form."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value
        for sep in _LIST_SEPARATORS[1:]:
            text = text.replace(sep, _LIST_SEPARATORS[0])
        raw: Iterable[object] = text.split(_LIST_SEPARATORS[0])
    elif isinstance(value, list | tuple | set | frozenset):
        raw = value
    else:
        raw = [value]
    return [str(v).strip() for v in raw if v is not None and str(v).strip()]


def fold(text: str) -> str:
    """Text for comparing what people type: full-width to half-width, case-insensitive."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _fmt(number: Decimal) -> str:
    """A quantity without trailing zeros ("3", "2.5"), never in exponent notation."""
    return format(number.normalize(), "f")


def _join(*parts: str) -> str:
    """Several messages as one, each still translatable."""
    if not parts:
        return ""
    joined = parts[0]
    for part in parts[1:]:
        joined = N_("%(first)s; %(second)s", first=joined, second=part)
    return joined


class BaseRuleType:
    """Validation of the parameters from their :class:`ParamField` description; subclasses add
    cross-field checks in :meth:`check` and implement :meth:`matches`."""

    kind: str = ""
    title_zh: str = ""
    title_en: str = ""
    params: Sequence[ParamField] = ()

    def validate(self, params: Mapping[str, Any]) -> list[str]:
        if not isinstance(params, Mapping):
            return [N_("Parameters must be a mapping")]
        errors: list[str] = []
        known = {f.name for f in self.params}
        errors.extend(
            N_("Unknown parameter: %(param)s", param=str(key)) for key in params if key not in known
        )
        for f in self.params:
            value = params.get(f.name)
            if _blank(value):
                if f.required:
                    errors.append(N_("%(param)s is required", param=f.name))
                continue
            errors.extend(_param_errors(f, value))
        if not errors:
            errors.extend(self.check(params))
        return errors

    def check(self, params: Mapping[str, Any]) -> list[str]:
        """Checks across parameters, run once each parameter is valid on its own."""
        return []

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        raise NotImplementedError


def _param_errors(f: ParamField, value: object) -> list[str]:
    if f.type == "number":
        number = to_decimal(value)
        if number is None:
            return [N_("%(param)s must be a number", param=f.name)]
        if number < 0:
            return [N_("%(param)s must not be negative", param=f.name)]
        if f.integer and number != number.to_integral_value():
            return [N_("%(param)s must be a whole number", param=f.name)]
        return []
    if f.type == "list":
        if not isinstance(value, str | list | tuple):
            return [N_("%(param)s must be a list", param=f.name)]
        errors: list[str] = []
        for item in to_items(value):
            if f.choices and item not in f.choices:
                errors.append(N_("%(param)s: unknown value %(value)s", param=f.name, value=item))
            elif f.integer and not _is_int(item):
                errors.append(
                    N_("%(param)s: %(value)s is not a whole number", param=f.name, value=item)
                )
        return errors
    if f.type == "choice":
        if not isinstance(value, str) or value not in f.choices:
            return [
                N_(
                    "%(param)s must be one of %(choices)s",
                    param=f.name,
                    choices=", ".join(f.choices),
                )
            ]
        return []
    if not isinstance(value, str):
        return [N_("%(param)s must be text", param=f.name)]
    return []


def _is_int(text: str) -> bool:
    """Whether a list item is a whole number as ``int()`` reads it ("12", not "12.0")."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def _param_number(params: Mapping[str, Any], name: str) -> Decimal | None:
    return to_decimal(params.get(name))


class AddressInvalid(BaseRuleType):
    """The address has an error a courier cannot get past (see :func:`regions.check_address`);
    warnings (a city the table does not know) never hold."""

    kind = "address_invalid"
    title_zh = "地址无效"
    title_en = "Invalid address"

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        errors = regions.address_errors(order.province, order.city, order.district, order.detail)
        if not errors:
            return False, ""
        return True, "; ".join(p.message_en for p in errors)


class StockShort(BaseRuleType):
    """Some SKU is ordered in a larger quantity (over all lines) than is sellable; the detail
    lists "SKU needed/available"."""

    kind = "stock_short"
    title_zh = "库存不足"
    title_en = "Stock short"

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        needed: dict[int, Decimal] = {}
        names: dict[int, str] = {}
        for line in order.lines:
            if line.sku_id is None:  # held by the built-in check already
                continue
            needed[line.sku_id] = needed.get(line.sku_id, Decimal(0)) + line.quantity
            names.setdefault(line.sku_id, line.merchant_sku)
        short = []
        for sku_id, quantity in needed.items():
            available = ctx.available(sku_id)
            if quantity > available:
                short.append(f"{names[sku_id]} {_fmt(quantity)}/{_fmt(available)}")
        if not short:
            return False, ""
        return True, N_("short of stock: %(items)s", items=", ".join(short))


class AmountOver(BaseRuleType):
    """The buyer paid more than ``amount`` (large orders get a second look)."""

    kind = "amount_over"
    title_zh = "金额超过"
    title_en = "Amount over"
    params = (
        ParamField(name="amount", type="number", title_zh="金额", title_en="Amount", required=True),
    )

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        amount = _param_number(params, "amount")
        if amount is None or not order.total_paid > amount:
            return False, ""
        return True, N_(
            "paid %(paid)s > %(amount)s", paid=str(order.total_paid), amount=str(amount)
        )


class AmountUnder(BaseRuleType):
    """The buyer paid less than ``amount`` (a price set wrong, a coupon abused)."""

    kind = "amount_under"
    title_zh = "金额低于"
    title_en = "Amount under"
    params = (
        ParamField(name="amount", type="number", title_zh="金额", title_en="Amount", required=True),
    )

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        amount = _param_number(params, "amount")
        if amount is None or not order.total_paid < amount:
            return False, ""
        return True, N_(
            "paid %(paid)s < %(amount)s", paid=str(order.total_paid), amount=str(amount)
        )


_KEYWORDS = ParamField(name="keywords", type="list", title_zh="关键词", title_en="Keywords")
_EXCERPT = 40


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _EXCERPT else flat[:_EXCERPT] + "..."


def _note_match(
    note: str,
    params: Mapping[str, Any],
    any_note: Callable[[str], str],
    keyword: Callable[[str], str],
) -> tuple[bool, str]:
    """Any non-blank note matches when no keywords are given; otherwise the first keyword found
    in the note (full-width and case ignored)."""
    if not note.strip():
        return False, ""
    keywords = to_items(params.get("keywords"))
    if not keywords:
        return True, any_note(_excerpt(note))
    folded = fold(note)
    for word in keywords:
        if fold(word) and fold(word) in folded:
            return True, keyword(word)
    return False, ""


class BuyerNote(BaseRuleType):
    """The buyer left a note (optionally: mentioning one of ``keywords``): a person should read
    it before shipping ("please send on the 20th", "change the colour")."""

    kind = "buyer_note"
    title_zh = "买家留言"
    title_en = "Buyer note"
    params = (_KEYWORDS,)

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        return _note_match(
            order.buyer_note,
            params,
            lambda note: N_("buyer note: %(note)s", note=note),
            lambda word: N_("buyer note mentions %(keyword)s", keyword=word),
        )


class SellerMemo(BaseRuleType):
    """The merchant's own staff left a memo on the platform (optionally with ``keywords``)."""

    kind = "seller_memo"
    title_zh = "卖家备注"
    title_en = "Seller memo"
    params = (_KEYWORDS,)

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        return _note_match(
            order.seller_memo,
            params,
            lambda memo: N_("seller memo: %(memo)s", memo=memo),
            lambda word: N_("seller memo mentions %(keyword)s", keyword=word),
        )


def normalize_phone(phone: str) -> str:
    """A phone number as blacklists store it: digits only (masked digits ``*`` kept, as
    platforms mask them), without the +86 / 0086 country prefix of a mobile number."""
    text = unicodedata.normalize("NFKC", phone or "")
    kept = "".join(ch for ch in text if ch.isdigit() or ch == "*")
    for prefix in ("0086", "86"):
        rest = kept.removeprefix(prefix)
        if rest != kept and len(rest) == 11 and rest.startswith("1"):
            return rest
    return kept


def normalize_address_text(text: str) -> str:
    """A whole address typed as one string, as blacklists store it: official province and city
    names (short forms expanded, a municipality's repeated city part dropped), no whitespace,
    full-width folded, case-insensitive. "浙江杭州西湖区文三路1号" and "浙江省 杭州市 西湖区
    文三路１号" give the same key, so a merchant's entry matches however the order spells it."""
    province, city, rest = regions.split_address(text)
    return fold((province or "") + (city or "") + rest)


def normalize_address(province: str, city: str, district: str, detail: str) -> str:
    """The blacklist key of an order's address (see :func:`normalize_address_text`); the province,
    city and district buyers often repeat at the start of the street address are not counted
    twice. Empty when there is no street address: a bare city blacklists nobody."""
    known_province = regions.normalize_province(province)
    prov = known_province or regions.clean(province)
    city_name = regions.normalize_city(city) or regions.clean(city)
    in_detail, _, detail_rest = regions.split_address(detail)
    if in_detail is not None and in_detail == known_province:
        rest = detail_rest
    else:
        rest = regions.clean(detail)
    dist = regions.clean(district)
    if dist and rest.startswith(dist) and len(rest) > len(dist):
        rest = rest[len(dist) :]
    if not rest:
        return ""
    return normalize_address_text(prov + city_name + dist + rest)


def normalize_blacklist_value(kind: str, value: str) -> str:
    """A blacklist entry as the merchant typed it, in the form :class:`Blacklist` asks about:
    the API must store entries through this, or typed variants would never match."""
    if kind == "phone":
        return normalize_phone(value)
    if kind == "address":
        return normalize_address_text(value)
    return value.strip()


class Blacklist(BaseRuleType):
    """The buyer (id or nick), the receiver's phone or the address is on the merchant's
    blacklist (``check`` limits which; all by default). The detail names which kind matched,
    never the value: reasons end up in message cards and logs, phones and addresses must not."""

    kind = "blacklist"
    title_zh = "黑名单"
    title_en = "Blacklist"
    params = (
        ParamField(
            name="check",
            type="list",
            title_zh="检查项",
            title_en="Check",
            choices=BLACKLIST_KINDS,
        ),
    )

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        kinds = to_items(params.get("check")) or list(BLACKLIST_KINDS)
        hits: list[str] = []
        if "buyer" in kinds and any(
            value.strip() and ctx.blacklisted("buyer", value.strip())
            for value in (order.buyer_id, order.buyer_nick)
        ):
            hits.append("buyer")
        phone = normalize_phone(order.receiver_phone)
        if "phone" in kinds and phone and ctx.blacklisted("phone", phone):
            hits.append("phone")
        address = normalize_address(order.province, order.city, order.district, order.detail)
        if "address" in kinds and address and ctx.blacklisted("address", address):
            hits.append("address")
        if not hits:
            return False, ""
        return True, N_("blacklisted: %(what)s", what=", ".join(hits))


class Duplicate(BaseRuleType):
    """Other open orders of the same buyer and address exist: a double submission, or orders
    to merge into one parcel."""

    kind = "duplicate"
    title_zh = "疑似重复订单"
    title_en = "Possible duplicate"

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        others = [i for i in ctx.similar_orders(order) if i != order.order_id]
        if not others:
            return False, ""
        shown = ", ".join(str(i) for i in others[:5]) + (", ..." if len(others) > 5 else "")
        return True, N_("other open orders: %(orders)s", orders=shown)


class Channel(BaseRuleType):
    """The order comes from one of ``connectors`` (a whole platform) or of
    ``channel_account_ids`` (single shops): either list matching is enough."""

    kind = "channel"
    title_zh = "渠道"
    title_en = "Channel"
    params = (
        ParamField(name="connectors", type="list", title_zh="平台", title_en="Platforms"),
        ParamField(
            name="channel_account_ids",
            type="list",
            title_zh="店铺",
            title_en="Shops",
            integer=True,
        ),
    )

    def check(self, params: Mapping[str, Any]) -> list[str]:
        if _blank(params.get("connectors")) and _blank(params.get("channel_account_ids")):
            return [N_("Give at least one platform or shop")]
        return []

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        connectors = {fold(c) for c in to_items(params.get("connectors"))}
        if fold(order.connector) in connectors:
            return True, N_("platform %(connector)s", connector=order.connector)
        shops = {int(item) for item in to_items(params.get("channel_account_ids")) if _is_int(item)}
        if order.channel_account_id is not None and order.channel_account_id in shops:
            return True, N_("shop #%(shop)s", shop=str(order.channel_account_id))
        return False, ""


class Sku(BaseRuleType):
    """Some line is one of ``merchant_skus`` (fragile goods, made to order, a recalled batch);
    SKU codes compared ignoring case and full-width."""

    kind = "sku"
    title_zh = "指定商品"
    title_en = "SKU"
    params = (
        ParamField(
            name="merchant_skus",
            type="list",
            title_zh="商家编码",
            title_en="Merchant SKUs",
            required=True,
        ),
    )

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        wanted = {fold(s) for s in to_items(params.get("merchant_skus"))}
        hits: list[str] = []
        for line in order.lines:
            if fold(line.merchant_sku) in wanted and line.merchant_sku not in hits:
                hits.append(line.merchant_sku)
        if not hits:
            return False, ""
        return True, N_("SKU %(skus)s", skus=", ".join(hits))


class QuantityOver(BaseRuleType):
    """The order has more than ``quantity`` items in all (resellers, scalpers, typing errors)."""

    kind = "quantity_over"
    title_zh = "数量超过"
    title_en = "Quantity over"
    params = (
        ParamField(
            name="quantity", type="number", title_zh="数量", title_en="Quantity", required=True
        ),
    )

    def matches(
        self, order: ReviewOrder, params: Mapping[str, Any], ctx: ReviewContext
    ) -> tuple[bool, str]:
        limit = _param_number(params, "quantity")
        total = sum((line.quantity for line in order.lines), Decimal(0))
        if limit is None or not total > limit:
            return False, ""
        return True, N_("%(total)s items > %(limit)s", total=_fmt(total), limit=_fmt(limit))


def describe(rtype: RuleType) -> dict[str, Any]:
    """A rule type as JSON for the rule editor: titles and the parameters' form fields."""
    return {
        "kind": rtype.kind,
        "title_zh": rtype.title_zh,
        "title_en": rtype.title_en,
        "params": [
            {
                "name": f.name,
                "type": f.type,
                "title_zh": f.title_zh,
                "title_en": f.title_en,
                "required": f.required,
                "choices": list(f.choices),
                "integer": f.integer,
            }
            for f in rtype.params
        ],
    }


#: The rule types every installation has, by kind.
BUILTIN_TYPES: dict[str, RuleType] = {
    t.kind: t
    for t in (
        AddressInvalid(),
        StockShort(),
        AmountOver(),
        AmountUnder(),
        BuyerNote(),
        SellerMemo(),
        Blacklist(),
        Duplicate(),
        Channel(),
        Sku(),
        QuantityOver(),
    )
}


def rule_types(extra: Mapping[str, RuleType] | None = None) -> dict[str, RuleType]:
    """The built-in types plus those of plugins. A plugin type may not replace a built-in one
    (rules saved against the built-in would silently change meaning) and must be registered
    under its own kind; either is a plugin bug, raised as ``ValueError``."""
    types = dict(BUILTIN_TYPES)
    for kind, rtype in (extra or {}).items():
        if kind in BUILTIN_TYPES:
            raise ValueError(f"rule type {kind!r} is built in and cannot be replaced")
        if rtype.kind != kind:
            raise ValueError(f"rule type {rtype.kind!r} registered as {kind!r}")
        types[kind] = rtype
    return types


# --- The engine ---------------------------------------------------------------------------


def unmapped_reason(merchant_sku: str) -> str:
    """The fixed reason of the built-in hold on an unmapped line."""
    return N_("SKU not mapped: %(sku)s", sku=merchant_sku)


def _reason(rule: Rule, rtype: RuleType, detail: str) -> str:
    reason = rule.reason.strip() or rtype.title_en
    return N_("%(reason)s (%(detail)s)", reason=reason, detail=detail) if detail else reason


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def review(
    order: ReviewOrder,
    rules: Sequence[Rule],
    ctx: ReviewContext,
    *,
    extra: Mapping[str, RuleType] | None = None,
) -> Outcome:
    """Review one order against the merchant's rules (see the module docstring for the
    semantics). Raises :class:`UnknownRuleType` or ``ValueError`` (bad action) for an active
    rule the types cannot evaluate, before evaluating any, so a broken rule set never passes
    some orders and fails on others."""
    types = rule_types(extra)
    active = [rule for rule in rules if rule.active]
    for rule in active:
        if rule.kind not in types:
            raise UnknownRuleType(rule.kind)
        if rule.action not in ACTIONS:
            raise ValueError(f"rule {rule.id}: unknown action {rule.action!r}")

    reasons: list[str] = []
    tags: list[str] = []
    matched: list[int] = []
    held = False
    for line in order.lines:
        if line.sku_id is None:
            held = True
            _add(reasons, unmapped_reason(line.merchant_sku))

    for rule in active:
        rtype = types[rule.kind]
        hit, detail = rtype.matches(order, rule.params, ctx)
        if not hit:
            continue
        matched.append(rule.id)
        if rule.action == "pass":
            break
        if rule.action == "hold":
            held = True
            _add(reasons, _reason(rule, rtype, detail))
        elif rule.tag.strip():
            _add(tags, rule.tag.strip())

    return Outcome(
        action="hold" if held else "pass",
        reasons=tuple(reasons),
        tags=tuple(tags),
        matched=tuple(matched),
    )


def validate_rule(
    kind: str,
    params: Mapping[str, Any],
    action: str,
    reason: str,
    tag: str,
    types: Mapping[str, RuleType] | None = None,
) -> dict[str, str]:
    """Errors of a rule about to be saved, by form field ("kind", "action", "reason", "tag",
    "params"), for inline display; empty when the rule is valid. ``types`` defaults to the
    built-in ones; pass :func:`rule_types` with the plugins' types."""
    types = BUILTIN_TYPES if types is None else types
    errors: dict[str, str] = {}
    rtype = types.get(kind)
    if rtype is None:
        errors["kind"] = N_("Unknown rule type: %(kind)s", kind=kind)
    if action not in ACTIONS:
        errors["action"] = N_("Action must be pass, hold or tag")
    elif action == "hold" and not (reason or "").strip():
        errors["reason"] = N_("A hold rule needs a reason")
    elif action == "tag" and not (tag or "").strip():
        errors["tag"] = N_("A tag rule needs a tag")
    if rtype is not None:
        problems = rtype.validate(params)
        if problems:
            errors["params"] = _join(*problems)
    return errors
