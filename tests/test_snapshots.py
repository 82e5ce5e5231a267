"""Balance snapshots (issue #12, fast history reads): where they are taken, what they
hold, that as-of reads through them answer as a replay does, that the database verifier
catches a snapshot (or posting, or counter) edited behind the application's back, and
that migration 0014 builds them for a history written before it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, delete, func, insert, select, text, update

from ledger.errors import VerificationFailed
from ledger.service import Ledger
from ledger.store import reports, snapshots
from ledger.store.audit import verify_database
from ledger.store.db import _alembic_config
from ledger.store.schema import (
    balance_snapshot_rows,
    balance_snapshots,
    entries,
    log_state,
    postings,
)
from tests.stock_scenario import build_scenario
from tests.tamper_helpers import log_public_key, tampering

EVERY = 4


@pytest.fixture
def history(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """The stock scenario with a snapshot every 4 postings (many snapshots, mid-batch
    crossings, entries with several legs)."""
    monkeypatch.setattr(snapshots, "SNAPSHOT_EVERY", EVERY)
    build_scenario(ledger)
    return ledger


def _replay(conn: Connection, seq: int) -> dict[tuple[str, str], int]:
    """Non-zero balances after ``seq`` by brute force over every posting."""
    out: dict[tuple[str, str], int] = {}
    for r in conn.execute(
        select(postings).where(postings.c.seq <= seq).order_by(postings.c.seq, postings.c.n)
    ):
        out[(r.account, r.lot)] = int(r.balance_after)
    return {k: v for k, v in out.items() if v != 0}


def _verify(led: Ledger) -> None:
    verify_database(led.engine, trusted_log_key=log_public_key(led), progress=False)


def test_snapshots_sit_where_the_postings_cross_each_multiple(history: Ledger) -> None:
    with history.engine.connect() as conn:
        legs = conn.execute(
            select(postings.c.seq, func.count()).group_by(postings.c.seq).order_by(postings.c.seq)
        ).all()
        expected: dict[int, int] = {}
        count = 0
        for seq, n in legs:
            if count // EVERY < (count + n) // EVERY:
                expected[int(seq)] = count + n
            count += n
        stored = {
            int(r.seq): int(r.postings) for r in conn.execute(select(balance_snapshots))
        }
        assert len(expected) >= 5
        assert stored == expected
        assert conn.execute(select(log_state.c.postings)).scalar_one() == count
        for seq in stored:
            rows = {
                (r.account, r.lot): int(r.quantity)
                for r in conn.execute(
                    select(balance_snapshot_rows).where(balance_snapshot_rows.c.seq == seq)
                )
            }
            assert rows == _replay(conn, seq), f"snapshot at {seq}"


def test_as_of_through_snapshots_equals_a_replay_at_every_seq(history: Ledger) -> None:
    with history.engine.connect() as conn:
        size = int(conn.execute(select(log_state.c.size)).scalar_one())
        for seq in range(size):
            got = {
                (r.account, r.lot): r.quantity
                for r in reports.balances(conn, as_of_seq=seq, include_virtual=True)
            }
            assert got == _replay(conn, seq), f"seq {seq}"


def test_trace_legs_carry_their_entrys_kind_and_time(history: Ledger) -> None:
    with history.engine.connect() as conn:
        lot = conn.execute(select(postings.c.lot).limit(1)).scalar_one()
        trace = reports.trace_lot(conn, lot)
        assert trace.legs and trace.consistent
        for leg in trace.legs:
            e = conn.execute(select(entries).where(entries.c.seq == leg.seq)).one()
            assert (leg.kind, leg.recorded_at) == (e.kind, e.recorded_at)


def test_snapshot_tables_are_append_only(history: Ledger) -> None:
    for stmt in (
        update(balance_snapshot_rows).values(quantity=1),
        delete(balance_snapshot_rows),
        delete(balance_snapshots),
    ):
        with pytest.raises(Exception, match="append-only"), history.engine.begin() as conn:
            conn.execute(stmt)


def _first_snapshot(conn: Connection) -> tuple[int, Any]:
    seq = int(conn.execute(select(func.min(balance_snapshots.c.seq))).scalar_one())
    row = conn.execute(
        select(balance_snapshot_rows)
        .where(balance_snapshot_rows.c.seq == seq)
        .order_by(balance_snapshot_rows.c.account)
        .limit(1)
    ).one()
    return seq, row


def test_clean_history_verifies(history: Ledger) -> None:
    _verify(history)


def test_edited_snapshot_quantity_is_caught(history: Ledger) -> None:
    with history.engine.connect() as conn:
        seq, row = _first_snapshot(conn)
    with tampering(history.engine) as conn:
        conn.execute(
            update(balance_snapshot_rows)
            .where(
                balance_snapshot_rows.c.seq == seq,
                balance_snapshot_rows.c.account == row.account,
                balance_snapshot_rows.c.lot == row.lot,
            )
            .values(quantity=row.quantity + 1)
        )
    with pytest.raises(VerificationFailed, match="balance snapshot differs") as exc:
        _verify(history)
    assert exc.value.seq == seq
    # ... and the as-of read it feeds would have answered the edited figure
    with history.engine.connect() as conn:
        got = {
            (r.account, r.lot): r.quantity
            for r in reports.balances(conn, as_of_seq=seq, include_virtual=True)
        }
        assert got[(row.account, row.lot)] == row.quantity + 1


def test_deleted_snapshot_row_is_caught(history: Ledger) -> None:
    with history.engine.connect() as conn:
        seq, row = _first_snapshot(conn)
    with tampering(history.engine) as conn:
        conn.execute(
            delete(balance_snapshot_rows).where(
                balance_snapshot_rows.c.seq == seq,
                balance_snapshot_rows.c.account == row.account,
                balance_snapshot_rows.c.lot == row.lot,
            )
        )
    with pytest.raises(VerificationFailed, match="balance snapshot differs"):
        _verify(history)


def test_deleted_snapshot_is_caught(history: Ledger) -> None:
    with history.engine.connect() as conn:
        seq, _ = _first_snapshot(conn)
    with tampering(history.engine) as conn:
        conn.execute(delete(balance_snapshot_rows).where(balance_snapshot_rows.c.seq == seq))
        conn.execute(delete(balance_snapshots).where(balance_snapshots.c.seq == seq))
    with pytest.raises(VerificationFailed, match="snapshot is missing") as exc:
        _verify(history)
    assert exc.value.seq == seq


def test_snapshot_where_none_is_due_is_caught(history: Ledger) -> None:
    with history.engine.connect() as conn:
        seq, _ = _first_snapshot(conn)
    with tampering(history.engine) as conn:
        conn.execute(insert(balance_snapshots).values(seq=seq - 1, postings=1))
    with pytest.raises(VerificationFailed, match="none is due"):
        _verify(history)


def test_edited_posting_balance_is_caught(history: Ledger) -> None:
    with history.engine.connect() as conn:
        last = conn.execute(
            select(postings).order_by(postings.c.seq.desc(), postings.c.n.desc()).limit(1)
        ).one()
    with tampering(history.engine) as conn:
        conn.execute(
            update(postings)
            .where(postings.c.seq == last.seq, postings.c.n == last.n)
            .values(balance_after=last.balance_after + 5)
        )
    with pytest.raises(VerificationFailed, match="'postings' differs") as exc:
        _verify(history)
    assert exc.value.seq == last.seq


def test_edited_posting_kind_is_caught(history: Ledger) -> None:
    with tampering(history.engine) as conn:
        seq = conn.execute(select(func.min(postings.c.seq))).scalar_one()
        conn.execute(update(postings).where(postings.c.seq == seq).values(kind="stock.loss"))
    with pytest.raises(VerificationFailed, match="'postings' differs"):
        _verify(history)


def test_edited_posting_counter_is_caught(history: Ledger) -> None:
    with tampering(history.engine) as conn:
        conn.execute(update(log_state).values(postings=log_state.c.postings + 1))
    with pytest.raises(VerificationFailed, match="posting count"):
        _verify(history)


def test_migration_builds_the_snapshots_of_an_older_history(history: Ledger) -> None:
    """Down to 0012 (no snapshots, no counter, no kind on postings), up again: the
    backfill puts back exactly what the append path wrote, and the history verifies."""
    from alembic import command

    def state(conn: Connection) -> tuple[Any, ...]:
        return (
            conn.execute(select(balance_snapshots).order_by(balance_snapshots.c.seq)).all(),
            conn.execute(
                select(balance_snapshot_rows).order_by(
                    balance_snapshot_rows.c.seq,
                    balance_snapshot_rows.c.account,
                    balance_snapshot_rows.c.lot,
                )
            ).all(),
            conn.execute(select(log_state.c.postings)).scalar_one(),
            conn.execute(
                select(postings.c.seq, postings.c.n, postings.c.kind, postings.c.recorded_at)
                .order_by(postings.c.seq, postings.c.n)
            ).all(),
        )

    with history.engine.connect() as conn:
        before = state(conn)
    cfg = _alembic_config()
    with history.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0012")
        assert conn.execute(text("SELECT count(*) FROM postings")).scalar()
    with history.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with history.engine.connect() as conn:
        assert state(conn) == before
    _verify(history)
    with pytest.raises(Exception, match="append-only"), history.engine.begin() as conn:
        conn.execute(update(postings).values(kind="x"))
