"""Values the inventory hands to other parts of the system through kernel hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

#: What a valued stock movement was, from the point of view of the books.
ValuationKind = Literal[
    "receipt",  # goods in from a supplier: inventory up, goods received not invoiced (GR/IR)
    "delivery",  # goods out to a customer: cost of goods sold up, inventory down
    "adjustment_gain",  # a count found more than the books: inventory up, gain
    "adjustment_loss",  # a count found less: loss, inventory down
    "scrap",  # goods written off: scrap loss, inventory down
    "customer_return",  # goods back from a customer: inventory up, COGS down
    "supplier_return",  # goods back to a supplier: GR/IR down, inventory down
]


@dataclass(frozen=True, slots=True, kw_only=True)
class StockValuation:
    """The value of one done stock move that changes the books.

    ``value`` is positive, in the tenant's currency, quantity times the unit cost used
    (moving average). Moves between internal locations (transfers) are not valued.
    """

    move_id: int
    kind: ValuationKind
    sku_code: str
    warehouse_code: str | None
    quantity: Decimal
    unit_cost: Decimal
    value: Decimal
    currency: str
    occurred_at: datetime
    source_type: str | None = None
    source_id: str | None = None
    #: Extra posting dimensions the caller knows (channel, store, order).
    dimensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StockChange:
    """Quantities of one SKU in one warehouse after a change (for channel stock push)."""

    sku_id: int
    sku_code: str
    warehouse_id: int
    warehouse_code: str
    on_hand: Decimal
    reserved: Decimal
    available: Decimal


# --- results of the service API --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReservedLine:
    """Part of a reservation: one move holding ``quantity`` on one quant (location, lot)."""

    move_id: int
    location_id: int
    lot_id: int | None
    quantity: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """What :func:`erp_core.inventory.service.reserve` reserved.

    ``reserved`` is less than ``requested`` only when partial reservation was asked for; the
    difference is ``shortage``. Each line is a move in state ``reserved``.
    """

    sku_id: int
    sku_code: str
    requested: Decimal
    reserved: Decimal
    shortage: Decimal
    lines: tuple[ReservedLine, ...]

    @property
    def move_ids(self) -> list[int]:
        return [line.move_id for line in self.lines]


@dataclass(frozen=True, slots=True, kw_only=True)
class StockLevel:
    """On hand, reserved and available stock for one group of quants (see ``group_by``)."""

    sku_id: int
    sku_code: str
    warehouse_id: int | None = None
    warehouse_code: str | None = None
    location_id: int | None = None
    location_path: str | None = None
    lot_id: int | None = None
    lot_code: str | None = None
    expiry: date | None = None
    on_hand: Decimal
    reserved: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class CountLine:
    """One line of an inventory count: ``counted`` units of ``sku`` (and ``lot``) found at
    ``location`` (a path, absolute or relative to the warehouse; None: the warehouse's
    ``STOCK``)."""

    sku: str | int
    counted: Decimal | int | str
    location: str | int | None = None
    lot: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CountedLine:
    """The outcome of one count line: the difference was booked by ``move_id`` (None when
    the count matched)."""

    sku_code: str
    location_path: str
    lot_code: str | None
    expected: Decimal
    counted: Decimal
    difference: Decimal
    move_id: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CountResult:
    """What an inventory count changed."""

    warehouse_code: str
    lines: tuple[CountedLine, ...]

    @property
    def gains(self) -> Decimal:
        return sum((c.difference for c in self.lines if c.difference > 0), Decimal(0))

    @property
    def losses(self) -> Decimal:
        return sum((-c.difference for c in self.lines if c.difference < 0), Decimal(0))


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferResult:
    """A transfer between warehouses: the moves into transit (done) and out of transit
    (reserved on the transit stock until received, or done)."""

    outgoing: tuple[int, ...]
    incoming: tuple[int, ...]
