"""HSM section (issue #11): signing and sealing through PKCS#11 (SoftHSM2) against the
file keystore, in the same run.

``python -m bench.hsm [--quick]``. SoftHSM2 comes from Debian's packages: if
``softhsm2-util`` is missing and we are root, it is installed (``apt-get``). A private
``SOFTHSM2_CONF`` and a token live in the run's scratch directory.

Figures: Ed25519 signatures/s by a key in the token (``CKM_EDDSA``) against the same
messages signed by the file keystore's in-memory key (pyca/cryptography); AES-256-GCM
seals/s in the token (``CKM_AES_GCM``) against the file keystore's sealer. Messages are
entry-sized (400 bytes). Rounds alternate HSM and baseline; the best round of each is kept.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Row, scratch_dir

MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
ROUNDS = 3
MESSAGE_BYTES = 400


def _softhsm_module(log: Callable[[str], None]) -> str | None:
    if shutil.which("softhsm2-util") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            log("   softhsm2 is not installed and cannot be installed here: hsm skipped")
            return None
        log("   installing softhsm2 from Debian's packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "softhsm2"]):
            subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=600)
    return next((m for m in MODULES if os.path.isfile(m)), None)


def _rate(fn: Callable[[bytes], object], messages: list[bytes]) -> float:
    t0 = time.perf_counter()
    for m in messages:
        fn(m)
    return len(messages) / (time.perf_counter() - t0)


def _best(pairs: list[tuple[Callable[[bytes], object], Callable[[bytes], object]]], messages: list[bytes]) -> list[tuple[float, float]]:
    out = []
    for hsm_fn, base_fn in pairs:
        hsm_best = base_best = 0.0
        for _ in range(ROUNDS):
            hsm_best = max(hsm_best, _rate(hsm_fn, messages))
            base_best = max(base_best, _rate(base_fn, messages))
        out.append((hsm_best, base_best))
    return out


def _appends(cfg: Config, workdir: Path, backend: object, log: Callable[[str], None]) -> tuple[float, float, int]:
    """Entries/s of single-entry appends on SQLite, the log key in the token vs in files."""
    from bench.common import (
        ADMIN,
        LOG_ID,
        OPERATOR,
        make_ledger,
        new_bodies,
        presign,
        register_operator,
    )
    from ledger.service import Ledger
    from ledger.store.db import make_engine
    from ledger.store.log import append

    n = 50 if cfg.quick else 300
    file_bl = make_ledger(f"sqlite:///{workdir / 'hsm-file.db'}", workdir / "hsm-file-keys")
    led = Ledger(make_engine(f"sqlite:///{workdir / 'hsm-token.db'}"), backend.keystore, backend.sealer)  # type: ignore[attr-defined]
    led.init(log_id=LOG_ID, admin=ADMIN)
    register_operator(led, OPERATOR)
    hsm_log, hsm_operator = led.log_signer(), led.signer_for(OPERATOR)
    log(f"   appends: {n} single-entry appends x {ROUNDS} rounds per keystore")

    def rate(engine: object, subs: list[dict[str, object]], signer: object) -> float:
        t0 = time.perf_counter()
        for sub in subs:
            append(engine, [sub], log_signer=signer)  # type: ignore[arg-type]
        return len(subs) / (time.perf_counter() - t0)

    best_hsm = best_file = 0.0
    for _ in range(ROUNDS):
        best_hsm = max(best_hsm, rate(led.engine, presign(new_bodies(n), hsm_operator), hsm_log))
        best_file = max(best_file, rate(file_bl.engine, presign(new_bodies(n), file_bl.operator), file_bl.log_signer))
    led.engine.dispose()
    file_bl.dispose()
    return best_hsm, best_file, n


def run(cfg: Config, workdir: Path, log: Callable[[str], None]) -> list[Row]:
    module = _softhsm_module(log)
    if module is None:
        return []
    root = workdir / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before the library is first loaded
    label, pin = "bench", secrets.token_hex(8)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", secrets.token_hex(8), "--pin", pin],
        check=True, capture_output=True,
    )

    from keys import Ed25519Signer, open_keystore
    from keys.sealing import AesGcmSealer
    from ledger.config import load_settings

    settings = load_settings(
        {
            "RESERVE_HOME": str(root / "home"),
            "RESERVE_KEYSTORE": "pkcs11",
            "RESERVE_PKCS11_MODULE": module,
            "RESERVE_PKCS11_TOKEN": label,
            "RESERVE_PKCS11_PIN": pin,
        }
    )
    backend = open_keystore(settings, passphrase=lambda: b"unused")
    hsm_signer = backend.keystore.generate("bench")
    hsm_sealer = backend.sealer()
    file_signer = Ed25519Signer.generate()
    file_sealer = AesGcmSealer.generate()

    n = 300 if cfg.quick else 3000
    messages = [os.urandom(MESSAGE_BYTES) for _ in range(n)]
    aad = b"SITE-BENCH|1"
    log(f"   {n} messages x {ROUNDS} rounds, token {label} ({module})")
    (sign_hsm, sign_file), (seal_hsm, seal_file) = _best(
        [
            (hsm_signer.sign, file_signer.sign),
            (lambda m: hsm_sealer.seal(m, aad=aad), lambda m: file_sealer.seal(m, aad=aad)),
        ],
        messages,
    )
    note = "SoftHSM2 computes in software; a hardware HSM has its own rate: rerun this there"
    append_hsm, append_file, appended = _appends(cfg, workdir, backend, log)
    return [
        Row(
            section="hsm",
            name="append, batch 1 (one checkpoint signed per entry), log key in the token, SQLite",
            value=append_hsm,
            unit="entries/s",
            baseline_name="same, log key in the file keystore",
            baseline_value=append_file,
            notes="pre-signed test.movement entries; rounds alternate, best of 3",
            extra={"entries_per_round": appended},
        ),
        Row(
            section="hsm",
            name="Ed25519 sign in the token (CKM_EDDSA), SoftHSM2",
            value=sign_hsm,
            unit="sig/s",
            baseline_name="file keystore key (pyca/cryptography) sign",
            baseline_value=sign_file,
            notes=note,
            extra={"messages": n, "message_bytes": MESSAGE_BYTES, "rounds": ROUNDS},
        ),
        Row(
            section="hsm",
            name="AES-256-GCM seal in the token (CKM_AES_GCM), SoftHSM2",
            value=seal_hsm,
            unit="seals/s",
            baseline_name="file keystore sealer (pyca/cryptography AESGCM)",
            baseline_value=seal_file,
            notes="one seal per site registration or relocation",
            extra={"messages": n, "message_bytes": MESSAGE_BYTES, "rounds": ROUNDS},
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.common import quiet_logs
    from bench.run import render_table

    p = argparse.ArgumentParser(prog="python -m bench.hsm", description=__doc__)
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args(argv)
    quiet_logs()
    cfg = Config.make(quick=ns.quick, engines=[])
    with scratch_dir() as workdir:
        rows = run(cfg, workdir, lambda m: print(m, file=sys.stderr, flush=True))
    print(render_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
