"""Exact quantity input: decimal strings with a unit, converted to integer base units.

Quantities in the log are integers in the material's base unit (grams). A person types
"12.5 t" or "250 kg"; the conversion is exact (``fractions.Fraction``) and anything that
would need rounding is refused, never rounded (issue #3). Only mass units exist so far;
a unit of another category is refused by name.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from ledger.canonical import MAX_SAFE_INT
from ledger.errors import InvalidEntry

# Grams per unit. The avoirdupois pound is exactly 453.59237 g (1959 international yard
# and pound agreement).
MASS_UNITS: dict[str, Fraction] = {
    "g": Fraction(1),
    "kg": Fraction(1000),
    "t": Fraction(1_000_000),
    "lb": Fraction(45_359_237, 100_000),
}
_QTY = re.compile(r"\s*([0-9]{1,18}(?:\.[0-9]{1,12})?)\s*([A-Za-z]+)\s*")


def parse_quantity(text: str, *, field: str = "quantity", base_unit: str = "g") -> int:
    """``"12.5 t"`` -> ``12500000`` (grams). Refuses negative, inexact and unknown input."""
    if base_unit != "g":
        raise InvalidEntry(f"materials in '{base_unit}' are not supported yet", field=field)
    m = _QTY.fullmatch(text)
    if not m:
        raise InvalidEntry(
            "write a quantity as a decimal number and a unit, e.g. '12.5 t'", field=field
        )
    number, unit = m.groups()
    factor = MASS_UNITS.get(unit.lower() if unit != "t" else unit)
    if factor is None:
        raise InvalidEntry(
            f"unknown unit '{unit}': use one of {', '.join(MASS_UNITS)}", field=field
        )
    grams = Fraction(Decimal(number)) * factor
    if grams.denominator != 1:
        raise InvalidEntry(
            f"{number} {unit} is not a whole number of grams ({float(grams):.6f} g); it would have to be rounded",
            field=field,
        )
    value = int(grams)
    if value > MAX_SAFE_INT:
        raise InvalidEntry("quantity is too large", field=field)
    return value


# The unit quantities are shown in, per base unit (issue #12, "human units out"): one unit
# for every figure of a material, so columns compare at a glance; reserves are counted in
# tonnes (the CRMA Art. 22 aggregate asks for tonnes). Exact: a gram is 0.000001 t.
DISPLAY_UNITS: dict[str, tuple[str, int]] = {"g": ("t", 1_000_000)}


def display_unit(base_unit: str = "g") -> str:
    return DISPLAY_UNITS[base_unit][0]


def format_quantity(grams: int | str, *, base_unit: str = "g") -> str:
    """Grams in the material's display unit, exactly: ``378686774`` -> ``"378.686774 t"``.
    A value a read already shows in display units (a string) is returned as it is.

    The one formatter for quantities people read: responses, refusal messages and the
    offline bundle answers (issue #12). Integer arithmetic only, so the text is the same on
    every machine and Decimal context (the verifier repeats refusal messages)."""
    if isinstance(grams, str):
        return grams
    unit, factor = DISPLAY_UNITS[base_unit]
    whole, rest = divmod(abs(grams), factor)
    sign = "-" if grams < 0 else ""
    decimals = len(str(factor)) - 1  # factors are powers of ten: every quantity is exact
    fraction = str(rest).rjust(decimals, "0").rstrip("0") if rest else ""
    return f"{sign}{whole}{'.' + fraction if fraction else ''} {unit}"


_PURITY = re.compile(r"\s*([0-9]{1,3}(?:\.[0-9]{1,12})?)\s*(%?)\s*")


def parse_purity(text: str, *, field: str = "purity") -> str:
    """A purity as the log keeps it, a percentage (``"99.5"``), from what people write:
    ``"99.5%"``, ``"99.5"`` or the fraction ``"0.995"`` (a number below 1 without ``%`` is
    a fraction; issue #12). Exact: more than 6 decimals of a percent is refused."""
    m = _PURITY.fullmatch(text)
    if not m:
        raise InvalidEntry(
            "write a purity as a percentage (99.5 or 99.5%) or a fraction (0.995)", field=field
        )
    number, percent_sign = m.groups()
    value = Decimal(number)
    if not percent_sign and value < 1 and "." in number:
        value *= 100
    if value > 100:
        raise InvalidEntry(f"a purity of {text.strip()} is more than 100 %", field=field)
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise InvalidEntry("a purity has at most 6 decimals of a percent", field=field)
    return format(value.normalize(), "f")
