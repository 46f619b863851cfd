"""Values the inventory hands to other parts of the system through kernel hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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
