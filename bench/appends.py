"""Append throughput: signed entries committed per second, SQLite and PostgreSQL.

What is timed is ``ledger.store.log.append(engine, submissions, log_signer=...)`` on
**pre-signed** submissions (``sign_body`` ran before the clock started), one call (one
transaction, one checkpoint) per batch. ``append`` still does all of its own work inside
the timing: edge validation (schema, signature verification), the reducer, leaf and tree
hashing, the checkpoint signature and the inserts.

Baseline: plain unsigned inserts of rows of the same shape and size (same columns as
``entries``, a random ``leaf`` as long as the real leaf) into a plain table with only a
primary key, on the same engine, with the same batch sizes and one transaction per
batch, through the same SQLAlchemy Core ``insert`` path.

Signing is measured separately (``sign_body`` vs a bare ``signer.sign`` loop), and so is
the edge validation ``append`` performs (``parse_submission`` vs a bare PyNaCl verify loop).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, Table, insert

from bench.common import (
    LOG_ID,
    BenchLedger,
    Config,
    Row,
    Stopwatch,
    batched,
    database_url,
    make_ledger,
    new_bodies,
    presign,
    round_up,
)

SECTION = "appends"
TARGET_PG_RATE = 3000.0  # signed entries/s on PostgreSQL, batches of 100+

_plain_md = MetaData()
plain = Table(
    "bench_plain",
    _plain_md,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_id", String(32), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("author", String(64), nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("leaf", LargeBinary, nullable=False),
)


def _leaf_len(sub: dict[str, Any]) -> int:
    from ledger.entries import make_leaf
    from ledger.timefmt import now

    return len(
        make_leaf(
            seq=123_456, prev_hash="0" * 64, recorded_at=now(), body=sub["entry"], sigs=sub["sigs"]
        )
    )


def _plain_rows(subs: list[dict[str, Any]], first_seq: int) -> list[dict[str, Any]]:
    from ledger.timefmt import now

    rows = []
    recorded = now()
    for i, sub in enumerate(subs):
        leaf = secrets.token_bytes(_leaf_len(sub))
        rows.append(
            {
                "seq": first_seq + i,
                "entry_id": secrets.token_hex(16),
                "kind": sub["entry"]["kind"],
                "author": sub["entry"]["author"],
                "recorded_at": recorded,
                "leaf_hash": hashlib.sha256(leaf).digest(),
                "leaf": leaf,
            }
        )
    return rows


def _insert_plain(engine: Any, rows: list[dict[str, Any]], batch: int) -> float:
    sw = Stopwatch()
    for chunk in batched(rows, batch):
        with sw.time(), engine.begin() as conn:
            conn.execute(insert(plain), list(chunk))
    return sw.total


def _append(bl: BenchLedger, subs: list[dict[str, Any]], batch: int) -> Stopwatch:
    from ledger.store.log import append

    sw = Stopwatch()
    for chunk in batched(subs, batch):
        with sw.time():
            append(bl.engine, list(chunk), log_signer=bl.log_signer)
    return sw


def bench_engine(cfg: Config, engine_name: str, workdir: Path, log: Any) -> list[Row]:
    rows: list[Row] = []
    with database_url(engine_name, workdir) as url:
        bl = make_ledger(url, workdir / f"keys-appends-{engine_name}")
        try:
            _plain_md.create_all(bl.engine)
            # Warm-up (compiled-statement caches, connection pool, first fsyncs): untimed.
            warm = presign(new_bodies(20), bl.operator)
            _append(bl, warm, 10)
            plain_seq = 0
            _insert_plain(bl.engine, _plain_rows(warm, plain_seq), 10)
            plain_seq += len(warm)

            for batch in cfg.append_batches:
                n = round_up(cfg.append_entries[batch], batch)
                t0 = time.perf_counter()
                subs = presign(new_bodies(n), bl.operator)
                sign_s = time.perf_counter() - t0
                prows = _plain_rows(subs, plain_seq)
                plain_seq += n
                base_s = _insert_plain(bl.engine, prows, batch)
                sw = _append(bl, subs, batch)
                rate = n / sw.total
                base_rate = n / base_s
                sign_rate = n / sign_s
                laps = sorted(sw.laps)
                target = ""
                met = None
                if engine_name == "postgresql" and batch >= 100:
                    target = f">= {TARGET_PG_RATE:,.0f} entries/s"
                    met = rate >= TARGET_PG_RATE
                rows.append(
                    Row(
                        section=SECTION,
                        name=f"append pre-signed, {engine_name}, batch {batch}",
                        value=rate,
                        unit="entries/s",
                        baseline_name=f"plain INSERT same-size rows, {engine_name}, batch {batch}",
                        baseline_value=base_rate,
                        target=target,
                        met=met,
                        extra={
                            "entries": n,
                            "batch": batch,
                            "append_seconds": sw.total,
                            "plain_seconds": base_s,
                            "append_us_per_entry": 1e6 * sw.total / n,
                            "plain_us_per_entry": 1e6 * base_s / n,
                            "batch_latency_p50_ms": 1e3 * laps[len(laps) // 2],
                            "batch_latency_max_ms": 1e3 * laps[-1],
                            "sign_us_per_entry": 1e6 * sign_s / n,
                            "sign_plus_append_entries_per_s": n / (sign_s + sw.total),
                            "leaf_bytes_mean": sum(len(r["leaf"]) for r in prows) / n,
                        },
                    )
                )
                log(
                    f"  {engine_name:10} batch {batch:>5}: append {rate:8,.0f}/s"
                    f"  plain {base_rate:9,.0f}/s  (sign {sign_rate:,.0f}/s)"
                )
        finally:
            bl.dispose()
    return rows


def bench_signing(cfg: Config, workdir: Path, log: Any) -> list[Row]:
    """Engine-independent CPU costs: author-side signing and append's edge validation."""
    from nacl.signing import VerifyKey

    from keys import Ed25519Signer
    from ledger.canonical import canonical
    from ledger.entries import parse_submission, sign_body, signing_message

    n = 1000 if cfg.quick else 5000
    signer = Ed25519Signer.generate()
    bodies = new_bodies(n)
    messages = [signing_message(canonical(b), log_id=LOG_ID) for b in bodies]

    t0 = time.perf_counter()
    for m in messages:
        signer.sign(m)
    bare_sign = time.perf_counter() - t0

    t0 = time.perf_counter()
    subs = [sign_body(b, [signer], log_id=LOG_ID) for b in bodies]
    sign_s = time.perf_counter() - t0

    pairs = [
        (VerifyKey(bytes.fromhex(s["sigs"][0]["pub"])), m, base64.b64decode(s["sigs"][0]["sig"]))
        for s, m in zip(subs, messages, strict=True)
    ]
    t0 = time.perf_counter()
    for vk, m, sig in pairs:
        vk.verify(m, sig)
    bare_verify = time.perf_counter() - t0

    t0 = time.perf_counter()
    for s in subs:
        parse_submission(s, log_id=LOG_ID)
    parse_s = time.perf_counter() - t0

    log(
        f"  sign_body {n / sign_s:,.0f}/s (bare sign {n / bare_sign:,.0f}/s); "
        f"parse_submission {n / parse_s:,.0f}/s (bare verify {n / bare_verify:,.0f}/s)"
    )
    return [
        Row(
            section=SECTION,
            name="sign_body (author side, 1 Ed25519 sig, pyca)",
            value=n / sign_s,
            unit="entries/s",
            baseline_name="bare signer.sign(message) loop, same messages",
            baseline_value=n / bare_sign,
            extra={"entries": n, "us_per_entry": 1e6 * sign_s / n},
        ),
        Row(
            section=SECTION,
            name="parse_submission (append's edge validation)",
            value=n / parse_s,
            unit="entries/s",
            baseline_name="bare PyNaCl VerifyKey.verify loop, same sigs",
            baseline_value=n / bare_verify,
            extra={"entries": n, "us_per_entry": 1e6 * parse_s / n},
        ),
    ]


def run(cfg: Config, workdir: Path, log: Any) -> list[Row]:
    rows = bench_signing(cfg, workdir, log)
    for engine_name in cfg.engines:
        rows += bench_engine(cfg, engine_name, workdir, log)
    return rows
