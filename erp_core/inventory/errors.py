"""Errors of the inventory service (cheap to import: the API's error handlers use them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class InventoryError(ValueError):
    """Invalid inventory input (negative quantity, unknown SKU, wrong lot, serial reused ...).

    Raised before anything is written: the caller's transaction is unchanged and may go on.
    The JSON API answers 422.
    """

    status_code = 422

    def problem(self) -> dict[str, Any]:
        """Extra members of the problem document the API answers with."""
        return {}


class InventoryConflict(InventoryError):
    """The request is valid but the stock or the move is not in a state that allows it (a
    move already done, a count below what is reserved). The JSON API answers 409."""

    status_code = 409


class ShortageError(InventoryConflict):
    """Not enough available stock to reserve or move ``requested`` (and partial was not asked
    for). Nothing was reserved. ``available`` is what could have been taken."""

    def __init__(self, sku_code: str, requested: Decimal, available: Decimal, where: str) -> None:
        self.sku_code = sku_code
        self.requested = requested
        self.available = available
        self.shortage = requested - available
        self.where = where
        super().__init__(
            f"not enough stock of {sku_code} in {where}: requested {_fmt(requested)}, "
            f"available {_fmt(available)}, short by {_fmt(self.shortage)}"
        )

    def problem(self) -> dict[str, Any]:
        return {
            "sku": self.sku_code,
            "requested": _fmt(self.requested),
            "available": _fmt(self.available),
            "shortage": _fmt(self.shortage),
        }


def _fmt(d: Decimal) -> str:
    """``Decimal('5.0000')`` -> ``'5'``, ``Decimal('1.2500')`` -> ``'1.25'``."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"
