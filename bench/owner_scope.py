"""Owner-scoped verification vs full verification (issue #14).

The history: a log switched to v2 leaves (owner commitments) at its genesis, 20 owners
each with its own site and lot, one operator, then ``stock.receipt`` entries round-robin
over the owners, so the measured owner holds 1 entry in 20 (5%). It is appended through
the real write path (batches of 1000), then exported twice: the whole log
(``export_bundle``) and the owner's scoped bundle (``export_owner_bundle``).

Measured in the same run, one core each (``jobs=1``), in-process, bundles read from disk:

* baseline: ``verify_history`` of the full bundle, as ``reserve verify-bundle DIR
  --trust KEY`` runs it (signatures, chain, rules, tree, checkpoints, projections), without
  owner key files (the cheaper full verification: with every owner's key file it also
  computes one HMAC per owner per leaf);
* value: ``verify_owner_bundle`` of the scoped bundle, as ``reserve verify-bundle DIR
  --owner CODE --owner-key FILE --trust KEY`` runs it.

Target: the scoped verification at least 5x faster (issue #14, at 1,000,000 entries).
``python -m bench.owner_scope --size N`` measures at another size; ``bench.run`` uses
1,000,000 (20,000 with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bench.common import ADMIN, LOG_ID, Config, Row, make_ledger, progress, quiet_logs, scratch_dir

SECTION = "owner_scope"
TARGET = 5.0
OWNERS = 20  # the measured owner holds 1/20 = 5% of the entries
BATCH = 1000


def _owner(i: int) -> str:
    return f"OWNER-{i:02d}"


def build(workdir: Path, size: int, log: Any) -> tuple[Path, Path, str, bytes, float]:
    """(full bundle, scoped bundle, owner key file text, trusted log key, build seconds)."""
    from keys.sealing import AesGcmSealer
    from ledger.entries import sign_body
    from ledger.service import new_body
    from ledger.store import owner_scope
    from ledger.store.audit import export_bundle
    from ledger.store.db import make_engine
    from ledger.store.log import append
    from ledger.store.owner_export import export_owner_bundle
    from ledger.timefmt import now

    t0 = time.perf_counter()
    url = f"sqlite:///{workdir / 'owner-scope.db'}"
    bl = make_ledger(url, workdir / "keys-owner-scope")
    led = bl.led
    # The owners' secrets are stored sealed (migration 0015): an in-memory sealing key here.
    led.sealer = AesGcmSealer.generate()
    keyring = led.owner_keyring()
    owner_scope.enable(led.engine, keyring=keyring)
    admin = led.signer_for(ADMIN)
    setup: list[dict[str, Any]] = [
        new_body("material.registered", ADMIN, code="NDPR", name="NdPr oxide", form="oxide",
                 base_unit="g", grade_basis="TREO"),
    ]  # fmt: skip
    for i in range(OWNERS):
        setup.append(new_body("owner.registered", ADMIN, code=_owner(i), name=f"Owner {i}", country="FR"))
        setup.append(
            new_body("site.registered", ADMIN, code=f"SITE-{i:02d}", classification="SECRET",
                     custodian=_owner(i), owners=[_owner(i)], location_commitment="ab" * 32)
        )  # fmt: skip
    append(led.engine, [sign_body(b, [admin], log_id=LOG_ID) for b in setup], log_signer=bl.log_signer, keyring=keyring)
    # The operator was registered with no site (bench.common): a second key with every site.
    led.register_key(admin=ADMIN, user="oscar", roles=["operator"],
                     sites=[f"SITE-{i:02d}" for i in range(OWNERS)], owners=[], clearance="NONE")  # fmt: skip
    oscar = led.signer_for("oscar")
    lots = [
        new_body("lot.registered", "oscar", code=f"LOT-{i:02d}", material="NDPR", origin="AU",
                 supplier=f"Supplier {i}", purity="99.50", basis="TREO", certificate_sha256="cd" * 32,
                 containers=[{"id": f"LOT-{i:02d}-C1", "type": "drum", "net_mass": 1000}])
        for i in range(OWNERS)
    ]  # fmt: skip
    append(led.engine, [sign_body(b, [oscar], log_id=LOG_ID) for b in lots], log_signer=bl.log_signer, keyring=keyring)
    with led.engine.connect() as conn:
        from sqlalchemy import select

        from ledger.store.schema import log_state

        n = int(conn.execute(select(log_state.c.size)).scalar_one())
    k = 0
    while n < size:
        batch = []
        for _ in range(min(BATCH, size - n)):
            i = k % OWNERS
            k += 1
            body = new_body(
                "stock.receipt", "oscar", site=f"SITE-{i:02d}", owner=_owner(i), lot=f"LOT-{i:02d}",
                quantity=1, occurred_at=now(), supplier=f"Supplier {i}", accepted_purity="99.50",
                reference=f"PO-{k}",
            )  # fmt: skip
            batch.append(sign_body(body, [oscar], log_id=LOG_ID))
        append(led.engine, batch, log_signer=bl.log_signer, keyring=keyring)
        n += len(batch)
        if n % 50_000 < BATCH:
            log(f"  {n:,} entries appended ({time.perf_counter() - t0:.0f}s)")
    reader = make_engine(url, readonly=True)
    full, scoped = workdir / "full", workdir / "scoped"
    export_bundle(reader, full)
    export_owner_bundle(reader, _owner(0), scoped, keyring=keyring)
    key = owner_scope.key_file(reader, _owner(0), keyring=keyring)
    trusted = bl.log_signer.public_key
    reader.dispose()
    bl.dispose()
    return full, scoped, key, trusted, time.perf_counter() - t0


def measure(workdir: Path, size: int, log: Any) -> dict[str, Any]:
    from ledger.bundle import Bundle
    from ledger.owner_bundle import verify_owner_bundle
    from ledger.verify import verify_history

    log(f"  building a {size:,}-entry history ({OWNERS} owners, 1 in {OWNERS} entries the measured owner's)")
    full, scoped, key, trusted, build_s = build(workdir, size, log)
    t0 = time.perf_counter()
    b = Bundle(full)
    b.check_files()
    rep = verify_history(
        b.rows(), b.checkpoints(), trusted_log_key=trusted, projections=b.projections(),
        expected_size=b.manifest.get("size"), progress=False,
    )  # fmt: skip
    full_s = time.perf_counter() - t0
    log(f"  full verification: {full_s:.1f}s")
    t0 = time.perf_counter()
    srep = verify_owner_bundle(scoped, owner=_owner(0), key_file=key, trusted_log_key=trusted)
    scoped_s = time.perf_counter() - t0
    log(f"  scoped verification: {scoped_s:.1f}s ({srep.given:,} given, {srep.withheld:,} withheld)")
    assert srep.root == rep.root and srep.size == rep.size == size
    return {
        "size": size,
        "build_s": build_s,
        "full_s": full_s,
        "scoped_s": scoped_s,
        "given": srep.given,
        "withheld": srep.withheld,
        "speedup": full_s / scoped_s,
    }


def rows_from(m: dict[str, Any]) -> list[Row]:
    return [
        Row(
            SECTION,
            f"scoped verify, {m['size']:,} entries, owner at 5%",
            m["size"] / m["scoped_s"],
            "entries/s",
            "full verify-bundle, same log, jobs=1",
            m["size"] / m["full_s"],
            target=f">= {TARGET:g}x",
            met=m["speedup"] >= TARGET,
            notes=f"{m['given']:,} entries given in full; full {m['full_s']:.1f}s, scoped {m['scoped_s']:.1f}s",
        )
    ]


def run(cfg: Config, workdir: Path, log: Any) -> list[Row]:
    return rows_from(measure(workdir, 20_000 if cfg.quick else 1_000_000, log))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.owner_scope", description=__doc__)
    p.add_argument("--size", type=int, default=1_000_000, help="entries in the log (default 1,000,000)")
    ns = p.parse_args(argv)
    quiet_logs()

    with scratch_dir() as workdir:
        m = measure(workdir, ns.size, progress)
    print(json.dumps(m, indent=1))
    for r in rows_from(m):
        print(f"{r.name}: {r.value:,.0f} vs {r.baseline_value:,.0f} {r.unit} -> ratio {r.ratio:.2f} (target {r.target}); met={r.met}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
