"""One entry never poisons its commit group; a write whose outcome is unknown is never
reported as a failure (issue #8, item 2).

A "bad" client sends entries that pass the reducer but fail at the database (their
``also`` callback inserts an integer beyond 64 bits: PostgreSQL refuses it, the SQLite
driver overflows). A "good" client sends valid entries at the same time. Every good entry
must be acknowledged with its seq and be in the log; no bad entry may be; the log verifies.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select

from ledger.entries import sign_body
from ledger.errors import LedgerError, OutcomePending, StorageError
from ledger.service import Ledger, new_body
from ledger.store.audit import verify_database
from ledger.store.db import write_transaction
from ledger.store.group_commit import GroupCommitter
from ledger.store.log import _lock
from ledger.store.schema import entries, idempotency_keys, test_balances
from tests.conftest import with_operator

PER_CLIENT = 40


def _overflow(conn: Connection, seq: int) -> None:
    conn.execute(
        insert(idempotency_keys).values(
            user_name="olga", key=f"bad-{seq}", request_hash="0" * 64, status=2**63,
            response="{}", created_at="2026-01-01T00:00:00Z",
        )
    )


def _move(led: Ledger, account: str, delta: int) -> dict[str, Any]:
    return sign_body(new_body("test.movement", "olga", account=account, delta=delta), [led.signer_for("olga")], log_id=led.log_id())


def test_failing_entries_never_fail_their_neighbours(ledger: Ledger) -> None:
    led = with_operator(ledger)
    committer = GroupCommitter(led.engine, led.log_signer)
    good: list[Any] = []
    bad: list[Any] = []
    gate = threading.Barrier(2)

    def client(out: list[Any], account: str, also: Any) -> None:
        gate.wait()
        for n in range(PER_CLIENT):
            try:
                out.append(committer.submit(_move(led, account, n + 1), also=also))
            except LedgerError as exc:
                out.append(exc)

    threads = [
        threading.Thread(target=client, args=(good, "ACC-GOOD", None)),
        threading.Thread(target=client, args=(bad, "ACC-BAD", _overflow)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    committer.close()

    assert all(isinstance(r, int) for r in good), [r for r in good if not isinstance(r, int)][:3]
    assert all(isinstance(r, StorageError) and r.seq is None for r in bad)
    with led.engine.connect() as conn:
        seqs = set(conn.execute(select(entries.c.seq).where(entries.c.seq.in_(good))).scalars())
        balances = dict(conn.execute(select(test_balances.c.account, test_balances.c.balance)).all())
        count = conn.execute(select(func.count()).select_from(entries)).scalar_one()
    assert seqs == set(good)
    assert balances.get("ACC-GOOD") == sum(range(1, PER_CLIENT + 1))
    assert "ACC-BAD" not in balances
    assert count == 4 + PER_CLIENT  # genesis, owner, site, olga's key, the good movements
    verify_database(led.engine, trusted_log_key=None)


def test_a_write_past_the_wait_is_pending_then_answered(ledger: Ledger, tmp_path: Path) -> None:
    led = with_operator(ledger)
    committer = GroupCommitter(led.engine, led.log_signer, wait=0.2)
    held = threading.Event()
    release = threading.Event()

    def hold_the_log() -> None:  # another appender holds the append lock for a while
        with write_transaction(led.engine) as conn:
            _lock(conn)
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_log)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(OutcomePending) as exc:
            committer.submit(_move(led, "ACC-1", 5), dedupe_key=("olga", "k-1"))
        assert exc.value.idempotency_key == "k-1"
        future = committer.outcome(("olga", "k-1"))
        assert future is not None and not future.done()
    finally:
        release.set()
        holder.join()
    deadline = time.monotonic() + 30
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert isinstance(future.result(), int)  # it was appended after all
    committer.close()


def test_writes_that_arrive_while_a_batch_waits_for_the_lock_join_it(ledger: Ledger) -> None:
    """Another appender (another worker) holds the append lock; the batch formed before
    it was released takes what arrived meanwhile: one transaction, one checkpoint
    (issue #11: otherwise they wait a whole round more and batches stay small)."""
    led = with_operator(ledger)
    sizes: list[int] = []
    committer = GroupCommitter(led.engine, led.log_signer, observe=sizes.append)
    held = threading.Event()
    release = threading.Event()

    def hold_the_log() -> None:
        with write_transaction(led.engine) as conn:
            _lock(conn)
            held.set()
            release.wait(10)

    with led.engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(entries)).scalar_one()
    holder = threading.Thread(target=hold_the_log)
    holder.start()
    held.wait(10)
    results: list[Any] = [None] * 4

    def write(i: int, key: tuple[str, str]) -> None:
        results[i] = committer.submit(_move(led, "ACC-1", i + 1), dedupe_key=key)

    writers = [threading.Thread(target=write, args=(0, ("olga", "k-0")))]
    writers[0].start()
    time.sleep(0.5)  # the first write is in a batch, waiting for the lock
    writers += [
        threading.Thread(target=write, args=(1, ("olga", "k-1"))),
        threading.Thread(target=write, args=(2, ("olga", "k-2"))),
    ]
    for t in writers[1:]:
        t.start()
    time.sleep(0.3)  # both queued before the repeated key (threads start in no set order)
    repeat = threading.Thread(target=write, args=(3, ("olga", "k-0")))  # same key: next batch
    writers.append(repeat)
    repeat.start()
    time.sleep(0.3)
    release.set()
    holder.join()
    for t in writers:
        t.join(timeout=30)
    committer.close()
    assert all(isinstance(r, int) for r in results), results
    assert sizes == [3, 1]  # the three keys together, the repeated key alone after them
    assert sorted(results[:3]) == list(range(results[0], results[0] + 3))
    assert results[3] == results[0] + 3
    with led.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(entries)).scalar_one()
    assert count == before + 4
    verify_database(led.engine, trusted_log_key=None)
