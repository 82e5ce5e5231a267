"""A new entry body: kind, a random id, author and creation time, then its fields.

Its own module (free of the database) so the ``reserve`` client builds bodies without
importing SQLAlchemy; ``ledger.service`` re-exports it.
"""

from __future__ import annotations

import secrets
from typing import Any

from ledger.timefmt import now


def new_body(kind: str, author: str, /, **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": secrets.token_hex(16),
        "author": author,
        "created_at": now(),
        **fields,
    }
