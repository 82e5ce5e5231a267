"""Times are UTC, RFC 3339 with ``Z`` (DESIGN.md, Conventions).

The log writes ``recorded_at`` with exactly six fractional digits so that, as strings,
later times sort after earlier ones; inputs may carry 0 to 6 digits.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ledger.errors import InvalidEntry

RFC3339_Z = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z\Z"
_RE = re.compile(RFC3339_Z)


def format_time(t: datetime) -> str:
    """``2026-11-22T01:22:37.123456Z``: fixed width, UTC."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now() -> str:
    return format_time(datetime.now(UTC))


def parse_time(value: str, *, field: str = "time") -> datetime:
    """Parse an RFC 3339 UTC time with ``Z``; anything else is an :class:`InvalidEntry`."""
    if not _RE.fullmatch(value):
        raise InvalidEntry("expected an RFC 3339 UTC time ending in Z", field=field)
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEntry("not a valid calendar time", field=field) from exc
