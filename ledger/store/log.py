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
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.crypto import Signer, key_id
from ledger.entries import ZERO_HASH, make_leaf, parse_submission
from ledger.errors import ClockBehind, ConfigError, Conflict, LedgerError, StorageError
from ledger.merkle import CompactRange, NodeId, leaf_hash
from ledger.owner_scope import leaf_hash_v2, rest_hash
from ledger.reducer import Context, apply
from ledger.state import CLOCK_SKEW, Change, LogInfo, Post, State
from ledger.store import idempotency, projections, snapshots
from ledger.store.db import write_transaction
from ledger.store.idempotency import IdemKey
from ledger.store.owner_scope import Committer, OwnerKeyring
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
    keyring: OwnerKeyring | None = None,
) -> AppendResult:
    """Append signed entries; return the new size, root and signed checkpoint.

    Edge validation (schema, size, signatures) runs before the lock is taken; the
    reducer runs under it, against the head it will extend. ``also(conn, first_seq)``
    runs in the same transaction after the entries are written (e.g. storing a sealed
    location beside the entry that commits to it): if it fails, nothing is written.
    ``keyring`` opens and seals owners' scoped-audit secrets: needed once the log is
    owner-scoped (issue #14).
    """
    if not submissions:
        raise ConfigError("nothing to append")
    log_id = stored_log_id(engine)
    parsed = [parse_submission(s, log_id=log_id) for s in submissions]
    try:
        with write_transaction(engine) as conn:
            _lock(conn)
            result = _append_locked(conn, parsed, log_signer=log_signer, clock=clock, keyring=keyring)
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
    conn: Connection, parsed: list[Any], *, log_signer: Signer, clock: Any, keyring: OwnerKeyring | None
) -> AppendResult:
    _, appended = _append_items(
        conn, [BatchItem(p) for p in parsed], log_signer=log_signer, clock=clock, isolate=False,
        keyring=keyring,
    )
    assert appended is not None
    return appended


def _recorded_time(clock_now: str, last: str | None) -> datetime:
    """The time the log records: the clock, never before the last entry's time.

    Within :data:`CLOCK_SKEW` of the last entry the log keeps ``recorded_at`` monotonic by
    using the last time. Further behind, the clock (or the last entry's time) is wrong:
    taking the later of the two would pin every later entry to a time that a clock once
    ran fast to, and the replay window would then refuse every normal append. So the log
    refuses to append, with a typed error and an alert, until an operator fixes the
    clock (issue #8, item 8).
    """
    now_dt = parse_time(clock_now)
    if last is None:
        return now_dt
    last_dt = parse_time(last)
    if now_dt >= last_dt:
        return now_dt
    if last_dt - now_dt > CLOCK_SKEW:
        log.error(
            "alert_clock_behind_log",
            behind_s=round((last_dt - now_dt).total_seconds(), 3),
            allowed_s=CLOCK_SKEW.total_seconds(),
        )
        raise ClockBehind(
            "the server clock is behind the log's last recorded time by more than the "
            "allowed skew; nothing was appended (fix the server clock)"
        )
    return last_dt  # the log's clock never runs backwards


