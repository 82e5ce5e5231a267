"""Concurrent appenders on PostgreSQL never fork or punch holes in the log.

Eight separate processes (``spawn``: nothing shared but the database and the keystore
directory) each open their own :class:`~ledger.service.Ledger` on the same schema and
append fifteen movements, one append each, as fast as they can and all at once (a
barrier releases them together). Appends are serialised by the advisory lock in
``ledger.store.log``; afterwards the log must be one gap-free chain with one checkpoint
per append, the projections must hold every delta, and the verifier must accept it.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ledger.entries import ZERO_HASH, decode_leaf
from ledger.merkle import leaf_hash
from ledger.store.audit import verify_database
from ledger.store.schema import checkpoints, entries, log_state, test_balances
from tests.conftest import make_ledger, operator_site

WORKERS = 8
PER_WORKER = 15
ACCOUNT = "ACC-SHARED"
TIMEOUT = 60  # seconds for the whole run, well above what it takes (a few seconds)


def _operator(n: int) -> str:
    return f"op{n}"


def _worker(
    n: int, url: str, keydir: str, barrier: Any, results: Any
) -> None:  # pragma: no cover - runs in a child process
    """Append PER_WORKER movements as operator ``n``; report (n, [(first_seq, size)]) or
    (n, traceback)."""
    try:
        from keys import FileKeystore
        from ledger.service import Ledger
        from ledger.store.db import make_engine
        from tests.conftest import PASSPHRASE

        led = Ledger(make_engine(url), FileKeystore(Path(keydir), passphrase=PASSPHRASE))
        led.log_signer()  # warm up: connection and keystore, before the start line
        barrier.wait(timeout=TIMEOUT)
        done = []
        for i in range(PER_WORKER):
            r = led.act(_operator(n), "test.movement", account=ACCOUNT, delta=100 * n + i + 1)
            done.append((r.first_seq, r.size))
        led.engine.dispose()
        results.put((n, done))
    except BaseException:
        results.put((n, traceback.format_exc()))
        raise


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_appenders_keep_one_gap_free_chain(pg_url: str, tmp_path: Path) -> None:
    keydir = tmp_path / "keys"
    led = make_ledger(pg_url, keydir)
    operator_site(led)  # SITE-A exists before the keys that name it (issue #12)
    for n in range(WORKERS):
        led.register_key(
            admin="admin",
            user=_operator(n),
            roles=["operator"],
            sites=["SITE-A"],
            owners=[],
            clearance="NONE",
        )
    base = 3 + WORKERS  # genesis, owner, site and the operators' keys
    total = base + WORKERS * PER_WORKER

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(n, pg_url, str(keydir), barrier, results), daemon=True)
        for n in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        reports = dict(results.get(timeout=TIMEOUT) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    failures = {n: r for n, r in reports.items() if isinstance(r, str)}
    assert not failures, "\n".join(f"worker {n}:\n{tb}" for n, tb in failures.items())
    assert [p.exitcode for p in procs] == [0] * WORKERS

    # Every append got its own seq and a checkpoint of exactly the size it produced;
    # within one process, appends are in the order they were made.
    first_seqs = sorted(fs for done in reports.values() for fs, _ in done)
    assert first_seqs == list(range(base, total))
    for done in reports.values():
        assert all(size == fs + 1 for fs, size in done)
        assert [fs for fs, _ in done] == sorted(fs for fs, _ in done)

    engine = led.engine
    with engine.connect() as conn:
        rows = conn.execute(
            select(entries.c.seq, entries.c.author, entries.c.leaf_hash, entries.c.leaf).order_by(
                entries.c.seq
            )
        ).all()
        cp_sizes = list(conn.scalars(select(checkpoints.c.size).order_by(checkpoints.c.size)))
        head = conn.execute(select(log_state)).one()
        balance = conn.execute(
            select(test_balances.c.balance).where(test_balances.c.account == ACCOUNT)
        ).scalar_one()
        per_author = dict(
            conn.execute(
                select(entries.c.author, func.count())
                .where(entries.c.kind == "test.movement")
                .group_by(entries.c.author)
            ).all()
        )

    # seq 0..total-1, no gap, no duplicate.
    assert [r.seq for r in rows] == list(range(total))
    # The hash chain, recomputed from the stored bytes.
    prev = ZERO_HASH
    deltas: dict[str, list[int]] = {}
    for r in rows:
        line = bytes(r.leaf)
        leaf, raw = decode_leaf(line)
        assert leaf.seq == r.seq
        assert leaf.prev_hash == prev, f"chain broken at seq {r.seq}"
        assert bytes(r.leaf_hash) == leaf_hash(line)
        prev = leaf_hash(line).hex()
        if raw["entry"]["kind"] == "test.movement":
            deltas.setdefault(r.author, []).append(raw["entry"]["delta"])
    assert head.size == total and head.head_hash == prev
    # One checkpoint per append (every append here is a batch of one).
    assert cp_sizes == list(range(1, total + 1))
    # Nothing lost or duplicated per process, each process's order preserved.
    assert per_author == {_operator(n): PER_WORKER for n in range(WORKERS)}
    for n in range(WORKERS):
        assert deltas[_operator(n)] == [100 * n + i + 1 for i in range(PER_WORKER)]
    assert balance == sum(100 * n + i + 1 for n in range(WORKERS) for i in range(PER_WORKER))

    # The appends really raced: run one after the other, the authors would change only
    # WORKERS - 1 times along the log (in practice they change at nearly every entry).
    order = [r.author for r in rows[base:]]
    switches = sum(1 for a, b in pairwise(order) if a != b)
    assert switches >= 2 * WORKERS, f"appends barely interleaved: {order}"

    report = verify_database(engine, trusted_log_key=led.keystore.public_key("log"))
    assert (report.size, report.checkpoints) == (total, total)
