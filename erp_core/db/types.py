"""Exact decimal columns for money, quantities and rates.

SQLite has no decimal type (SQLAlchemy's ``Numeric`` goes through floats there), so amounts
are stored as integers scaled by ``10**scale`` on every backend: sums in SQL stay exact and
values come back as :class:`~decimal.Decimal`. A value with more decimals than the column
holds is refused, never rounded silently.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class ScaledDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as ``BIGINT`` holding ``value * 10**scale``."""

    impl = BigInteger
    cache_ok = True

    def __init__(self, scale: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale = scale
        self._factor = Decimal(10) ** scale
        self._quantum = Decimal(1).scaleb(-scale)

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if type(value) is Decimal:
            d = value
        elif isinstance(value, float):
            raise TypeError("floats are not accepted for exact decimal columns; use Decimal")
        else:
            try:
                d = Decimal(value)
            except (InvalidOperation, TypeError):
                raise ValueError(f"{value!r} is not a decimal number") from None
        if not d.is_finite():
            raise ValueError(f"{value!r} is not a finite number")
        scaled = d * self._factor
        whole = int(scaled)
        if whole != scaled:
            raise ValueError(f"{d} has more than {self.scale} decimal places")
        return whole

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        # exactly ``scale`` decimals (1.0000 for 10000 at scale 4), as quantizing would give
        return Decimal(int(value)).scaleb(-self.scale)

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return self


#: Money amounts (4 decimal places: CNY fen with room for unit prices such as 0.0125).
Money = ScaledDecimal(4)
#: Stock quantities (4 decimal places: kilograms to the gram, metres to the 0.1 mm).
Quantity = ScaledDecimal(4)
#: Exchange rates (10 decimal places).
Rate = ScaledDecimal(10)
