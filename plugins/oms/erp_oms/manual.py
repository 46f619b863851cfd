"""Orders people enter or correct: manual orders, address fixes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.channels.types import Address, OrderLine, OrderStatus
from erp_core.channels.types import Order as ChannelOrder
from erp_core.i18n import N_
from erp_core.inventory.models import Sku
from erp_oms import service as svc
from erp_oms.models import OPEN_STATES, Order


def create_manual(session: Session, data: dict[str, Any], *, actor: str) -> Order:
    """A manual order, stored like a platform order of no shop (``source="manual"``)."""
    number = str(data["number"]).strip()
    if session.scalar(
        select(Order.id).where(
            Order.channel_account_id.is_(None), Order.platform_order_id == number
        )
    ):
        raise svc.OmsError(f"an order numbered {number} exists already")
    codes = [str(ln["sku"]) for ln in data["lines"]]
    known = set(session.scalars(select(Sku.code).where(Sku.code.in_(codes))))
    unknown = sorted(set(codes) - known)
    if unknown:
        raise svc.OmsError(f"unknown SKU code(s): {', '.join(unknown)}")
    now = datetime.now(UTC)
    lines = tuple(
        OrderLine(
            line_id=str(i + 1),
            platform_sku_id="",
            merchant_sku=str(ln["sku"]),
            title=str(ln["sku"]),
            quantity=int(Decimal(ln["quantity"])) if Decimal(ln["quantity"]) % 1 == 0 else 1,
            unit_price=Decimal(ln["unit_price"]),
            paid=Decimal(ln["unit_price"]) * Decimal(ln["quantity"]),
        )
        for i, ln in enumerate(data["lines"])
    )
    if any(Decimal(ln["quantity"]) % 1 for ln in data["lines"]):
        raise svc.OmsError("quantities of a manual order are whole units")
    shipping = Decimal(data.get("shipping_fee") or 0)
    order = ChannelOrder(
        order_id=number,
        account="manual",
        status=OrderStatus.PAID,
        raw_status="MANUAL",
        buyer_nick=str(data.get("buyer") or ""),
        receiver=Address(
            name=data["receiver_name"],
            phone=data["receiver_phone"],
            province=data["province"],
            city=data["city"],
            district=data["district"],
            detail=data["address"],
        ),
        buyer_note=str(data.get("note") or ""),
        lines=lines,
        shipping_fee=shipping,
        total_paid=sum((ln.paid for ln in lines), Decimal(0)) + shipping,
        created_at=now,
        paid_at=now,
        modified_at=now,
    )
    row = svc.ingest(session, None, "", order)
    row.source = "manual"
    svc.event(session, row, "created", N_("entered by hand"), actor=actor)
    session.flush()
    return row


ADDRESS_FIELDS = ("receiver_name", "receiver_phone", "province", "city", "district", "address")


def fix_address(session: Session, row: Order, changes: dict[str, Any], *, actor: str) -> None:
    """Correct the receiver of an order that has not shipped. A held order goes back to
    review; planned parcels are dropped (the new address may route elsewhere)."""
    if row.status not in OPEN_STATES:
        raise svc.OmsError(f"order {row.id} is {row.status}; its address can no longer change")
    unknown = sorted(set(changes) - set(ADDRESS_FIELDS))
    if unknown:
        raise svc.OmsError(f"unknown field(s) {', '.join(unknown)}")
    if not changes:
        raise svc.OmsError("nothing to change")
    before = {k: getattr(row, k) for k in changes}
    for k, v in changes.items():
        setattr(row, k, str(v).strip())
    row.address_key = svc._address_key(row)
    svc._drop_parcels(session, row)
    if row.status in ("held", "routed", "reserved", "reviewed"):
        row.status, row.hold_code, row.hold_reason = "new", "", ""
    svc.event(
        session,
        row,
        "address",
        "; ".join(f"{k}: {before[k]} → {changes[k]}" for k in changes),
        actor=actor,
    )
    session.flush()


# --- import -----------------------------------------------------------------------------------

#: The columns of an order import file (a header row names them; order does not matter).
IMPORT_COLUMNS = (
    "number",
    "buyer",
    "receiver_name",
    "receiver_phone",
    "province",
    "city",
    "district",
    "address",
    "sku",
    "quantity",
    "unit_price",
    "shipping_fee",
    "note",
)
REQUIRED_COLUMNS = frozenset(
    {"number", "receiver_name", "receiver_phone", "province", "city", "district", "address"}
    | {"sku", "quantity", "unit_price"}
)
#: Chinese headers merchants' spreadsheets use, accepted for the English ones.
HEADER_ALIASES = {
    "订单号": "number",
    "买家": "buyer",
    "收货人": "receiver_name",
    "手机": "receiver_phone",
    "电话": "receiver_phone",
    "省": "province",
    "市": "city",
    "区": "district",
    "详细地址": "address",
    "商家编码": "sku",
    "数量": "quantity",
    "单价": "unit_price",
    "运费": "shipping_fee",
    "备注": "note",
}
MAX_IMPORT_ROWS = 5000


def decode_csv(data: bytes) -> str:
    """CSV files come from Excel in UTF-8 (with a BOM) or, on Chinese Windows, in GBK."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise svc.OmsError("the file is neither UTF-8 nor GBK text")


