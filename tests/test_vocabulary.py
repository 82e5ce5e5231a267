"""Issue #12: what people type is understood, and what they are told is in words."""

from __future__ import annotations

import pytest

from ledger.entries import parse_submission
from ledger.errors import InvalidEntry
from ledger.kinds.formats import FORMAT_WORDS
from ledger.units import parse_purity


@pytest.mark.parametrize(
    ("typed", "kept"),
    [("99.5%", "99.5"), ("99.5", "99.5"), ("0.995", "99.5"), ("99.50 %", "99.5"), ("100", "100"),
     ("0.9999995", "99.99995"), ("0.5%", "0.5"), ("1", "1")],
)
def test_purity_as_percent_or_fraction(typed: str, kept: str) -> None:
    assert parse_purity(typed, field="entry.purity") == kept


@pytest.mark.parametrize("typed", ["101", "100.5%", "abc", "-1", "0.99999995%", "1e2", ""])
def test_purity_refusals_name_the_field(typed: str) -> None:
    with pytest.raises(InvalidEntry) as info:
        parse_purity(typed, field="entry.accepted_purity")
    assert info.value.field == "entry.accepted_purity"


@pytest.mark.parametrize(
    ("field", "value"),
    [("site", "site-lower"), ("owner", "JP RESERVE"), ("created_at", "2026-11-29 10:00"),
     ("id", "not-an-id"), ("accepted_purity", "101"), ("author", "Olga")],
)
def test_format_errors_never_show_a_regular_expression(field: str, value: str) -> None:
    body = {"kind": "stock.receipt", "id": "ab" * 16, "author": "olga", "created_at": "2026-11-29T10:00:00Z",
            "site": "SITE-A", "owner": "JP", "lot": "LOT-1", "quantity": 5, "occurred_at": "2026-11-29T10:00:00Z",
            "supplier": "S", "accepted_purity": "99.5", "reference": "DN-1", field: value}
    with pytest.raises(InvalidEntry) as info:
        parse_submission({"entry": body, "sigs": [{"pub": "00" * 32, "sig": "A" * 86 + "=="}]}, log_id="t/l")
    message = str(info.value)
    assert info.value.field == f"entry.{field}"
    assert "regex" not in message and "^" not in message and "$" not in message, message
    assert any(words in message for words in FORMAT_WORDS.values()), message


def test_every_pattern_of_the_entry_kinds_has_words() -> None:
    """A new constrained field cannot slip in without its words."""
    import msgspec.inspect as mi

    from ledger.entries import Leaf

    patterns: set[str] = set()
    seen: set[int] = set()

    def walk(t: mi.Type) -> None:
        if id(t) in seen:
            return
        seen.add(id(t))
        if isinstance(t, mi.StrType) and t.pattern:
            patterns.add(t.pattern)
        for name in ("types", "fields", "item_type", "key_type", "value_type", "item_types"):
            value = getattr(t, name, None)
            for child in value if isinstance(value, tuple) else [value] if value is not None else []:
                walk(child.type if isinstance(child, mi.Field) else child)
        if isinstance(t, mi.StructType | mi.TypedDictType | mi.DataclassType):
            for f in t.fields:
                walk(f.type)

    walk(mi.type_info(Leaf))
    assert len(patterns) >= 10
    assert patterns <= set(FORMAT_WORDS), patterns - set(FORMAT_WORDS)


def test_free_text_is_checked_in_optional_fields_and_lists_of_evidence() -> None:
    """The issue #8 text rule reaches an optional field and an item of a list."""
    base = {"id": "ab" * 16, "author": "olga", "created_at": "2026-11-29T10:00:00Z"}
    receipt = {**base, "kind": "stock.receipt", "site": "SITE-A", "owner": "JP", "lot": "LOT-1", "quantity": 5,
               "occurred_at": "2026-11-29T10:00:00Z", "supplier": "S", "accepted_purity": "99.5",
               "reference": "DN-1", "purity_deviation_reason": "re-assay\u202e"}
    request = {**base, "kind": "release.requested", "owner": "JP", "material": "GA", "quantity": 5,
               "recipient": "R", "regime": "emergency_release", "purpose": "p",
               "evidence": [{"type": "exhaustion_declaration", "document_sha256": "ee" * 32},
                            {"type": "override", "reason": "magnets\u0000"}]}
    for body, field in ((receipt, "entry.purity_deviation_reason"), (request, "entry.evidence[1].reason")):
        with pytest.raises(InvalidEntry) as info:
            parse_submission({"entry": body, "sigs": [{"pub": "00" * 32, "sig": "A" * 86 + "=="}]}, log_id="t/l")
        assert info.value.field == field, info.value
