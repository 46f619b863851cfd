"""The exact decimal column type: what it stores and gives back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erp_core.db.types import ScaledDecimal

NO_DIALECT: Any = None  # the type does not look at the dialect


@given(scale=st.sampled_from([0, 2, 4, 10]), stored=st.integers(-(2**63), 2**63 - 1))
def test_a_stored_integer_comes_back_with_exactly_scale_decimals(scale: int, stored: int):
    t = ScaledDecimal(scale)
    value = t.process_result_value(stored, NO_DIALECT)
    assert isinstance(value, Decimal)
    assert value == Decimal(stored) / Decimal(10) ** scale
    assert value.as_tuple().exponent == -scale  # 1.0000, not 1, at scale 4
    assert str(value) == str(
        (Decimal(stored) / Decimal(10) ** scale).quantize(Decimal(1).scaleb(-scale))
    )
    assert t.process_bind_param(value, NO_DIALECT) == stored


@given(
    scale=st.sampled_from([0, 2, 4]),
    value=st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**12), max_value=10**12),
)
def test_a_value_with_more_decimals_than_the_column_is_refused_never_rounded(
    scale: int, value: Decimal
):
    t = ScaledDecimal(scale)
    fits = value == value.quantize(Decimal(1).scaleb(-scale))
    if fits:
        assert t.process_bind_param(value, NO_DIALECT) == int(value.scaleb(scale))
    else:
        with pytest.raises(ValueError, match="decimal places"):
            t.process_bind_param(value, NO_DIALECT)


def test_other_inputs():
    t = ScaledDecimal(4)
    assert t.process_bind_param(None, NO_DIALECT) is None
    assert t.process_result_value(None, NO_DIALECT) is None
    assert t.process_bind_param("2.5", NO_DIALECT) == 25000
    assert t.process_bind_param(3, NO_DIALECT) == 30000
    with pytest.raises(TypeError, match="floats"):
        t.process_bind_param(0.5, NO_DIALECT)
    with pytest.raises(ValueError, match="not a decimal number"):
        t.process_bind_param("abc", NO_DIALECT)
    with pytest.raises(ValueError, match="not a finite number"):
        t.process_bind_param(Decimal("Infinity"), NO_DIALECT)
    with pytest.raises(ValueError, match="not a finite number"):
        t.process_bind_param(Decimal("NaN"), NO_DIALECT)