def _append_items(
    conn: Connection,
    items: Sequence[BatchItem],
    *,
    log_signer: Signer,
    clock: Any,
    isolate: bool,
    savepoints: bool = False,
    keyring: OwnerKeyring | None = None,
) -> tuple[list[Any], AppendResult | None]:
    """The reducer and the writes, under the append lock. With ``isolate`` a refused
    entry is answered with its error and the others still go in (group commit);
    without it the first refusal refuses the whole batch. With ``savepoints`` each entry
    is written at once in its own SAVEPOINT, so a database failure refuses that entry
    only; without, the batch is written at the end in bulk (fast, all or nothing)."""
    head = conn.execute(select(log_state)).first()
    size = head.size if head else 0
    prev_hash = head.head_hash if head else ZERO_HASH
    recorded_dt = _recorded_time(clock(), head.last_recorded_at if head is not None else None)
    recorded = format_time(recorded_dt)

    state = State(loader=projections.db_loader(conn))
    if head is not None:  # the head row holds the log's info: no second read of it
        state.known_log_info(
            LogInfo(
                log_id=head.log_id,
                log_key=head.log_key,
                entry_sig_version=int(head.entry_sig_version),
                demo=bool(head.demo),
            )
        )
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
    # Owner commitments of v2 leaves (issue #14); inert on a log not switched to v2.
    committer = Committer(conn, keyring=keyring)
    commitment_rows: list[dict[str, Any]] = []
    claims = [item.idempotency for item in items if item.idempotency is not None]
    answered = idempotency.lookup_many(conn, claims)
    remembered: list[tuple[IdemKey, int]] = []
    tree: CompactRange | None = None
    entry_rows: list[dict[str, Any]] = []
    node_rows: list[dict[str, Any]] = []
    all_changes: list[Change] = []
    results: list[Any] = []
    legs: dict[int, int] = {}  # postings of each written entry, by seq
    afterwards: list[tuple[Callable[[Connection, int], None], int]] = []
    first_seq = size
    for index, item in enumerate(items):
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
            # The seq the reducer tried was never written (the next accepted entry gets
            # it): a refusal on the write path names no seq (issue #8, item 10).
            exc.seq = None
            if not isolate:
                # Name the entry by its place in the batch: nothing of it was appended.
                exc.public_message = f"batch entry {index}: {exc.public_message}"
                raise
            results.append(exc)
            continue
        sigs = [{"pub": s.pub, "sig": s.sig} for s in signed.sigs]
        leaf = make_leaf(
            seq=seq, prev_hash=prev_hash, recorded_at=recorded, body=raw_body, sigs=sigs
        )
        info_before = state.log_info()
        commitment = committer.commit(
            signed.entry,
            state,
            seq=seq,
            log_id=info_before.log_id if info_before is not None else getattr(signed.entry, "log_id", ""),
        )
        lh = leaf_hash(leaf) if commitment is None else leaf_hash_v2(commitment, rest_hash(leaf))
        crows = [] if commitment is None else [{"seq": seq, "commitment": commitment}]
        if tree is None:
            tree = CompactRange.from_store(DbNodeReader(conn), size)
        before = CompactRange(tree.size, tree.frontier)
        nodes = [{"level": level, "idx": idx, "hash": h} for (level, idx), h in tree.append(lh)]
        row = {
            "seq": seq,
            "entry_id": signed.entry.id,
            "kind": raw_body["kind"],
            "author": signed.entry.author,
            "recorded_at": recorded,
            "leaf_hash": lh,
            "leaf": leaf,
        }
        if savepoints:
            item_also = item.also
            if item.idempotency is not None:  # stored in the item's own savepoint
                item_also = _remembering(item.idempotency, item.also)
            if crows:
                item_also = _committing(committer, crows, item_also)
            failure = _write_item(conn, row, nodes, changes, item_also, seq)
            if failure is not None:
                tree = before  # the item's nodes were rolled back with its savepoint
                results.append(failure)
                continue
        else:
            node_rows.extend(nodes)
            commitment_rows.extend(crows)
            all_changes.extend(changes)
            if item.idempotency is not None:  # stored for the whole batch at once
                remembered.append((item.idempotency, seq))
            if item.also is not None:
                afterwards.append((item.also, seq))
        state.apply(changes)
        legs[seq] = sum(1 for ch in changes if isinstance(ch, Post))
        entry_rows.append(row)
        prev_hash = lh.hex()
        results.append(seq)
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
    if not savepoints:  # else each entry was written in its own savepoint
        conn.execute(insert(entries), entry_rows)
        conn.execute(insert(tree_nodes), node_rows)
        committer.write(conn, commitment_rows)
        projections.write_changes(
            conn,
            all_changes,
            kinds={r["seq"]: r["kind"] for r in entry_rows},
            recorded_at=recorded,
        )
    # Balance snapshots the batch made due (issue #12), after its projections.
    posted = snapshots.after_batch(
        conn,
        before=int(head.postings) if head is not None else 0,
        per_entry=[(r["seq"], legs.get(r["seq"], 0)) for r in entry_rows],
    )
    head_values = {
        "log_id": info.log_id,
        "log_key": info.log_key,
        "entry_sig_version": info.entry_sig_version,
        "demo": info.demo,
        "size": new_size,
        "head_hash": prev_hash,
        "last_recorded_at": recorded,
        "postings": posted,
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


def _remembering(
    claim: IdemKey, also: Callable[[Connection, int], None] | None
) -> Callable[[Connection, int], None]:
    """``also`` preceded by storing the idempotency key (the one-item savepoint path)."""

    def run(conn: Connection, seq: int) -> None:
        idempotency.remember_many(conn, [(claim, seq)])
        if also is not None:
            also(conn, seq)

    return run


def _committing(
    committer: Committer, rows: list[dict[str, Any]], also: Callable[[Connection, int], None] | None
) -> Callable[[Connection, int], None]:
    """``also`` preceded by storing the entry's owner commitment (the savepoint path)."""

    def run(conn: Connection, seq: int) -> None:
        committer.write(conn, rows)
        if also is not None:
            also(conn, seq)

    return run


def _write_item(
    conn: Connection,
    row: dict[str, Any],
    nodes: list[dict[str, Any]],
    changes: list[Change],
    also: Callable[[Connection, int], None] | None,
    seq: int,
) -> LedgerError | None:
    """Write one group-commit item in its own SAVEPOINT: if the database (or its ``also``
    callback: a sealed location, an idempotency key) refuses it, only this item is rolled
    back and refused; its neighbours and the group's transaction go on (issue #8, item 2).
    """
    try:
        with conn.begin_nested():
            conn.execute(insert(entries), [row])
            conn.execute(insert(tree_nodes), nodes)
            projections.write_changes(
                conn, changes, kinds={seq: row["kind"]}, recorded_at=row["recorded_at"]
            )
            if also is not None:
                also(conn, seq)
    except LedgerError as exc:
        exc.seq = None
        return exc
    except IntegrityError:
        return Conflict("the entry conflicted with the log's constraints; it was not appended")
    except (DBAPIError, OverflowError) as exc:
        # OverflowError: the SQLite driver refuses an int beyond 64 bits before SQL runs.
        orig = getattr(exc, "orig", exc)
        log.error("append_item_failed", error_class=type(orig).__name__)
        return StorageError("the database refused this entry; it was not appended")
    return None


def append_batch(
    engine: Engine,
    items: Sequence[BatchItem],
    *,
    log_signer: Signer,
    clock: Any = now,
    more: Callable[[], Sequence[BatchItem]] | None = None,
    keyring: OwnerKeyring | None = None,
) -> list[Any]:
    """Group commit: one transaction, one checkpoint, many independent submissions. Each
    result is the entry's seq, a precheck's answer, or the LedgerError that refused it;
    results follow ``items`` and then what ``more()`` returned.

    ``more()`` is asked once the append lock is held, for what arrived while this batch
    waited for it (issue #11: with several workers each batch waited for the other
    workers' transactions, and what arrived meanwhile missed it and waited a whole round
    more, so batches stayed small and each paid the transaction's round trips).

    One entry's failure is its own (issue #8, item 2). The group is first written in bulk
    inside a SAVEPOINT (the common case, at the cost of one atomic append). If the
    database, a sealing callback or an idempotency insert refuses anything, that savepoint
    is rolled back and the group is decided again with one SAVEPOINT per entry (the reducer
    re-runs, since later entries may have relied on the failed one). Only a failure of the
    group's own writes (head, checkpoint, commit) fails them all; nothing is then written.
    """
    try:
        with write_transaction(engine) as conn:
            _lock(conn)
            if more is not None:
                items = [*items, *more()]
            try:
                with conn.begin_nested():
                    results, _ = _append_items(
                        conn, items, log_signer=log_signer, clock=clock, isolate=True,
                        keyring=keyring,
                    )
                return results
            except (LedgerError, DBAPIError, OverflowError) as exc:
                orig = getattr(exc, "orig", None) or exc
                log.warning("group_commit_isolating", error_class=type(orig).__name__, size=len(items))
            results, _ = _append_items(
                conn, items, log_signer=log_signer, clock=clock, isolate=True, savepoints=True,
                keyring=keyring,
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


def stored_log_id(engine: Engine) -> str | None:
    """The log id entry signatures must cover (``None`` before the genesis, which names
    its own). It never changes once set, so callers may cache it."""
    try:
        with engine.connect() as conn:
            row = conn.execute(select(log_state.c.log_id)).first()
    except DBAPIError:  # no schema yet: only a genesis can be appended
        return None
    return str(row.log_id) if row is not None else None


def head(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(log_state)).first()
