"""``verify-bundle`` speed of the working tree against an earlier revision, in one run.

    python -m bench.verify_before_after [--before REV] [--entries N] [--repeats R]

Exports ``REV`` (default: the merge base with ``main``) with ``git archive`` into a temp
directory, builds one bundle with the current code (``bench.verify.build_bundles``), then
runs the same child (``python -m bench.verify child ...``, what ``reserve verify-bundle``
does) from each tree, interleaved and repeated (best kept, since other work on the machine
only ever slows a run down), beside the bare PyNaCl loop over the same signatures. Prints
rates and the ratios issue #10 asks for: jobs=1 / bare (target >= 0.85), jobs=2 / jobs=1
(target >= 1.6), before and after.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, quiet_logs

REPO = Path(__file__).resolve().parents[1]


def _export(rev: str, dest: Path) -> None:
    data = subprocess.run(
        ["git", "archive", "--format=tar", rev, "ledger", "bench"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def _child(cwd: Path, args: list[str]) -> dict[str, Any]:
    meter = CpuMeter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.verify", "child", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    out["other_cores"] = meter.other_cores()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default=None, help="git revision (default: merge-base with main)")
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    ns = p.parse_args(argv)
    quiet_logs()
    rev = ns.before or subprocess.run(
        ["git", "merge-base", "HEAD", "main"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    from bench.verify import build_bundles

    def log(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="verify-ba-") as tmp:
        work = Path(tmp)
        old = work / "before"
        old.mkdir()
        _export(rev, old)
        bundles, trust, _ = build_bundles(work, [ns.entries], log)
        bundle = str(bundles[ns.entries])
        best: dict[str, dict[str, Any]] = {}

        def keep(name: str, r: dict[str, Any], key: str) -> None:
            if name not in best or r[key] < best[name][key]:
                best[name] = r

        for i in range(ns.repeats):
            keep("bare", _child(REPO, ["bare", bundle]), "nacl_s")
            for tree, cwd in (("before", old), ("after", REPO)):
                for jobs in (1, 2):
                    r = _child(cwd, ["verify", bundle, trust, str(jobs)])
                    keep(f"{tree} jobs={jobs}", r, "seconds")
            log(f"  round {i + 1}/{ns.repeats} done")
        n = ns.entries
        bare = n / best["bare"]["nacl_s"]
        print(f"before = {rev[:12]}, {n:,} entries, best of {ns.repeats}")
        print(f"bare PyNaCl loop, same signatures, 1 core: {bare:,.0f} entries/s")
        for tree in ("before", "after"):
            r1, r2 = (n / best[f"{tree} jobs={j}"]["seconds"] for j in (1, 2))
            rss = [best[f"{tree} jobs={j}"]["maxrss_self_kib"] / 1024 for j in (1, 2)]
            print(
                f"{tree:>6}: jobs=1 {r1:,.0f}/s = {r1 / bare:.2f} x bare; jobs=2 {r2:,.0f}/s ="
                f" {r2 / bare:.2f} x bare = {r2 / r1:.2f} x jobs=1;"
                f" peak RSS main {rss[0]:.0f} / {rss[1]:.0f} MiB"
            )
        a1 = n / best["after jobs=1"]["seconds"]
        b1 = n / best["before jobs=1"]["seconds"]
        a2 = n / best["after jobs=2"]["seconds"]
        b2 = n / best["before jobs=2"]["seconds"]
        print(f"after / before: jobs=1 {a1 / b1:.2f}x, jobs=2 {a2 / b2:.2f}x")
        # CPU time is far less disturbed by other work on a shared machine than wall time:
        # with one job, CPU seconds per entry against the bare loop's.
        bare_cpu = n / best["bare"]["nacl_cpu_s"]
        for tree in ("before", "after"):
            r = best[f"{tree} jobs=1"]
            cpu = n / r["cpu_self_s"]
            print(f"{tree:>6}: jobs=1 by CPU time {cpu:,.0f}/s = {cpu / bare_cpu:.2f} x bare ({bare_cpu:,.0f}/s CPU)")
        print(
            "others' CPU meanwhile (cores): "
            + ", ".join(f"{k} {v['other_cores']:.2f}" for k, v in sorted(best.items()))
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
