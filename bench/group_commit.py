"""Group commit where one entry's failure is its own (issue #8, item 2): what it costs.

``python -m bench.group_commit [--quick]``; also ``bench.run --only group_commit``.

``append_batch`` writes a group in bulk inside a savepoint and, only if the database
refuses something, decides the group again with one savepoint per entry. Figures, in
entries/s of pre-signed test movements, groups of 64: (1) ``append_batch`` of clean
groups; (2) ``append_batch`` of groups in which one entry fails at the database (its
``also`` callback inserts an integer beyond 64 bits), counting the 63 good ones. Baseline
for both, same run, same engine, same group size: ``append`` (the whole group in one set
of bulk INSERTs, atomic: what the group committer did before). The three kinds of group
alternate so machine noise falls on all of them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Config,
    Row,
    batched,
    database_url,
    make_ledger,
    new_bodies,
    presign,
    quiet_logs,
    scratch_dir,
)

SECTION = "group_commit"
GROUP = 64  # about what 50 concurrent HTTP clients queue per commit


def _overflow(conn: Any, seq: int) -> None:
    from sqlalchemy import insert

    from ledger.store.schema import idempotency_keys

    conn.execute(
        insert(idempotency_keys).values(
            user_name="bench", key=f"bad-{seq}", request_hash="0" * 64, status=2**63,
            response="{}", created_at="2026-01-01T00:00:00Z",
        )
    )


def run(cfg: Config, workdir: Path, log: Any) -> list[Row]:
    from ledger.entries import parse_submission
    from ledger.store.log import BatchItem, append, append_batch

    n = 640 if cfg.quick else 3200
    rows: list[Row] = []
    for engine_name in cfg.engines:
        with database_url(engine_name, workdir) as url:
            bl = make_ledger(url, workdir / f"keys-group-{engine_name}")
            try:
                warm = presign(new_bodies(2 * GROUP), bl.operator)
                append(bl.engine, warm[:GROUP], log_signer=bl.log_signer)
                append_batch(bl.engine, [BatchItem(parse_submission(s)) for s in warm[GROUP:]], log_signer=bl.log_signer)
                subs = presign(new_bodies(3 * n), bl.operator)
                groups = list(batched(subs, GROUP))
                spent = {"bulk": 0.0, "clean": 0.0, "one_bad": 0.0}
                done = {"bulk": 0, "clean": 0, "one_bad": 0}
                for i, group in enumerate(groups):
                    kind = ("bulk", "clean", "one_bad")[i % 3]
                    if kind == "bulk":
                        t0 = time.perf_counter()
                        append(bl.engine, list(group), log_signer=bl.log_signer)
                        spent[kind] += time.perf_counter() - t0
                        done[kind] += len(group)
                        continue
                    items = [BatchItem(parse_submission(s)) for s in group]  # append parses too
                    if kind == "one_bad":
                        items[len(items) // 2].also = _overflow
                    t0 = time.perf_counter()
                    results = append_batch(bl.engine, items, log_signer=bl.log_signer)
                    spent[kind] += time.perf_counter() - t0
                    done[kind] += sum(1 for r in results if isinstance(r, int))
                base = done["bulk"] / spent["bulk"]
                for kind, what in (("clean", "clean groups"), ("one_bad", "one entry per group fails at the DB")):
                    rate = done[kind] / spent[kind]
                    log(f"  {engine_name:10} group {GROUP}, {what}: {rate:8,.0f}/s  bulk {base:8,.0f}/s")
                    rows.append(
                        Row(
                            section=SECTION,
                            name=f"group commit, {what}, {engine_name}, group {GROUP}",
                            value=rate,
                            unit="entries/s",
                            baseline_name=f"append, one bulk write per group (atomic), {engine_name}",
                            baseline_value=base,
                            extra={"entries_appended": done[kind], "group": GROUP},
                        )
                    )
            finally:
                bl.dispose()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args(argv)
    quiet_logs()
    with scratch_dir() as workdir:
        rows = run(Config.make(quick=ns.quick), workdir, print)
    from bench.run import render_table

    print(render_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
