"""Run the benchmark suite: ``python -m bench.run [--quick] [--only SECTION ...]``.

Prints one table (every figure beside the baseline measured in the same run, and their
ratio) and writes the full results as JSON to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sqlite3
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import (
    ENGINES,
    PG_BASE,
    RESULTS_DIR,
    Config,
    CpuMeter,
    Row,
    fmt_num,
    machine_speed,
    pg_available,
    quiet_logs,
    scratch_dir,
    wait_quiet,
)

SECTIONS = ("appends", "verify", "proofs", "stock", "http", "login", "hsm", "group_commit", "flood", "audit", "client", "owner_scope")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "sqlite": sqlite3.sqlite_version,
        "python_loop_10m_s": round(machine_speed(), 3),
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    for pkg in ("PyNaCl", "cryptography", "SQLAlchemy", "psycopg", "orjson", "msgspec"):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = None
    return env


def _pg_version() -> str | None:
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_BASE)
    try:
        with eng.connect() as c:
            return str(c.execute(text("SHOW server_version")).scalar_one())
    finally:
        eng.dispose()


def render_table(rows: list[Row]) -> str:
    headers = [
        "measurement",
        "value",
        "unit",
        "baseline (same run)",
        "baseline",
        "ratio",
        "target",
        "met",
        "notes",
    ]
    body: list[list[str]] = []
    section = None
    out_rows: list[list[str] | str] = []
    for r in rows:
        if r.section != section:
            section = r.section
            out_rows.append(f"[{section}]")
        met = "" if r.met is None else ("yes" if r.met else "NO")
        line = [
            r.name,
            fmt_num(r.value),
            r.unit,
            r.baseline_name,
            fmt_num(r.baseline_value),
            f"{r.ratio:.3f}",
            r.target,
            met,
            r.notes,
        ]
        body.append(line)
        out_rows.append(line)
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    right = {1, 4, 5}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    for item in out_rows:
        lines.append(item if isinstance(item, str) else fmt(item))
    lines.append("")
    lines.append(
        "ratio = value / baseline. Rates (entries/s): higher is better. Times (ms) and "
        "memory (MiB): lower is better."
    )
    lines.append(
        "Appends time pre-signed submissions (sign_body ran before the clock); signing is "
        "the separate sign_body row."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument(
        "--quick", action="store_true", help="small sizes: the whole suite in < 1 minute"
    )
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument(
        "--engines", nargs="+", choices=ENGINES, default=list(ENGINES), help="databases to use"
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each section, wait up to SECONDS for other work on the machine to stop",
    )
    p.add_argument(
        "--spread-days",
        type=float,
        default=10.0,
        help="log time the verify history spans (0: all inside one 24 h replay window)",
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory for the JSON results")
    ns = p.parse_args(argv)

    quiet_logs()
    engines = list(ns.engines)
    pg_version = None
    if "postgresql" in engines:
        err = pg_available()
        if err is not None:
            _log(f"PostgreSQL at {PG_BASE} is not answering ({err}): PostgreSQL runs are skipped")
            engines.remove("postgresql")
        else:
            pg_version = _pg_version()
    cfg = dataclasses.replace(
        Config.make(quick=ns.quick, engines=engines), verify_spread_days=ns.spread_days
    )
    sections = ns.only or list(SECTIONS)

    started = time.perf_counter()
    rows: list[Row] = []
    timings: dict[str, float] = {}
    other_load: dict[str, float] = {}
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        _log(
            f"note: load average {load_start[0]:.2f} before starting; other work on this "
            "machine makes the figures noisy (ratios less so: baselines share the noise)"
        )
    with scratch_dir() as workdir:
        for name in sections:
            _log(f"== {name}")
            if ns.wait_quiet > 0:
                wait_quiet(ns.wait_quiet, _log)
            t0 = time.perf_counter()
            meter = CpuMeter()
            if name == "appends":
                from bench import appends

                rows += appends.run(cfg, workdir, _log)
            elif name == "verify":
                from bench import verify

                rows += verify.run(cfg, workdir, _log)
            elif name == "proofs":
                from bench import proofs

                rows += proofs.run(cfg, workdir, _log)
            elif name == "stock":
                from bench import stock

                rows += stock.run(cfg, workdir, _log)
            elif name == "http":
                from bench import http

                rows += http.run(cfg, workdir, _log)
            elif name == "login":
                from bench import login

                rows += login.run(cfg, workdir, _log)
            elif name == "hsm":
                from bench import hsm

                rows += hsm.run(cfg, workdir, _log)
            elif name == "group_commit":
                from bench import group_commit

                rows += group_commit.run(cfg, workdir, _log)
            elif name == "flood":
                from bench import flood

                rows += flood.run(cfg, workdir, _log)
            elif name == "audit":
                from bench import audit

                rows += audit.run(cfg, workdir, _log)
            elif name == "owner_scope":
                from bench import owner_scope

                rows += owner_scope.run(cfg, workdir, _log)
            elif name == "client":
                from bench import client

                rows += client.run(cfg, workdir, _log)
            timings[name] = time.perf_counter() - t0
            other_load[name] = meter.other_cores()
            _log(
                f"   ({timings[name]:.1f}s; other CPU on the machine meanwhile:"
                f" {other_load[name]:.2f} cores, PostgreSQL server included)"
            )
    total = time.perf_counter() - started

    print(render_table(rows))
    print(
        "other CPU busy on the machine during each section (cores, includes the PostgreSQL"
        " server): " + ", ".join(f"{k} {v:.2f}" for k, v in other_load.items())
    )
    missed = [r for r in rows if r.met is False]
    print(
        f"\ntargets: {sum(1 for r in rows if r.met)} met, {len(missed)} missed"
        f" ({'quick' if cfg.quick else 'full'} run, {total:.0f}s)"
    )
    for r in missed:
        print(
            f"  MISSED: {r.name}: {fmt_num(r.value)} {r.unit}, ratio {r.ratio:.3f}, target {r.target}"
        )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ns.out.mkdir(parents=True, exist_ok=True)
    path = ns.out / f"{stamp}-{'quick' if cfg.quick else 'full'}.json"
    doc = {
        "started_utc": stamp,
        "mode": "quick" if cfg.quick else "full",
        "seconds": total,
        "section_seconds": timings,
        "section_other_cpu_cores": other_load,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "environment": {**_environment(), "postgresql": pg_version},
        "config": {
            "append_batches": cfg.append_batches,
            "append_entries": cfg.append_entries,
            "verify_sizes": [cfg.verify_small, cfg.verify_large],
            "verify_spread_days": cfg.verify_spread_days,
            "tree_size": cfg.tree_size,
            "proof_samples": cfg.proof_samples,
            "engines": list(cfg.engines),
        },
        "rows": [r.to_json() for r in rows],
    }
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
