"""Path, query and header parameters, validated at the edge (issue #8 item 3).

Every code, id, seq, limit and year a route takes is one of these annotated types, so a
value the ledger could never hold (a NUL, a control character, an integer past what the
database stores) is a 422 naming the parameter before any query runs, on SQLite and
PostgreSQL alike; a well-formed code that names nothing is the route's usual 404.

The patterns are the entry schemas' own (``ledger.kinds.base``), so a parameter accepts
exactly what an entry may name. Integers are bounded to 0..2^53-1, the range every JSON
client counts exactly (RFC 8259 section 6) and well inside a 64-bit column.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import Header, Path, Query

from ledger.kinds.base import Code, EntryId, Hex64, UserName
from ledger.store.reports import YEAR_MAX, YEAR_MIN

MAX_SAFE_INT = 2**53 - 1


def _pattern(annotated: Any) -> str:
    """The regular expression of a msgspec-annotated string type."""
    pattern = get_args(annotated)[1].pattern
    assert isinstance(pattern, str)
    return pattern


CODE = _pattern(Code)
ENTRY_ID = _pattern(EntryId)
KEY_ID = _pattern(Hex64)
USER_NAME = _pattern(UserName)
# Printable ASCII: stored and compared as given, so no control characters.
IDEMPOTENCY_KEY = r"^[\x20-\x7e]{1,128}$"

CodePath = Annotated[str, Path(pattern=CODE, max_length=64, description="a code: A-Z 0-9 . _ -")]
EntryIdPath = Annotated[
    str, Path(pattern=ENTRY_ID, max_length=32, description="an entry id: 32 hex digits")
]
KeyIdPath = Annotated[str, Path(pattern=KEY_ID, max_length=64, description="64 hex digits")]
# Issue #12: a key to revoke, by id, id prefix (8+ hex digits) or its user's name.
KeyRefPath = Annotated[
    str, Path(max_length=64, description="a key id, a unique id prefix of 8+ hex digits, or a user name")
]
# Issue #12: an entry named the way people type it (``ledger.refs``): a seq, an id, or an
# id prefix of at least 8 hex digits; resolved and refused (unknown, malformed, ambiguous)
# by ``ledger.refs``, whose messages name what is accepted rather than a pattern.
RefPath = Annotated[
    str,
    Path(
        max_length=64,
        description="a seq (digits), an entry id, or a unique id prefix of at least 8 hex digits",
    ),
]
CodeQuery = Annotated[
    str | None, Query(pattern=CODE, max_length=64, description="a code: A-Z 0-9 . _ -")
]
# Checked by ledger.timefmt.parse_time, which names the parameter.
TimeQuery = Annotated[str | None, Query(max_length=40, description="RFC 3339 UTC, ending in Z")]
SeqQuery = Annotated[int, Query(ge=0, le=MAX_SAFE_INT, description="0 to 2^53-1")]
SizeQuery = Annotated[int, Query(ge=1, le=MAX_SAFE_INT, description="1 to 2^53-1")]
YearQuery = Annotated[
    int | None, Query(ge=YEAR_MIN, le=YEAR_MAX, description=f"{YEAR_MIN} to {YEAR_MAX}")
]
# Checked by the write path (one 422 "invalid-entry" naming Idempotency-Key, as before).
IdempotencyKey = Annotated[
    str | None,
    Header(
        description="1-128 printable ASCII characters; a retry with the same key gets the first answer"
    ),
]
