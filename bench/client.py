"""The ``reserve`` command as a client (issue #9): start-up and a client-mode write.

* ``reserve --help`` wall time (fresh process) against ``python -c pass``;
* ``reserve stock receive`` in client mode (own keystore, cached token, signs locally,
  ``POST /entries``) against the same command in local mode on the server's database
  (custodial key in the server keystore), and against one ``GET /health`` round trip
  of the same service measured from this process, all in the same run. Every figure is
  the median of fresh processes; a write's wall time includes unlocking the user's key.

Run alone: ``python -m bench.client [--quick]`` or ``python -m bench.run --only client``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.common import Config, Row

SECTION = "client"
ROOT = Path(__file__).resolve().parents[1]
SITE, OWNER, LOT, MATERIAL = "SITE-7F3K", "JP-RESERVE", "LOT-1", "NDPR-OXIDE"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update({"RESERVE_HOME": str(home), "RESERVE_PASSPHRASE": "bench-pass", **extra})
    return env


def _reserve(home: Path, *args: str, **extra: str) -> float:
    """Wall time of one ``reserve`` process; fails loudly if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=_env(home, **extra),
        capture_output=True, text=True, check=False,
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"reserve {' '.join(args[:3])} failed: {proc.stderr.strip()}")
    return took


def _median(fn: Callable[[], float], n: int) -> float:
    return statistics.median(fn() for _ in range(n))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cfg: Config, workdir: Path, log: Callable[[str], None]) -> list[Row]:
    n = 3 if cfg.quick else 15
    rows: list[Row] = []

    def bare() -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return time.perf_counter() - t0

    log("   reserve --help start-up")
    base = _median(bare, n)
    helptime = _median(lambda: _reserve(workdir, "--help"), n)
    rows.append(Row(SECTION, "reserve --help (fresh process)", helptime * 1000, "ms",
                    "python -c pass", base * 1000, higher_is_better=False))

    log("   client-mode stock receive")
    server, olga = workdir / "client-server", workdir / "client-olga"
    loc = workdir / "client-loc.json"
    loc.write_text(json.dumps({"name": "Depot", "address": "Nowhere 1", "latitude": 1.5, "longitude": 2.5}))
    cert = workdir / "client-cert.pdf"
    cert.write_bytes(b"%PDF")
    _reserve(server, "init", "--log-id", "bench.local/client")
    for step in (
        ["owner", "add", OWNER, "--name", "JP", "--country", "JP", "--as", "admin"],
        ["material", "add", MATERIAL, "--name", "NdPr", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["site", "add", SITE, "--classification", "SECRET", "--custodian", OWNER, "--location-file", str(loc), "--as", "admin"],
        ["keys", "register", "--as", "admin", "--user", "otto", "--roles", "operator", "--sites", SITE],
        ["lot", "add", LOT, "--material", MATERIAL, "--origin", "AU", "--supplier", "L", "--purity", "99",
         "--basis", "TREO", "--certificate", str(cert), "--as", "otto"],
    ):
        _reserve(server, *step)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    gen = subprocess.run(
        [sys.executable, "-m", "cli", "keys", "generate", "olga"], cwd=ROOT,
        env=_env(olga, RESERVE_URL=url), capture_output=True, text=True, check=True,
    )
    pub = workdir / "client-olga.pub"
    pub.write_text(gen.stdout.split("public key (hex): ")[1].split()[0])
    _reserve(server, "keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator",
             "--sites", SITE, "--public-key-file", str(pub))
    srv = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], cwd=ROOT,
                           env=_env(server), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("reserve serve did not start") from None
                time.sleep(0.2)
        receive = ["stock", "receive", "--site", SITE, "--owner", OWNER, "--lot", LOT, "--quantity", "1 kg",
                   "--supplier", "L", "--accepted-purity", "99", "--reference", "R"]
        _reserve(olga, *receive, RESERVE_URL=url, RESERVE_USER="olga")  # logs in, caches the token
        client = _median(lambda: _reserve(olga, *receive, RESERVE_URL=url, RESERVE_USER="olga"), n)
        local = _median(lambda: _reserve(server, *receive, "--as", "otto"), n)

        def health() -> float:
            t0 = time.perf_counter()
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                r.read()
            return time.perf_counter() - t0

        health_s = _median(health, max(n, 50))
    finally:
        srv.terminate()
        srv.wait(timeout=30)
    rows.append(Row(SECTION, "client-mode stock receive (fresh process)", client * 1000, "ms",
                    "local-mode stock receive (fresh process)", local * 1000, higher_is_better=False))
    rows.append(Row(SECTION, "client-mode stock receive (fresh process)", client * 1000, "ms",
                    "GET /health round trip", health_s * 1000, higher_is_better=False))
    return rows


def main() -> int:
    import argparse
    import tempfile

    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for r in run(Config.make(quick=ns.quick, engines=["sqlite"]), Path(d), lambda m: print(m, file=sys.stderr)):
            print(f"{r.name}: {r.value:.1f} {r.unit}  vs  {r.baseline_name}: {r.baseline_value:.1f} {r.unit}"
                  f"  (ratio {r.ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
