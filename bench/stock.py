"""Stock reports and stock appends (issue #3), PostgreSQL only.

* ``balances(as_of_seq=S)`` and ``trace_lot`` p50/p99 on a bulk-loaded history of
  movements (``postings`` / ``balances`` / ``entries`` / ``lots`` rows written with
  ``COPY`` into a fresh schema made by the real migrations; the ``entries_in_order``
  trigger is dropped in that scratch schema only, as in ``bench.proofs``). Baseline: one
  primary-key ``SELECT`` of a ``postings`` row on the same connection.
* ``append`` of signed ``stock.receipt`` entries vs generic ``test.movement`` entries,
  batches of 100, on one real ledger (owner, material, sealed site, lot, operator),
  batches interleaved so both see the same log size.

Run alone: ``python -m bench.stock [--quick] [--movements N]`` or
``python -m bench.run --only stock``.
"""

from __future__ import annotations

import gc
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select

from bench.common import (
    PASSPHRASE,
    Config,
    Row,
    batched,
    database_url,
    machine_speed,
    percentile,
    presign,
    quiet_logs,
)
from ledger.store import snapshots

SECTION = "stock"
OWNERS = [f"OWN-{i}" for i in range(5)]
SITES = [f"SITE-{i:03d}" for i in range(20)]
MATERIAL = "NDPR-OXIDE"
HOT_LOT = "LOT-HOT"


def _sizes(cfg: Config) -> dict[str, int]:
    if cfg.quick:
        return {"movements": 50_000, "lots": 200, "hot_legs": 2_000, "samples": 200,
                "append_batches": 5}
    # 1M movements x 2 legs = 2,000,000 postings
    return {"movements": 1_000_000, "lots": 1_000, "hot_legs": 5_000, "samples": 1000,
            "append_batches": 20}


# -- history ----------------------------------------------------------------------------


def _history(n_mov: int, n_lots: int, hot_legs: int, rng: random.Random):
    """Yield (entries rows, postings rows) chunks; return balances at the end via dict.

    Each movement has two legs on one lot: a receipt (``V/in/<owner>`` -> holding) or a
    move between two holdings of the lot's owner (only if the source holds enough)."""
    lot_codes = [f"LOT-{i:05d}" for i in range(n_lots)] + [HOT_LOT]
    lot_owner = {lot: rng.choice(OWNERS) for lot in lot_codes}
    lot_sites = {lot: rng.sample(SITES, 4) for lot in lot_codes}
    hot_every = max(1, (2 * n_mov) // hot_legs)  # legs per movement = 2
    bal: dict[tuple[str, str], int] = {}
    base_t = 1_700_000_000
    ent: list[tuple[Any, ...]] = []
    post: list[tuple[Any, ...]] = []
    leaf_pad = secrets.token_bytes(300)
    n_post = 0
    snaps: list[tuple[int, int]] = []
    _history.snapshots = snaps  # type: ignore[attr-defined]
    for seq in range(n_mov):
        lot = HOT_LOT if seq % hot_every == 0 else lot_codes[rng.randrange(n_lots)]
        owner = lot_owner[lot]
        s1, s2 = rng.sample(lot_sites[lot], 2)
        h1, h2 = f"H/{owner}/{s1}", f"H/{owner}/{s2}"
        q = rng.randrange(1_000, 1_000_000)
        if bal.get((h1, lot), 0) >= q and rng.random() < 0.5:
            kind, src, dst = "stock.rotation", h1, h2
        else:
            kind, src, dst = "stock.receipt", f"V/in/{owner}", h1
        b_src = bal.get((src, lot), 0) - q
        b_dst = bal.get((dst, lot), 0) + q
        bal[(src, lot)] = b_src
        bal[(dst, lot)] = b_dst
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base_t + seq * 30)) + ".000000Z"
        ent.append((seq, f"e{seq:031d}", kind, "olga", t, secrets.token_bytes(32),
                    leaf_pad))
        post.append((seq, 0, src, MATERIAL, lot, -q, b_src, kind, t))
        post.append((seq, 1, dst, MATERIAL, lot, q, b_dst, kind, t))
        n_post += 2
        snap: list[tuple[Any, ...]] = []
        if snapshots.due(n_post - 2, n_post):
            # What the append path stores (ledger.store.snapshots.take): every non-zero
            # balance after this entry.
            snaps.append((seq, n_post))
            snap = [(seq, a, lot_, MATERIAL, v) for (a, lot_), v in bal.items() if v != 0]
        if len(ent) >= 20_000 or snap:
            yield ent, post, snap
            ent, post = [], []
    if ent:
        yield ent, post, []
    _history.balances = bal  # type: ignore[attr-defined]
    _history.postings = n_post  # type: ignore[attr-defined]
    _history.lots = lot_codes  # type: ignore[attr-defined]


