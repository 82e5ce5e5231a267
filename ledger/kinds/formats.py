"""What each constrained text field looks like, in words (issue #12: an error message
never shows a raw regular expression). msgspec reports a pattern mismatch with the
pattern itself; ``ledger.entries`` replaces it with these words."""

from __future__ import annotations

import typing
from typing import Any, Final

import msgspec

from ledger.kinds.base import B64Sig, Code, EntryId, Hex64, LogId, Time, UserName
from ledger.kinds.release import Amount, Currency
from ledger.kinds.stock import Country, Percent


def _pattern(alias: Any) -> str:
    meta = typing.get_args(alias)[1]
    assert isinstance(meta, msgspec.Meta) and meta.pattern is not None
    return meta.pattern


FORMAT_WORDS: Final[dict[str, str]] = {
    _pattern(Hex64): "64 lowercase hexadecimal digits",
    _pattern(EntryId): "an entry id: 32 lowercase hexadecimal digits",
    _pattern(UserName): "a user name: lowercase letters, digits, '.', '_' or '-', at most 64",
    _pattern(Code): "a code: capital letters, digits, '.', '_' or '-', at most 64 (e.g. SITE-7F3K)",
    _pattern(Time): "a UTC time in RFC 3339 with Z, e.g. 2026-11-29T10:00:00Z",
    _pattern(B64Sig): "an Ed25519 signature in standard base64 (88 characters)",
    _pattern(LogId): "a log id: letters, digits, '.', '/', '_' or '-', at most 128",
    _pattern(Amount): "a decimal amount such as 1234.5 (at most 6 decimals)",
    _pattern(Currency): "an ISO 4217 currency code such as USD",
    _pattern(Country): "an ISO 3166-1 two-letter country code such as JP",
    _pattern(Percent): "a percentage from 0 to 100 such as 99.5 (at most 6 decimals)",
}


def describe_pattern(pattern: str) -> str:
    """The words for a pattern, never the pattern itself."""
    return FORMAT_WORDS.get(pattern, "a value in the documented format")
