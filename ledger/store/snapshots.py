"""Balance snapshots (issue #12, "fast history reads").

An as-of balance used to be one index seek per (account, lot) pair ever used. Now,
after the entry whose postings bring the log's posting count to a multiple of
:data:`SNAPSHOT_EVERY`, the append transaction stores every non-zero balance as of that
entry; an as-of read takes the last snapshot at or before its seq and the (at most
``SNAPSHOT_EVERY``) postings after it, whose ``balance_after`` overrides the snapshot.

The placement is a pure function of the history (:func:`due`), so the verifier checks
not only each snapshot's content against its replay but that every snapshot is where
the rule puts it, and none is missing (:class:`SnapshotCheck`). The interval is fixed:
changing it needs a migration that rebuilds the snapshots (as migration 0014 builds
them for a history written before it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    and_,
    bindparam,
    func,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import distinct_on

from ledger.errors import VerificationFailed
from ledger.records import BalanceRec
from ledger.state import Change, Post, State
from ledger.store.db import plain_rows
from ledger.store.schema import balance_snapshot_rows, balance_snapshots, balances, postings

# 5,000: on 1M movements with ~5,000 pairs an as-of read cost 2.4x a read of the
# current balances at 10,000 and 1.5x at 2,500 (4x the storage); see README, issue #12.
SNAPSHOT_EVERY = 5_000

def due(before: int, after: int, *, every: int | None = None) -> bool:
    """Whether an entry taking the posting count from ``before`` to ``after`` is followed
    by a snapshot: its postings reach a multiple of the interval."""
    n = every or SNAPSHOT_EVERY
    return before // n < after // n


# -- writing (the append transaction) ---------------------------------------------------


def take(conn: Connection, *, seq: int, postings_through: int) -> None:
    """Store the non-zero balances as of entry ``seq``. Called at the end of a batch,
    after its projections are written: the ``balances`` table is then as of the batch's
    last entry, so the legs after ``seq`` are subtracted, in the same statement."""
    later = (
        select(postings.c.account, postings.c.lot, func.sum(postings.c.delta).label("d"))
        .where(postings.c.seq > seq)
        .group_by(postings.c.account, postings.c.lot)
        .subquery()
    )
    qty = balances.c.quantity - func.coalesce(later.c.d, 0)
    rows = (
        select(literal(seq), balances.c.account, balances.c.lot, balances.c.material, qty)
        .select_from(
            balances.outerjoin(
                later, and_(later.c.account == balances.c.account, later.c.lot == balances.c.lot)
            )
        )
        .where(qty != 0)
    )
    conn.execute(insert(balance_snapshots).values(seq=seq, postings=postings_through))
    conn.execute(
        insert(balance_snapshot_rows).from_select(
            ["seq", "account", "lot", "material", "quantity"], rows
        )
    )


def after_batch(
    conn: Connection, *, before: int, per_entry: list[tuple[int, int]]
) -> int:
    """Take the snapshots a batch made due; ``per_entry`` is (seq, postings) of each
    written entry in order. Returns the posting count after the batch."""
    count = before
    for seq, n in per_entry:
        if n and due(count, count + n):
            take(conn, seq=seq, postings_through=count + n)
        count += n
    return count


# -- reading --------------------------------------------------------------------------


# Given a table's columns (``account``, ``lot``, ``material``), the rows to keep.
RowFilter = Callable[[Any], ColumnElement[bool]]

_STATEMENTS: dict[Hashable, Any] = {}

_SNAPSHOT_AT = select(func.coalesce(func.max(balance_snapshots.c.seq), -1)).where(
    balance_snapshots.c.seq <= bindparam("as_of_seq", type_=BigInteger)
)


def balances_as_of(
    conn: Connection, seq: int, where: RowFilter, *, filter_key: Hashable = None
) -> list[tuple[str, str, str, int]]:
    """(account, lot, material, quantity) of every non-zero balance just after entry
    ``seq`` that passes ``where``, unordered: the last snapshot at or before ``seq``,
    overridden by the last posting of each pair after it.

    Two statements: the snapshot's seq, then the merge, done by the database so only
    the answer crosses to Python (issue #12: the rows, not the query, were the cost).
    The snapshot's seq is bound as a value rather than a subquery so the planner knows
    how few postings follow it (as a subquery it planned for an eighth of the table,
    and PostgreSQL's JIT then compiled for longer than the query ran).

    ``filter_key`` names what ``where`` filters (hashable; ``None``: not reused): the
    statement is then built and compiled once and run again with new values."""
    dialect = conn.dialect.name
    key = (filter_key, dialect)
    stmt = _STATEMENTS.get(key) if filter_key is not None else None
    if stmt is None:
        stmt = _statement(where, postgresql=dialect == "postgresql")
        if filter_key is not None and len(_STATEMENTS) < 256:
            _STATEMENTS[key] = stmt
    snap = int(conn.execute(_SNAPSHOT_AT, {"as_of_seq": seq}).scalar_one())
    return plain_rows(conn, stmt, {"snap": snap, "as_of_seq": seq})


def _statement(where: RowFilter, *, postgresql: bool) -> Any:
    snap = bindparam("snap", type_=BigInteger)
    seq = bindparam("as_of_seq", type_=BigInteger)
    r = balance_snapshot_rows
    p = postings
    after = (p.c.seq > snap, p.c.seq <= seq, where(p.c))
    # Each pair's last leg after the snapshot (zero balances too: they hide the
    # snapshot's row), read once by both halves below.
    later: Any
    if postgresql:
        # DISTINCT ON, sorted byte-wise ("C"): the sort was a third of the read under
        # the database's linguistic collation, and the order is not kept anyway.
        acct, lot = p.c.account.collate("C"), p.c.lot.collate("C")
        later = (
            select(p.c.account, p.c.lot, p.c.material, p.c.balance_after.label("quantity"))
            .where(*after)
            .ext(distinct_on(acct, lot))
            .order_by(acct, lot, p.c.seq.desc(), p.c.n.desc())
            .cte("later")
        )
    else:
        ranked = (
            select(
                p.c.account,
                p.c.lot,
                p.c.material,
                p.c.balance_after.label("quantity"),
                func.row_number()
                .over(partition_by=(p.c.account, p.c.lot), order_by=(p.c.seq.desc(), p.c.n.desc()))
                .label("rn"),
            )
            .where(*after)
            .subquery()
        )
        later = (
            select(ranked.c.account, ranked.c.lot, ranked.c.material, ranked.c.quantity)
            .where(ranked.c.rn == 1)
            .cte("later")
        )
    overridden = (
        select(literal(1)).where(later.c.account == r.c.account, later.c.lot == r.c.lot).exists()
    )
    return union_all(
        select(later.c.account, later.c.lot, later.c.material, later.c.quantity).where(
            later.c.quantity != 0
        ),
        select(r.c.account, r.c.lot, r.c.material, r.c.quantity).where(
            r.c.seq == snap, where(r.c), ~overridden
        ),
    )


# -- verifying --------------------------------------------------------------------------


class SnapshotCheck:
    """A :class:`ledger.verify.VerifyObserver` for a database verification: every stored
    posting must be the leg the replay produced (with its entry's kind and time), every
    snapshot must sit where :func:`due` puts it and hold exactly the replayed non-zero
    balances, and the head's posting counter must equal the replay's."""

    def __init__(self, conn: Connection, *, chunk: int = 20_000):
        self._conn = conn
        self._chunk = chunk
        self._count = 0
        self._stored = {
            int(r.seq): int(r.postings)
            for r in conn.execute(select(balance_snapshots.c.seq, balance_snapshots.c.postings))
        }
        self._seen: set[int] = set()
        self._rows = self._posting_rows()
        self._next: Any = next(self._rows, None)

    def _posting_rows(self) -> Iterator[Any]:
        after = (-1, -1)
        p = postings
        while True:
            rows = self._conn.execute(
                select(p)
                .where((p.c.seq > after[0]) | ((p.c.seq == after[0]) & (p.c.n > after[1])))
                .order_by(p.c.seq, p.c.n)
                .limit(self._chunk)
            ).all()
            if not rows:
                return
            yield from rows
            after = (int(rows[-1].seq), int(rows[-1].n))

    def entry(self, seq: int, leaf: Any, changes: list[Change], state: State) -> None:
        legs = [ch.posting for ch in changes if isinstance(ch, Post)]
        kind = type(leaf.entry).__struct_config__.tag if legs else None
        for leg in legs:
            row = self._next
            if row is None or int(row.seq) != seq or int(row.n) != leg.n:
                raise VerificationFailed(
                    f"projection 'postings' is missing leg {leg.n} of this entry", seq=seq
                )
            stored = (row.account, row.material, row.lot, int(row.delta), int(row.balance_after))
            replay = (leg.account, leg.material, leg.lot, leg.delta, leg.balance_after)
            if stored != replay or (row.kind, row.recorded_at) != (kind, leaf.recorded_at):
                raise VerificationFailed(
                    f"projection 'postings' differs from the replay for leg {leg.n}", seq=seq
                )
            self._next = next(self._rows, None)
        if self._next is not None and int(self._next.seq) == seq:
            raise VerificationFailed("projection 'postings' holds a leg the replay has not", seq=seq)
        before, self._count = self._count, self._count + len(legs)
        is_due = bool(legs) and due(before, self._count)
        if is_due and seq not in self._stored:
            raise VerificationFailed("a balance snapshot is missing after this entry", seq=seq)
        if seq in self._stored and not is_due:
            raise VerificationFailed("a balance snapshot is stored where none is due", seq=seq)
        if is_due:
            self._check_snapshot(seq, state)

    def _check_snapshot(self, seq: int, state: State) -> None:
        if self._stored[seq] != self._count:
            raise VerificationFailed("balance snapshot's posting count differs from the replay", seq=seq)
        replay: dict[tuple[str, str], tuple[str, int]] = {}
        for rec in state.table("balances").values():
            assert isinstance(rec, BalanceRec)
            if rec.quantity != 0:
                replay[(rec.account, rec.lot)] = (rec.material, rec.quantity)
        r = balance_snapshot_rows
        stored = {
            (row.account, row.lot): (row.material, int(row.quantity))
            for row in self._conn.execute(select(r).where(r.c.seq == seq))
        }
        for key in sorted(set(replay) | set(stored)):
            if replay.get(key) != stored.get(key):
                raise VerificationFailed(
                    f"balance snapshot differs from the replay for {key[0]} / {key[1]}", seq=seq
                )
        self._seen.add(seq)

    def checkpoint(self, size: int, note: str) -> None:
        """Nothing to check per checkpoint."""

    def finish(self, *, head_postings: int) -> None:
        """After the replay: no leg or snapshot beyond it, and the head's counter."""
        if self._next is not None:
            raise VerificationFailed(
                "projection 'postings' holds a leg of no entry", seq=int(self._next.seq)
            )
        extra = sorted(set(self._stored) - self._seen)
        if extra:
            raise VerificationFailed("a balance snapshot is stored where none is due", seq=extra[0])
        if head_postings != self._count:
            raise VerificationFailed(
                "the log head's posting count differs from the replay's postings"
            )
