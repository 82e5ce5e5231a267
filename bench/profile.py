"""Profiles behind the benchmark's figures (not part of ``bench.run``: a profiler distorts
the timings it explains).

    python -m bench.profile append [--engine postgresql] [--batch 1000] [--entries 10000]
    python -m bench.profile verify [--entries 20000] [--jobs 1]

Each writes ``bench/results/profile-<what>-<stamp>.prof`` (cProfile, open with ``pstats``
or snakeviz) and prints the top functions by total and by cumulative time. With
``--pyinstrument`` (if installed in the venv; it is not a project dependency) it prints
a pyinstrument call tree instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    batched,
    database_url,
    make_ledger,
    new_bodies,
    presign,
    quiet_logs,
    scratch_dir,
)


def _profile(label: str, fn: Callable[[], Any], *, use_pyinstrument: bool, top: int) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if use_pyinstrument:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        t0 = time.perf_counter()
        prof.start()
        fn()
        prof.stop()
        wall = time.perf_counter() - t0
        print(f"{label}: {wall:.2f}s under pyinstrument")
        print(prof.output_text(unicode=False, color=False, show_all=False))
        out = RESULTS_DIR / f"profile-{label}-{stamp}.html"
        out.write_text(prof.output_html())
        print(f"written {out}")
        return
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    wall = time.perf_counter() - t0
    out = RESULTS_DIR / f"profile-{label}-{stamp}.prof"
    pr.dump_stats(out)
    print(f"{label}: {wall:.2f}s under cProfile; written {out}")
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        pstats.Stats(pr, stream=s).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- top {top} by {key}")
        print(s.getvalue().split("\n", 6)[-1] if "ncalls" in s.getvalue() else s.getvalue())


def profile_append(ns: argparse.Namespace) -> None:
    from ledger.store.log import append

    with scratch_dir() as workdir, database_url(ns.engine, workdir) as url:
        bl = make_ledger(url, workdir / "keys")
        try:
            append(bl.engine, presign(new_bodies(ns.batch), bl.operator), log_signer=bl.log_signer)
            subs = presign(new_bodies(ns.entries), bl.operator)

            def go() -> None:
                for chunk in batched(subs, ns.batch):
                    append(bl.engine, list(chunk), log_signer=bl.log_signer)

            _profile(
                f"append-{ns.engine}-{ns.batch}",
                go,
                use_pyinstrument=ns.pyinstrument,
                top=ns.top,
            )
        finally:
            bl.dispose()


def profile_verify(ns: argparse.Namespace) -> None:
    from bench.verify import build_bundles
    from ledger.bundle import Bundle
    from ledger.verify import verify_history

    with scratch_dir() as workdir:
        bundles, trust, _ = build_bundles(workdir, [ns.entries], print)
        b = Bundle(Path(bundles[ns.entries]))

        def go() -> None:
            b.check_files()
            verify_history(
                b.rows(),
                b.checkpoints(),
                trusted_log_key=bytes.fromhex(trust),
                projections=b.projections(),
                jobs=ns.jobs,
                progress=False,
            )

        _profile(
            f"verify-{ns.entries}-jobs{ns.jobs}", go, use_pyinstrument=ns.pyinstrument, top=ns.top
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--pyinstrument", action="store_true", help="use pyinstrument if installed")
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--patch",
        default="",
        help="comma-separated bench.whatif patches to apply first (proposed ledger fixes)",
    )
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("append")
    a.add_argument("--engine", choices=["sqlite", "postgresql"], default="postgresql")
    a.add_argument("--batch", type=int, default=1000)
    a.add_argument("--entries", type=int, default=10_000)
    v = sub.add_parser("verify")
    v.add_argument("--entries", type=int, default=20_000)
    v.add_argument("--jobs", type=int, default=1)
    ns = p.parse_args(argv)
    quiet_logs()
    if ns.patch:
        from bench.whatif import apply_patches

        apply_patches(ns.patch.split(","))
    if ns.what == "append":
        profile_append(ns)
    else:
        profile_verify(ns)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
