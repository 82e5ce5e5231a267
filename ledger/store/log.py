"""The write path: validate with the reducer, then append entries, tree nodes,
projections and a signed checkpoint in one transaction.

Appends are serialised (PostgreSQL: a transaction-scoped advisory lock; SQLite:
``BEGIN IMMEDIATE``), so two writers can never both extend the same head. Everything
for a batch is in one transaction: a crash leaves the whole batch or nothing. A batch
with one refused entry is refused whole, with the reason of the first refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.crypto import Signer, key_id
from ledger.entries import ZERO_HASH, make_leaf, parse_submission
from ledger.errors import ConfigError, Conflict, LedgerError, StorageError
from ledger.merkle import CompactRange, NodeId, leaf_hash
from ledger.reducer import Context, apply
from ledger.state import Change, State
from ledger.store import idempotency, projections
from ledger.store.db import write_transaction
from ledger.store.idempotency import IdemKey
from ledger.store.schema import checkpoints, entries, log_state, tree_nodes
from ledger.timefmt import format_time, now, parse_time

log = structlog.get_logger("ledger.append")

# Any constant will do; it only has to be the same for every appender of a database.
_PG_APPEND_LOCK = 0x7265736572766531  # "reserve1"


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_seq: int
    size: int
    root: bytes
    checkpoint: str


class DbNodeReader:
    """:class:`ledger.merkle.NodeReader` over ``tree_nodes``: one query per call."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def get_nodes(self, ids: Sequence[NodeId] | Any) -> Mapping[NodeId, bytes]:
        # Point lookups joined with UNION ALL: each uses the primary key on both engines
        # (SQLite does not use the index for a row-value IN list, and scanned 2M nodes).
        unique = list(dict.fromkeys(ids))
        out: dict[NodeId, bytes] = {}
        for start in range(0, len(unique), 200):
            chunk = unique[start : start + 200]
            sql = " UNION ALL ".join(
                f"SELECT level, idx, hash FROM tree_nodes WHERE level = :l{n} AND idx = :i{n}"  # noqa: S608 - only bind names vary
                for n in range(len(chunk))
            )
            params: dict[str, int] = {}
            for n, (level, idx) in enumerate(chunk):
                params[f"l{n}"] = level
                params[f"i{n}"] = idx
            for r in self._conn.execute(text(sql), params):
                out[(int(r.level), int(r.idx))] = bytes(r.hash)
        return out


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
    # SQLite: the transaction already began with BEGIN IMMEDIATE (ledger.store.db).


def append(
    engine: Engine,
    submissions: Sequence[bytes | dict[str, Any]],
    *,
    log_signer: Signer,
    clock: Any = now,
    also: Callable[[Connection, int], None] | None = None,
) -> AppendResult:
    """Append signed entries; return the new size, root and signed checkpoint.

    Edge validation (schema, size, signatures) runs before the lock is taken; the
    reducer runs under it, against the head it will extend. ``also(conn, first_seq)``
    runs in the same transaction after the entries are written (e.g. storing a sealed
    location beside the entry that commits to it): if it fails, nothing is written.
    """
    if not submissions:
        raise ConfigError("nothing to append")
    parsed = [parse_submission(s) for s in submissions]
    try:
        with write_transaction(engine) as conn:
            _lock(conn)
            result = _append_locked(conn, parsed, log_signer=log_signer, clock=clock)
            if also is not None:
                also(conn, result.first_seq)
            return result
    except LedgerError:
        raise
    except IntegrityError as exc:
        raise Conflict(
            "the append conflicted with the log's constraints; nothing was written"
        ) from exc
    except DBAPIError as exc:
        log.error("append_failed", error_class=type(exc.orig).__name__)
        raise StorageError("the database refused the append; nothing was written") from exc


@dataclass
class BatchItem:
    """One submission in a group commit. ``precheck(conn)`` may answer for it without an
    append (an idempotent retry); ``also(conn, seq)`` runs after its entry is written."""

    parsed: tuple[Any, dict[str, Any]]
    also: Callable[[Connection, int], None] | None = None
    precheck: Callable[[Connection], Any] | None = None
    # Checked and stored for the whole batch in one query each (see idempotency.IdemKey).
    idempotency: IdemKey | None = None


def _append_locked(
    conn: Connection, parsed: list[Any], *, log_signer: Signer, clock: Any
) -> AppendResult:
    _, appended = _append_items(
        conn, [BatchItem(p) for p in parsed], log_signer=log_signer, clock=clock, isolate=False
    )
    assert appended is not None
    return appended


