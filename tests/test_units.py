from __future__ import annotations

import ast
import decimal
import re
from itertools import pairwise
from pathlib import Path

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


# -- human units out: one formatter for every stated quantity (issue #12) ----------------

# A count of grams written bare in a message: "1000000 g", "{x} g" (a placeholder followed
# by " g"). Shared with the refusal tests, which assert no refusal text matches it.
BARE_GRAMS = re.compile(r"\b\d+ g\b")


@pytest.mark.parametrize(
    ("grams", "shown"),
    [(0, "0 t"), (1, "0.000001 t"), (500_000, "0.5 t"), (1_000_000, "1 t"), (10_000_000, "10 t"),
     (378_686_774, "378.686774 t"), (-500_000, "-0.5 t"), (2**53 - 1, "9007199254.740991 t")],
)
def test_format_is_exact_in_the_display_unit(grams: int, shown: str) -> None:
    assert format_quantity(grams) == shown


def test_format_does_not_depend_on_the_decimal_context() -> None:
    # Refusal messages are part of the verifier's output: the same on every machine.
    with decimal.localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = decimal.ROUND_FLOOR
        assert format_quantity(378_686_774) == "378.686774 t"


def _rule_modules() -> list[Path]:
    root = Path(__file__).resolve().parent.parent / "ledger"
    return [*sorted((root / "rules").glob("*.py")), root / "reducer.py"]


def _bare_gram_templates(source: str) -> list[str]:
    """String literals that state grams bare: a literal "<digits> g", or a placeholder
    followed by " g" in an f-string."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            for before, part in pairwise(parts):
                if (isinstance(before, ast.FormattedValue) and isinstance(part, ast.Constant)
                        and isinstance(part.value, str) and re.match(r"\s*g\b", part.value)):
                    found.append(ast.unparse(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and BARE_GRAMS.search(node.value):
            found.append(node.value)
    return found


def test_the_scanner_sees_a_bare_gram_template() -> None:
    # The scan below must be able to fail.
    assert _bare_gram_templates('f"holds only {q} g of lot {lot}"')
    assert _bare_gram_templates('"holds only 5 g"')
    assert not _bare_gram_templates('f"holds only {format_quantity(q)} of lot {lot}"')


@pytest.mark.parametrize("path", _rule_modules(), ids=lambda p: p.name)
def test_no_rule_message_states_bare_grams(path: Path) -> None:
    assert _bare_gram_templates(path.read_text(encoding="utf-8")) == []
