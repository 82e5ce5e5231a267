"""Canonical JSON (RFC 8785, JCS) for signing and hashing.

The reference encoder is Trail of Bits' ``rfc8785`` package. It is pure Python and costs
~30 us for a typical entry, which would make the verifier canonicalisation-bound rather
than signature-bound. So we encode with orjson (sorted keys, compact) and keep its output
only when it is pure ASCII: for ASCII text, integers in the I-JSON range, booleans and
null, orjson and RFC 8785 produce identical bytes (same key order, since ASCII code points
sort as UTF-16 code units do, RFC 8785 section 3.2.3; same string escapes, section
3.2.2.2), which ``tests/test_canonical.py`` checks property by property. Anything else
(non-ASCII text, whose key order may differ for astral characters; floats, which JCS
writes in ECMAScript form) goes through ``rfc8785``. Entries never contain floats (every
number in the schema is an integer), so for them the fast path is the only path.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import rfc8785

from ledger.errors import InvalidEntry

_OPTS = orjson.OPT_SORT_KEYS
MAX_SAFE_INT = 2**53 - 1  # I-JSON (RFC 7493 section 2.2); RFC 8785 numbers are doubles
# In compact JSON a number token follows "[", "," or a key's '":' (or starts the text,
# checked separately), so this finds every float token and every integer of 16 digits or
# more (possibly beyond 2**53, which RFC 8785 refuses). Look-alikes inside strings only
# cost the slow path. (An earlier pattern also matched ':16.' inside every RFC 3339 time,
# sending every entry down the slow path; bench/README.md has the numbers.)
_SLOW_NUMBER = re.compile(rb'(?:[\[,]|":)-?[0-9](?:[0-9]*[.eE]|[0-9]{15})')
_NUMBER_START = frozenset(b"-0123456789")


def canonical(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value made of dicts, lists, str, int, bool and None."""
    try:
        fast = orjson.dumps(value, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidEntry("value cannot be encoded as JSON") from exc
    if fast.isascii() and fast[0] not in _NUMBER_START and not _SLOW_NUMBER.search(fast):
        return fast
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as exc:  # rfc8785 raises several unrelated types
        raise InvalidEntry("value cannot be canonicalised (RFC 8785)") from exc


def canonical_of_checked(value: dict[str, Any]) -> bytes:
    """:func:`canonical` of an object a strict schema has already checked to hold no
    float and no integer beyond 2**53 (the entry schemas: ``ledger.kinds.base.Int53``):
    the number scan, the costliest part of the fast path for the verifier (issue #10),
    cannot find anything, so it is skipped; non-ASCII text still goes through ``rfc8785``."""
    try:
        fast = orjson.dumps(value, option=_OPTS)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise InvalidEntry("value cannot be encoded as JSON") from exc
    return fast if fast.isascii() else canonical(value)


def parse_json(data: bytes) -> Any:
    """Parse JSON strictly: invalid UTF-8 or syntax is an :class:`InvalidEntry`."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidEntry(f"not valid JSON: {exc.msg}") from exc


def require_canonical(data: bytes, *, what: str = "value") -> Any:
    """Parse ``data`` and insist it is already in canonical form; return the value.

    A canonical form rules out parser differentials such as duplicate keys: what the
    author signed is exactly what every verifier reads.
    """
    value = parse_json(data)
    if canonical(value) != data:
        raise InvalidEntry(f"{what} is not in RFC 8785 canonical form")
    return value