def _load(url: str, sizes: dict[str, int], rng: random.Random, log: Callable[[str], None]) -> dict[str, Any]:
    from ledger.store.db import make_engine, migrate

    eng = make_engine(url)
    migrate(eng)
    t0 = time.perf_counter()
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP TRIGGER IF EXISTS entries_in_order ON entries")
        # Load first, index after: drop the secondary postings indexes, recreate at end.
        cur.execute("DROP INDEX IF EXISTS postings_lot_trace")
        raw.commit()
        n_post = 0
        n_snap_rows = 0
        for ent, post, snap in _history(sizes["movements"], sizes["lots"], sizes["hot_legs"], rng):
            with cur.copy(
                "COPY entries (seq, entry_id, kind, author, recorded_at, leaf_hash, leaf) FROM STDIN"
            ) as cp:
                for r in ent:
                    cp.write_row(r)
            with cur.copy(
                "COPY postings (seq, n, account, material, lot, delta, balance_after, kind,"
                " recorded_at) FROM STDIN"
            ) as cp:
                for r in post:
                    cp.write_row(r)
            if snap:
                seq_, count = _history.snapshots[-1]  # type: ignore[attr-defined]
                cur.execute(
                    "INSERT INTO balance_snapshots (seq, postings) VALUES (%s, %s)", (seq_, count)
                )
                with cur.copy(
                    "COPY balance_snapshot_rows (seq, account, lot, material, quantity) FROM STDIN"
                ) as cp:
                    for r in snap:
                        cp.write_row(r)
                n_snap_rows += len(snap)
            n_post += len(post)
            raw.commit()
        cur.execute(
            "INSERT INTO log_state (id, log_id, log_key, size, head_hash, last_recorded_at,"
            " postings) VALUES (1, 'bench', 'bench', %s, 'bench', 'bench', %s)",
            (sizes["movements"], n_post),
        )
        bal = _history.balances  # type: ignore[attr-defined]
        lots_ = _history.lots  # type: ignore[attr-defined]
        with cur.copy("COPY balances (account, lot, material, quantity) FROM STDIN") as cp:
            for (acct, lot), q in bal.items():
                cp.write_row((acct, lot, MATERIAL, q))
        with cur.copy(
            "COPY lots (code, material, origin, supplier, purity, basis, certificate_sha256,"
            " containers, registered_seq) FROM STDIN"
        ) as cp:
            for lot in lots_:
                cp.write_row((lot, MATERIAL, "AU", "bench", "99.50", "TREO", "00" * 32, "[]", 0))
        cur.execute(
            "CREATE INDEX postings_lot_trace ON postings (lot, seq, n)"
            " INCLUDE (account, delta, balance_after, kind, recorded_at)"
        )
        raw.commit()
        # A settled history: the visibility map lets the trace read the index alone.
        driver = raw.driver_connection
        assert driver is not None
        driver.autocommit = True
        driver.execute("VACUUM ANALYZE")
        driver.autocommit = False
        raw.commit()
    finally:
        raw.close()
    eng.dispose()
    holding_pairs = sum(1 for (a, _l) in bal if a.startswith("H/"))
    log(
        f"   history: {sizes['movements']:,} movements, {n_post:,} postings, {len(bal):,} "
        f"(account, lot) pairs ({holding_pairs:,} holdings), {len(lots_):,} lots,"
        f" {len(_history.snapshots):,} snapshots ({n_snap_rows:,} rows),"  # type: ignore[attr-defined]
        f" loaded in {time.perf_counter() - t0:.0f}s"
    )
    return {"postings": n_post, "pairs": len(bal), "holding_pairs": holding_pairs,
            "lots": lots_}


def _pcts(xs: list[float]) -> tuple[float, float]:
    s = sorted(xs)
    return percentile(s, 50) * 1e3, percentile(s, 99) * 1e3


