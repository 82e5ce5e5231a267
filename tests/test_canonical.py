"""Canonical JSON: our fast path must agree byte for byte with the RFC 8785 library."""

from __future__ import annotations

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_SAFE_INT, canonical, require_canonical
from ledger.errors import InvalidEntry

any_text = st.text(max_size=12)
ascii_text = st.text(alphabet=st.characters(max_codepoint=127), max_size=12)


def values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | text
    return st.recursive(
        scalars,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(text, c, max_size=4),
        max_leaves=25,
    )


@settings(max_examples=3000)
@given(values(ascii_text))
def test_ascii_values_match_rfc8785(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=1500)
@given(values(any_text))
def test_any_text_matches_rfc8785(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


def test_astral_keys_sort_by_utf16_code_units() -> None:
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FB01; by code point it is after.
    value = {"\U0001f600": 1, "\ufb01": 2}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value).index("\U0001f600".encode()) < canonical(value).index("\ufb01".encode())


@pytest.mark.parametrize(
    "data",
    [b'{"b":1,"a":2}', b'{"a":1,"a":2}', b'{"a": 1}', b'{"a":1.0}', b'{"a":"\\u0041"}'],
)
def test_non_canonical_input_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidEntry):
        require_canonical(data)


@pytest.mark.parametrize("value", [{"q": 2**53}, {"q": -(2**60)}, {"q": 2**53, "name": "é"}])
def test_integer_outside_ijson_range_is_refused(value: object) -> None:
    with pytest.raises(InvalidEntry):
        canonical(value)


@settings(max_examples=1000)
@given(values(ascii_text | st.floats(allow_nan=False, allow_infinity=False).map(str)))
def test_numbers_as_floats_match_rfc8785(value: object) -> None:
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=1000)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT), max_size=5))
def test_floats_take_the_rfc8785_path(value: list[float]) -> None:
    assert canonical(value) == rfc8785.dumps(value)
