"""Storing the access log: a reveal's or an export's event is written and checkpointed
in its own transaction, before the action it records proceeds (a reveal whose event
cannot be written does not happen); refusals are written in batches (:func:`record_many`)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from ledger.access_log import access_origin, make_access_leaf
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.crypto import Signer
from ledger.entries import ZERO_HASH
from ledger.errors import StorageError
from ledger.merkle import CompactRange, leaf_hash
from ledger.store.db import write_transaction
from ledger.store.schema import access_checkpoints, access_log, access_state
from ledger.timefmt import now

_PG_ACCESS_LOCK = 0x7265736572766532  # "reserve2": distinct from the ledger's append lock


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of a sensitive value: equal values match, nothing else is revealed."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def record(engine: Engine, event: dict[str, Any], *, log_signer: Signer, log_id: str) -> int:
    """Append one event and a signed checkpoint; returns its seq. Raises
    :class:`StorageError` if it could not be written (the caller then refuses)."""
    return record_many(engine, [event], log_signer=log_signer, log_id=log_id)


def record_many(
    engine: Engine, events: Sequence[dict[str, Any]], *, log_signer: Signer, log_id: str
) -> int:
    """Append events in one transaction under one signed checkpoint; returns the first
    one's seq. Refusals are written this way in batches (issue #8 item 9), so a flood of
    bad requests costs one transaction and one signature per batch, not per request."""
    if not events:
        raise ValueError("no events to record")
    try:
        with write_transaction(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_ACCESS_LOCK})
            return _record(conn, events, log_signer=log_signer, log_id=log_id)
    except DBAPIError as exc:
        raise StorageError("the access log could not be written; nothing was done") from exc


def _record(
    conn: Connection, events: Sequence[dict[str, Any]], *, log_signer: Signer, log_id: str
) -> int:
    head = conn.execute(select(access_state)).first()
    first = size = head.size if head else 0
    prev = head.head_hash if head else ZERO_HASH
    tree = CompactRange(size, [bytes.fromhex(h) for h in json.loads(head.frontier)] if head else [])
    at = now()
    rows = []
    for event in events:
        leaf = make_access_leaf(seq=size, prev_hash=prev, at=at, event=event)
        lh = leaf_hash(leaf)
        tree.append(lh)
        rows.append({"seq": size, "leaf_hash": lh, "leaf": leaf})
        prev, size = lh.hex(), size + 1
    conn.execute(insert(access_log), rows)
    note = sign_checkpoint(
        Checkpoint(origin=access_origin(log_id), size=size, root=tree.root(), time=at),
        signer=log_signer,
        key_name=log_id,
    )
    conn.execute(insert(access_checkpoints).values(size=size, root=tree.root(), note=note))
    values = {
        "size": size,
        "head_hash": prev,
        "frontier": json.dumps([h.hex() for h in tree.frontier]),
    }
    if head is None:
        conn.execute(insert(access_state).values(id=1, **values))
    else:
        conn.execute(update(access_state).where(access_state.c.id == 1).values(**values))
    return first


def iter_access(conn: Connection, *, start: int = 0, limit: int | None = None) -> Iterator[bytes]:
    q = select(access_log.c.leaf).where(access_log.c.seq >= start).order_by(access_log.c.seq)
    if limit is not None:
        q = q.limit(limit)
    for r in conn.execute(q):
        yield bytes(r.leaf)


def iter_access_checkpoints(conn: Connection) -> Iterator[tuple[int, str]]:
    for r in conn.execute(
        select(access_checkpoints.c.size, access_checkpoints.c.note).order_by(
            access_checkpoints.c.size
        )
    ):
        yield int(r.size), str(r.note)