def _reports(url: str, cfg: Config, sizes: dict[str, int], info: dict[str, Any],
             rng: random.Random, log: Callable[[str], None]) -> list[Row]:
    from ledger.store import reports
    from ledger.store.db import make_engine
    from ledger.store.schema import postings

    eng = make_engine(url, readonly=True)
    # As `reserve serve` does once it is built (api.app.freeze_startup_heap): the reads
    # are timed in a process whose start-up heap the collector's full passes skip.
    gc.collect()
    gc.freeze()
    n_mov = sizes["movements"]
    n = sizes["samples"]
    rows: list[Row] = []
    with eng.connect() as conn:
        pk = select(postings.c.balance_after).where(postings.c.seq == bindparam("s"), postings.c.n == 0)

        def base_one(s: int) -> None:
            conn.execute(pk, {"s": s}).scalar_one()

        def timed(fn: Callable[[Any], Any], args: list[Any]) -> list[float]:
            out = []
            for a in args:
                t0 = time.perf_counter()
                fn(a)
                out.append(time.perf_counter() - t0)
                conn.rollback()  # one snapshot per call (read-only engine)
            return out

        # warm-up
        for s in rng.sample(range(n_mov), 20):
            base_one(s)
            reports.balances(conn, as_of_seq=s)
        conn.rollback()
        seqs = [rng.randrange(n_mov) for _ in range(n)]
        base = timed(base_one, [rng.randrange(n_mov) for _ in range(n)])
        b50, b99 = _pcts(base)
        # balances as of S (default: physical holdings, unscoped)
        budget = 30.0 if not cfg.quick else 5.0
        t_end = time.perf_counter() + budget
        bal_t: list[float] = []
        nrows = []
        for s in seqs:
            t0 = time.perf_counter()
            r = reports.balances(conn, as_of_seq=s)
            bal_t.append(time.perf_counter() - t0)
            conn.rollback()
            nrows.append(len(r))
            if time.perf_counter() > t_end and len(bal_t) >= 50:
                break
        p50, p99 = _pcts(bal_t)
        notes = (f"{len(bal_t)} samples; {info['postings']:,} postings, {info['holding_pairs']:,} "
                 f"holding pairs; ~{sorted(nrows)[len(nrows)//2]} rows out")
        rows.append(Row(SECTION, "balances(as_of_seq) p50", p50, "ms", "PK SELECT p50", b50,
                        higher_is_better=False, notes=notes))
        rows.append(Row(SECTION, "balances(as_of_seq) p99", p99, "ms", "PK SELECT p99", b99,
                        higher_is_better=False, target="<= 20 ms", met=p99 <= 20, notes=notes))
        # balances now (reference)
        now_t = timed(lambda _: reports.balances(conn), list(range(min(n, 200))))
        q50, q99 = _pcts(now_t)
        rows.append(Row(SECTION, "balances(now) p99 (reference)", q99, "ms", "PK SELECT p99", b99,
                        higher_is_better=False, notes=f"p50 {q50:.2f} ms"))
        # trace_lot: the hot lot (~hot_legs legs) and ordinary lots (~2*movements/lots legs)
        hot = reports.trace_lot(conn, HOT_LOT)
        conn.rollback()
        ordinary = [lot for lot in info["lots"] if lot != HOT_LOT]
        sample_lot = reports.trace_lot(conn, ordinary[0])
        conn.rollback()
        for label, lots_, nlegs in (
            (f"trace_lot ({len(hot.legs):,} legs)", [HOT_LOT] * 100, len(hot.legs)),
            (f"trace_lot (~{len(sample_lot.legs):,} legs)",
             [rng.choice(ordinary) for _ in range(200)], len(sample_lot.legs)),
        ):
            tt: list[float] = []
            t_end = time.perf_counter() + budget
            for lot in lots_:
                t0 = time.perf_counter()
                reports.trace_lot(conn, lot)
                tt.append(time.perf_counter() - t0)
                conn.rollback()
                if time.perf_counter() > t_end and len(tt) >= 30:
                    break
            p50, p99 = _pcts(tt)
            rows.append(Row(SECTION, f"{label} p50", p50, "ms", "PK SELECT p50", b50,
                            higher_is_better=False, notes=f"{len(tt)} samples"))
            rows.append(Row(SECTION, f"{label} p99", p99, "ms", "PK SELECT p99", b99,
                            higher_is_better=False, target="<= 50 ms", met=p99 <= 50,
                            notes=f"{len(tt)} samples; {nlegs} legs"))
    eng.dispose()
    return rows


# -- appends: stock.receipt vs test.movement -------------------------------------------


