"""Incremental audit (issue #10): ``reserve audit sync`` of 10,000 new entries on a large
log, against a full verification of the same log in the same run.

The history (genesis, one key registration, then ``test.movement`` entries, spread over
10 days of log time as in ``bench.verify``) is appended to a temp SQLite file. An auditor
syncs it from empty at ``size - increment`` entries (its saved state is then on disk),
the log grows by ``increment`` entries, and the auditor syncs again: that second sync is
the figure (load the saved state, fetch the checkpoint and the consistency proof, fetch
and verify the new entries, save the state). The baseline is the same code verifying
the whole log from empty (a fresh state directory) in the same run: what an auditor
without saved state pays. Both read through ``DbAuditSource`` (the service's routes minus
HTTP), jobs=1.

    python -m bench.audit [--quick] [--size N] [--increment K]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    Config,
    Row,
    make_ledger,
    new_bodies,
    presign,
    progress,
    quiet_logs,
    scratch_dir,
)

SECTION = "audit"
TARGET = 10.0  # incremental sync at least 10x faster than a full verification
GEN_BATCH = 1000
SPREAD_DAYS = 10.0


def _grow(bl: Any, start: datetime, step: timedelta, size: int, target: int, log: Any) -> int:
    from ledger.store.log import append
    from ledger.timefmt import format_time

    t0 = time.perf_counter()
    while size < target:
        k = min(GEN_BATCH - size % GEN_BATCH, target - size)
        bodies = new_bodies(k)
        at = start + step * size
        for b in bodies:
            b["created_at"] = format_time(at - timedelta(seconds=1))
        stamp = format_time(at)

        def clock(stamp: str = stamp) -> str:
            return stamp

        append(bl.engine, presign(bodies, bl.operator), log_signer=bl.log_signer, clock=clock)
        size += k
        if size % 100_000 == 0:
            log(f"  {size:,} entries ({time.perf_counter() - t0:.0f}s)")
    return size


def measure(workdir: Path, total: int, increment: int, log: Any) -> dict[str, Any]:
    from ledger.audit_sync import sync
    from ledger.store.audit_source import DbAuditSource

    bl = make_ledger(f"sqlite:///{workdir / 'audit-history.db'}", workdir / "keys-audit")
    start = datetime.now(UTC) + timedelta(seconds=5)
    step = timedelta(days=SPREAD_DAYS) / total
    t0 = time.perf_counter()
    size = _grow(bl, start, step, 2, total - increment, log)
    gen_s = time.perf_counter() - t0
    log(f"  history of {size:,} entries written ({gen_s:.0f}s)")
    source = DbAuditSource(bl.engine)
    trusted = bl.log_signer.public_key
    t0 = time.perf_counter()
    first = sync(workdir / "auditor", source, trusted_log_key=trusted)
    first_s = time.perf_counter() - t0
    log(f"  first sync of {first.size:,} entries: {first_s:.1f}s")
    size = _grow(bl, start, step, size, total, log)
    t0 = time.perf_counter()
    inc = sync(workdir / "auditor", source, trusted_log_key=None)
    inc_s = time.perf_counter() - t0
    log(f"  incremental sync of {inc.verified:,} entries: {inc_s:.2f}s")
    t0 = time.perf_counter()
    full = sync(workdir / "fresh", source, trusted_log_key=trusted)
    full_s = time.perf_counter() - t0
    log(f"  full verification of {full.size:,} entries: {full_s:.1f}s")
    assert (inc.size, inc.root) == (full.size, full.root)
    state_bytes = (workdir / "auditor" / "state.json").stat().st_size
    bl.dispose()
    return {
        "size": full.size,
        "increment": inc.verified,
        "incremental_s": inc_s,
        "full_s": full_s,
        "first_sync_s": first_s,
        "generation_s": gen_s,
        "state_file_bytes": state_bytes,
    }


def rows_from(m: dict[str, Any]) -> list[Row]:
    speedup = m["full_s"] / m["incremental_s"]
    return [
        Row(
            section=SECTION,
            name=f"audit sync of {m['increment']:,} new entries on a {m['size']:,}-entry log (s)",
            value=m["incremental_s"],
            unit="s",
            baseline_name=f"full verification of the {m['size']:,} entries, same code, empty state",
            baseline_value=m["full_s"],
            higher_is_better=False,
            target=f">= {TARGET:g}x faster (ratio <= {1 / TARGET:.2f})",
            met=speedup >= TARGET,
            notes=f"{speedup:.1f}x faster; saved state {m['state_file_bytes'] / 2**20:.1f} MiB",
            extra=m,
        )
    ]


def run(cfg: Config, workdir: Path, log: Any) -> list[Row]:
    total, increment = (50_000, 2_000) if cfg.quick else (1_000_000, 10_000)
    return rows_from(measure(workdir, total, increment, log))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--size", type=int, default=None, help="entries in the log after growth")
    p.add_argument("--increment", type=int, default=10_000)
    ns = p.parse_args(argv)
    quiet_logs()
    total = ns.size or (50_000 if ns.quick else 1_000_000)

    with scratch_dir() as workdir:
        m = measure(workdir, total, ns.increment, progress)
    print(json.dumps(m, indent=1))
    for r in rows_from(m):
        print(f"{r.name}: {r.value:.2f} s vs {r.baseline_value:.1f} s -> ratio {r.ratio:.4f} ({r.notes}); met={r.met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
