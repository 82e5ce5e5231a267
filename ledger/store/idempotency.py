"""Idempotency keys (issue #4): a retried write returns the first result.

The key is stored in the same transaction as the entry it produced, so a crash leaves
either both or neither. The group committer checks for it inside that transaction too,
and never puts two writes with the same key in one batch, so a retry racing the original
gets the original's answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_

from ledger.errors import Conflict
from ledger.store.schema import idempotency_keys
from ledger.timefmt import now

Stored = tuple[int, dict[str, Any]]


def stored_response(conn: Connection, *, user: str, key: str) -> Stored | None:
    """The (status, response) stored for ``user``'s write with ``key``, if it was appended
    (the key is stored in the entry's own transaction, so a row means appended)."""
    q = select(idempotency_keys.c.status, idempotency_keys.c.response).where(
        idempotency_keys.c.user_name == user, idempotency_keys.c.key == key
    )
    row = conn.execute(q).first()
    return None if row is None else (int(row.status), json.loads(row.response))


@dataclass(frozen=True)
class IdemKey:
    """An append's idempotency key, checked and stored by the append itself in one query
    each per group-commit batch (issue #11: round trips under the append lock are what
    bounds the throughput of every worker together)."""

    user: str
    key: str
    request_hash: str
    status: int
    response: Callable[[int], dict[str, Any]]


def lookup_many(conn: Connection, claims: Sequence[IdemKey]) -> dict[tuple[str, str], Stored | Conflict]:
    """The stored answer (or a Conflict) for each claim already used, in one query."""
    if not claims:
        return {}
    by_key = {(c.user, c.key): c for c in claims}
    q = select(idempotency_keys).where(
        tuple_(idempotency_keys.c.user_name, idempotency_keys.c.key).in_(list(by_key))
    )
    out: dict[tuple[str, str], Stored | Conflict] = {}
    for row in conn.execute(q):
        claim = by_key[(row.user_name, row.key)]
        if row.request_hash != claim.request_hash:
            out[(row.user_name, row.key)] = Conflict(
                "this Idempotency-Key was already used for a different request"
            )
        else:
            out[(row.user_name, row.key)] = (int(row.status), json.loads(row.response))
    return out


def remember_many(conn: Connection, done: Sequence[tuple[IdemKey, int]]) -> None:
    """Store each claim with the response built from its entry's seq, in one statement."""
    if not done:
        return
    at = now()
    conn.execute(
        insert(idempotency_keys),
        [
            {
                "user_name": c.user,
                "key": c.key,
                "request_hash": c.request_hash,
                "status": c.status,
                "response": json.dumps(c.response(seq)),
                "created_at": at,
            }
            for c, seq in done
        ],
    )