def setup_stock_ledger(url: str, keydir: Path, *, operators: list[str], site: str = "SITE-7F3K",
                       owner: str = "JP-RESERVE", material: str = MATERIAL,
                       lot: str = "NDPR-2025-001") -> Any:
    """A real small ledger: genesis, admin, an owner, a material, a sealed site, one
    operator per name (scoped to the site), a lot. Returns the Ledger."""
    from keys import FileKeystore
    from keys.sealing import load_or_create_sealer
    from ledger.locations import Location
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    led = Ledger(make_engine(url), FileKeystore(keydir, passphrase=PASSPHRASE))
    led.init(log_id="bench.local/ledger", admin="admin")
    led.sealer = load_or_create_sealer(keydir, passphrase=PASSPHRASE)
    led.act("admin", "owner.registered", code=owner, name="Bench reserve", country="JP")
    led.act("admin", "material.registered", code=material, name="NdPr oxide", form="oxide",
            base_unit="g", grade_basis="TREO")
    led.register_site(admin="admin", code=site, classification="SECRET", custodian=owner,
                      owners=[owner],
                      location=Location(name="Bench depot", address="1 Bench Road",
                                        latitude=46.1, longitude=23.2, notes=""))
    for op in operators:
        led.register_key(admin="admin", user=op, roles=["operator"], sites=[site], owners=[],
                         clearance="SECRET")
    led.act(operators[0], "lot.registered", code=lot, material=material, origin="AU",
            supplier="Lynas Rare Earths", purity="99.50", basis="TREO",
            certificate_sha256="01" * 32,
            containers=[{"id": f"{lot}-C1", "type": "drum", "net_mass": 250_000}])
    return led


def _appends(url: str, workdir: Path, sizes: dict[str, int], log: Callable[[str], None]) -> list[Row]:
    from ledger.service import new_body
    from ledger.store.log import append
    from ledger.timefmt import now

    led = setup_stock_ledger(url, workdir / f"keys-{secrets.token_hex(3)}", operators=["olga"])
    signer = led.signer_for("olga")
    log_signer = led.log_signer()
    nb = sizes["append_batches"]
    batch = 100

    def receipts(k: int, tag: str) -> list[dict[str, Any]]:
        return [
            new_body("stock.receipt", "olga", site="SITE-7F3K", owner="JP-RESERVE",
                     lot="NDPR-2025-001", quantity=1000, occurred_at=now(),
                     supplier="Lynas Rare Earths", accepted_purity="99.50",
                     reference=f"PO-{tag}-{i}")
            for i in range(k)
        ]

    def generic(k: int) -> list[dict[str, Any]]:
        return [new_body("test.movement", "olga", account="ACC", delta=1) for _ in range(k)]

    # warm-up (not timed)
    append(led.engine, presign(receipts(batch, "w"), signer), log_signer=log_signer)
    append(led.engine, presign(generic(batch), signer), log_signer=log_signer)
    stock_subs = presign(receipts(batch * nb, "s"), signer)
    gen_subs = presign(generic(batch * nb), signer)
    t_stock = t_gen = 0.0
    for sb, gb in zip(batched(stock_subs, batch), batched(gen_subs, batch), strict=True):
        t0 = time.perf_counter()
        append(led.engine, gb, log_signer=log_signer)
        t1 = time.perf_counter()
        append(led.engine, sb, log_signer=log_signer)
        t2 = time.perf_counter()
        t_gen += t1 - t0
        t_stock += t2 - t1
    n = batch * nb
    r_stock, r_gen = n / t_stock, n / t_gen
    led.engine.dispose()
    ratio = r_stock / r_gen
    return [Row(SECTION, "append stock.receipt, batch 100 (PostgreSQL)", r_stock, "entries/s",
                "append test.movement, batch 100", r_gen, target=">= 0.80 x generic",
                met=ratio >= 0.80, notes=f"{n} entries each, batches interleaved")]


def run(cfg: Config, workdir: Path, log: Callable[[str], None], *, movements: int | None = None) -> list[Row]:
    if "postgresql" not in cfg.engines:
        log("   stock: PostgreSQL not available, skipped")
        return []
    sizes = _sizes(cfg)
    if movements:
        sizes["movements"] = movements
    rng = random.Random(20261122)
    rows: list[Row] = []
    log(f"   machine: a 10M-step Python loop takes {machine_speed():.2f} s (bench.common.machine_speed)")
    with database_url("postgresql", workdir) as url:
        log("   appends: stock.receipt vs test.movement")
        rows += _appends(url, workdir, sizes, log)
    with database_url("postgresql", workdir) as url:
        log(f"   loading a history of {sizes['movements']:,} movements")
        info = _load(url, sizes, rng, log)
        rows += _reports(url, cfg, sizes, info, rng, log)
    return rows


def main() -> int:
    import argparse
    import sys

    from bench.common import scratch_dir
    from bench.run import render_table

    p = argparse.ArgumentParser(prog="python -m bench.stock")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--movements", type=int, default=None)
    ns = p.parse_args()
    quiet_logs()
    cfg = Config.make(quick=ns.quick, engines=["postgresql"])
    with scratch_dir() as wd:
        rows = run(cfg, wd, lambda m: print(m, file=sys.stderr, flush=True),
                   movements=ns.movements)
    print(render_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