def parse_import(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Orders (one per ``number``, its rows its lines) and the problems found, by row number.
    Nothing is stored here: the caller stores only a file without problems."""
    import csv
    import io

    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return [], ["the file is empty"]
    names = [HEADER_ALIASES.get(h.strip(), h.strip().lower()) for h in header]
    unknown = sorted({n for n in names if n and n not in IMPORT_COLUMNS})
    missing = sorted(REQUIRED_COLUMNS - set(names))
    problems = []
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown)}")
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if problems:
        return [], problems
    orders: dict[str, dict[str, Any]] = {}
    for n, raw in enumerate(reader, start=2):
        if n - 1 > MAX_IMPORT_ROWS:
            problems.append(f"more than {MAX_IMPORT_ROWS} rows: split the file")
            break
        if not any(cell.strip() for cell in raw):
            continue
        row = {k: (raw[i].strip() if i < len(raw) else "") for i, k in enumerate(names) if k}
        blank = sorted(k for k in REQUIRED_COLUMNS if not row.get(k))
        if blank:
            problems.append(f"row {n}: {', '.join(blank)} empty")
            continue
        try:
            qty, price = Decimal(row["quantity"]), Decimal(row["unit_price"])
            fee = Decimal(row.get("shipping_fee") or 0)
        except ArithmeticError:
            problems.append(f"row {n}: quantity, unit_price and shipping_fee must be numbers")
            continue
        if qty <= 0 or qty % 1 or price < 0 or fee < 0:
            problems.append(f"row {n}: quantity must be a whole number above 0, prices >= 0")
            continue
        order = orders.setdefault(
            row["number"],
            {
                k: row.get(k, "")
                for k in IMPORT_COLUMNS
                if k not in ("sku", "quantity", "unit_price")
            }
            | {"lines": [], "shipping_fee": fee},
        )
        order["lines"].append({"sku": row["sku"], "quantity": qty, "unit_price": price})
    return list(orders.values()), problems


def import_orders(session: Session, data: bytes, *, actor: str) -> list[Order]:
    """Import a CSV file of orders: all of them, or (on any problem) none."""
    orders, problems = parse_import(decode_csv(data))
    if not problems and not orders:
        problems = ["the file holds no order"]
    stored: list[Order] = []
    if not problems:
        for data_ in orders:
            try:
                with session.begin_nested():
                    stored.append(create_manual(session, data_, actor=actor))
            except svc.OmsError as exc:
                problems.append(f"order {data_['number']}: {exc}")
    if problems:
        raise svc.OmsError("; ".join(problems[:20]))
    for row in stored:
        row.source = "import"
    session.flush()
    return stored
