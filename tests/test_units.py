from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import InvalidEntry
from ledger.units import format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "grams"),
    [("12.5 t", 12_500_000), ("250kg", 250_000), ("1 g", 1), ("0.001 kg", 1), ("100000 lb", 45_359_237), ("0 t", 0)],
)
def test_exact_conversion(text: str, grams: int) -> None:
    assert parse_quantity(text) == grams


@pytest.mark.parametrize("text", ["1 lb", "0.5 g", "0.0001 kg", "1.0000001 t"])
def test_inexact_quantities_are_refused_not_rounded(text: str) -> None:
    with pytest.raises(InvalidEntry, match="rounded"):
        parse_quantity(text)


@pytest.mark.parametrize("text", ["-5 kg", "5", "kg", "1e3 kg", "5 litres", "5 m3", "1,5 t", ""])
def test_malformed_or_foreign_units_are_refused(text: str) -> None:
    with pytest.raises(InvalidEntry) as exc:
        parse_quantity(text, field="entry.quantity")
    assert exc.value.field == "entry.quantity"


@given(st.integers(min_value=0, max_value=10**15))
def test_format_round_trips(grams: int) -> None:
    assert parse_quantity(format_quantity(grams)) == grams
