"""A new entry body: kind, a random id, author and creation time, then its fields.

Its own module (free of the database) so the ``reserve`` client builds bodies without
importing SQLAlchemy; ``ledger.service`` re-exports it.
"""

from __future__ import annotations

import secrets
from typing import Any

from ledger.text import normalise as normalise_text
from ledger.timefmt import now


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return normalise_text(value)
    if isinstance(value, list):
        return [_nfc(v) for v in value]
    if isinstance(value, dict):
        return {k: _nfc(v) for k, v in value.items()}
    return value


def new_body(kind: str, author: str, /, **fields: Any) -> dict[str, Any]:
    """A body to sign. Text is NFC-normalised here, before signing, because the log
    refuses non-NFC free text rather than change signed bytes (``ledger.text``)."""
    return {
        "kind": kind,
        "id": secrets.token_hex(16),
        "author": author,
        "created_at": now(),
        **{k: _nfc(v) for k, v in fields.items()},
    }