def _append_items(
    conn: Connection,
    items: Sequence[BatchItem],
    *,
    log_signer: Signer,
    clock: Any,
    isolate: bool,
) -> tuple[list[Any], AppendResult | None]:
    """The reducer and the writes, under the append lock. With ``isolate`` a refused
    entry is answered with its error and the others still go in (group commit);
    without it the first refusal refuses the whole batch."""
    head = conn.execute(select(log_state)).first()
    size = head.size if head else 0
    prev_hash = head.head_hash if head else ZERO_HASH
    recorded = clock()
    if head is not None and recorded < head.last_recorded_at:
        recorded = head.last_recorded_at  # the log's clock never runs backwards
    recorded_dt = parse_time(recorded)
    recorded = format_time(recorded_dt)

    state = State(loader=projections.db_loader(conn))
    # One query for the whole batch's ids instead of one per entry.
    batch_ids = [item.parsed[0].entry.id for item in items]
    taken = {r.entry_id for r in conn.execute(select(entries.c.entry_id).where(entries.c.entry_id.in_(batch_ids)))}
    state.known_absent_ids(set(batch_ids) - taken)
    # The batch's signing keys in one query rather than one per entry.
    state.known_keys(
        projections.read_keys_by_id(
            conn, (key_id(bytes.fromhex(s.pub)) for item in items for s in item.parsed[0].sigs)
        )
    )
    claims = [item.idempotency for item in items if item.idempotency is not None]
    answered = idempotency.lookup_many(conn, claims)
    remembered: list[tuple[IdemKey, int]] = []
    tree: CompactRange | None = None
    entry_rows: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    all_changes: list[Change] = []
    results: list[Any] = []
    afterwards: list[tuple[Callable[[Connection, int], None], int]] = []
    first_seq = size
    for item in items:
        if item.idempotency is not None:
            stored = answered.get((item.idempotency.user, item.idempotency.key))
            if stored is not None:
                results.append(stored)
                continue
        if item.precheck is not None:
            answer = item.precheck(conn)
            if answer is not None:
                results.append(answer)
                continue
        signed, raw_body = item.parsed
        seq = size + len(entry_rows)
        try:
            changes = apply(
                state, signed.entry, list(signed.sigs), Context(seq=seq, recorded_at=recorded_dt)
            )
        except LedgerError as exc:
            if not isolate:
                raise
            results.append(exc)
            continue
        state.apply(changes)
        all_changes.extend(changes)
        sigs = [{"pub": s.pub, "sig": s.sig} for s in signed.sigs]
        leaf = make_leaf(
            seq=seq, prev_hash=prev_hash, recorded_at=recorded, body=raw_body, sigs=sigs
        )
        lh = leaf_hash(leaf)
        if tree is None:
            tree = CompactRange.from_store(DbNodeReader(conn), size)
        for (level, idx), h in tree.append(lh):
            node_rows.append({"level": level, "idx": idx, "hash": h})
        entry_rows.append(
            {
                "seq": seq,
                "entry_id": signed.entry.id,
                "kind": raw_body["kind"],
                "author": signed.entry.author,
                "recorded_at": recorded,
                "leaf_hash": lh,
                "leaf": leaf,
            }
        )
        prev_hash = lh.hex()
        results.append(seq)
        if item.idempotency is not None:
            remembered.append((item.idempotency, seq))
        if item.also is not None:
            afterwards.append((item.also, seq))
    if not entry_rows or tree is None:
        return results, None

    info = state.log_info()
    assert info is not None  # the reducer refuses anything before a genesis
    if log_signer.public_key.hex() != info.log_key:
        raise ConfigError("the log key in the keystore is not this log's current checkpoint key")

    new_size = size + len(entry_rows)
    root = tree.root()
    note = sign_checkpoint(
        Checkpoint(origin=info.log_id, size=new_size, root=root, time=recorded),
        signer=log_signer,
        key_name=info.log_id,
    )
    conn.execute(insert(entries), entry_rows)
    conn.execute(insert(tree_nodes), node_rows)
    projections.write_changes(conn, all_changes)
    head_values = {
        "log_id": info.log_id,
        "log_key": info.log_key,
        "size": new_size,
        "head_hash": prev_hash,
        "last_recorded_at": recorded,
    }
    if head is None:
        conn.execute(insert(log_state).values(id=1, **head_values))
    else:
        conn.execute(update(log_state).where(log_state.c.id == 1).values(**head_values))
    conn.execute(
        insert(checkpoints).values(size=new_size, root=root, recorded_at=recorded, note=note)
    )
    idempotency.remember_many(conn, remembered)
    for fn, seq in afterwards:
        fn(conn, seq)
    log.info("appended", first_seq=first_seq, count=len(entry_rows), size=new_size)
    return results, AppendResult(first_seq=first_seq, size=new_size, root=root, checkpoint=note)


def append_batch(
    engine: Engine, items: Sequence[BatchItem], *, log_signer: Signer, clock: Any = now
) -> list[Any]:
    """Group commit: one transaction, one checkpoint, many independent submissions. Each
    result is the entry's seq, a precheck's answer, or the LedgerError that refused it.
    A database failure fails them all (nothing was written)."""
    try:
        with write_transaction(engine) as conn:
            _lock(conn)
            results, _ = _append_items(
                conn, items, log_signer=log_signer, clock=clock, isolate=True
            )
            return results
    except LedgerError:
        raise
    except IntegrityError as exc:
        raise Conflict(
            "the append conflicted with the log's constraints; nothing was written"
        ) from exc
    except DBAPIError as exc:
        log.error("append_failed", error_class=type(exc.orig).__name__)
        raise StorageError("the database refused the append; nothing was written") from exc


# -- reading -----------------------------------------------------------------------


def head(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(log_state)).first()
