"""Valid writes while bad tokens flood in (issue #8 item 9), PostgreSQL only.

The same server as ``bench.http`` (``reserve serve``, one process, the ledger
``bench.http`` builds). Measured with ``wrk -t2 -c50``:

* baseline: ``POST /stock/receive`` alone (custodial, fresh ``Idempotency-Key``), measured
  before and after, the better kept;
* figure: the same while a second ``wrk`` (1 thread, 50 connections, each pausing
  ``50 ms`` between requests, so at most 1,000 requests/s) sends ``GET /balances`` with bad
  bearer tokens (a token from an unknown key id, one with the real key id and a forged
  signature), all answered 401 and each a refusal for the access log.

Target: the valid writes' rate under the flood is at least 0.80 x alone. wrk is a closed
loop: the flood reaches 1,000/s only if the server answers a refusal within ~0 ms, so
its achieved rate is reported (and is the figure to read the ratio against). Also
reported: the flood's achieved rate, and how many access-log rows and checkpoints the flood wrote
(refusals are batched and limited per client address, ``api.refusals``).

Run alone: ``python -m bench.flood [--quick] [--duration S]`` or
``python -m bench.run --only flood``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import PASSPHRASE, Config, Row, database_url, quiet_logs
from bench.http import LOT, OWNER, SITE, _free_port, _lua, _prepare, _wait_up, _wrk

SECTION = "flood"
FLOOD_CONNECTIONS = 50
FLOOD_DELAY_MS = 50  # per connection: 50 connections x <= 20/s = <= 1,000 requests/s

FLOOD_LUA = r"""
local tokens = {%(tokens)s}
local counter = 0
function delay()
  return %(delay)d
end
request = function()
  counter = counter + 1
  local h = {}
  h["Authorization"] = "Bearer " .. tokens[(counter %% #tokens) + 1]
  return wrk.format("GET", "/balances", h, nil)
end
"""


def _bad_tokens(good: str) -> list[str]:
    """A token from a key the service does not know, and the real key id with a forged
    signature (so the service verifies a signature before refusing)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    header, payload, _sig = good.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    stranger = jwt.encode(
        claims, Ed25519PrivateKey.generate(), algorithm="EdDSA",
        headers={"typ": "at+jwt", "kid": "attacker"},
    )
    forged_sig = jwt.utils.base64url_encode(b"\x01" * 64).decode()
    return [stranger, f"{header}.{payload}.{forged_sig}"]


def _counts(url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from ledger.store.db import make_engine
    from ledger.store.schema import access_checkpoints, access_log

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(access_log)).scalar_one()
            cps = conn.execute(select(func.count()).select_from(access_checkpoints)).scalar_one()
        return int(rows), int(cps)
    finally:
        engine.dispose()


def _flood(port: int, script: Path, duration: int, connections: int) -> subprocess.Popen[str]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
           "-s", str(script), f"http://127.0.0.1:{port}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _flood_rate(out: str) -> tuple[float, int]:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    return (float(m.group(1)) if m else float("nan")), (int(total.group(1)) if total else 0)


def run(cfg: Config, workdir: Path, log: Callable[[str], None], *, duration: int | None = None,
        connections: int = FLOOD_CONNECTIONS, delay_ms: int = FLOOD_DELAY_MS) -> list[Row]:
    if "postgresql" not in cfg.engines:
        log("   flood: PostgreSQL not available, skipped")
        return []
    if shutil.which("wrk") is None:
        log("   flood: wrk not installed, skipped")
        return []
    dur = duration or (5 if cfg.quick else 15)
    with database_url("postgresql", workdir) as url:
        home = workdir / "flood-home"
        home.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "RESERVE_DB": url,
            "RESERVE_HOME": str(home),
            "RESERVE_PASSPHRASE": PASSPHRASE.decode(),
            "RESERVE_LOG_LEVEL": "warning",
            "RESERVE_TOKEN_TTL": "7200",
        }
        tokens = _prepare(url, home, env)
        body = json.dumps({"site": SITE, "owner": OWNER, "lot": LOT, "quantity": "1 kg",
                           "occurred_at": "2026-01-01T00:00:00Z",
                           "supplier": "Lynas Rare Earths", "accepted_purity": "99.50",
                           "reference": "PO-FLOOD"})
        receive = _lua(workdir / "flood-receive.lua", tokens, "POST", "/stock/receive", body)
        flood_script = workdir / "flood.lua"
        flood_script.write_text(FLOOD_LUA % {
            "tokens": ",".join(f'"{t}"' for t in _bad_tokens(tokens[0])),
            "delay": delay_ms,
        })
        port = _free_port()
        reserve = Path(sys.executable).with_name("reserve")
        cmd = [str(reserve), "serve", "--port", str(port)] if reserve.exists() else [
            sys.executable, "-m", "cli", "serve", "--port", str(port)]
        serve_err = open(workdir / "flood-serve.err", "wb")  # noqa: SIM115 - lives as long as the server
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=serve_err)
        try:
            _wait_up(port, proc)
            _wrk(port, receive, 2)  # warm-up
            log(f"   wrk -c50 {dur}s: receive alone")
            alone = _wrk(port, receive, dur)
            rows_before, cps_before = _counts(url)
            log(f"   wrk -c50 {dur}s: receive, with <= {connections * 1000 // delay_ms} bad tokens/s")
            flood = _flood(port, flood_script, dur + 2, connections)
            time.sleep(1)
            flooded = _wrk(port, receive, dur)
            flood_out, _ = flood.communicate(timeout=dur + 30)
            time.sleep(1.5)  # the refusal writer's next batch
            rows_after, cps_after = _counts(url)
            log(f"   wrk -c50 {dur}s: receive alone again")
            again = _wrk(port, receive, dur)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    base = alone if alone["rps"] >= again["rps"] else again
    rate, sent = _flood_rate(flood_out)
    ratio = flooded["rps"] / base["rps"] if base["rps"] else float("nan")
    note = (f"flood {rate:.0f} req/s ({sent} bad requests); access log +{rows_after - rows_before}"
            f" rows, +{cps_after - cps_before} checkpoints; receive non-2xx under flood:"
            f" {flooded['non2xx']}")
    extra: dict[str, Any] = {"flood_wrk": flood_out, "receive_wrk": flooded["raw"]}
    return [
        Row(SECTION, f"POST /stock/receive throughput, bad tokens offered <= {connections * 1000 // delay_ms}/s",
            flooded["rps"],
            "req/s", "POST /stock/receive alone", base["rps"], target=">= 0.80 x alone",
            met=ratio >= 0.80, notes=note, extra=extra),
        Row(SECTION, "POST /stock/receive p99 under the flood", flooded["p99"], "ms",
            "p99 alone", base["p99"], higher_is_better=False, notes=note),
    ]


def main() -> int:
    import argparse

    from bench.common import scratch_dir
    from bench.run import render_table

    p = argparse.ArgumentParser(prog="python -m bench.flood")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--duration", type=int, default=None)
    p.add_argument("--flood-connections", type=int, default=FLOOD_CONNECTIONS)
    p.add_argument("--flood-delay-ms", type=int, default=FLOOD_DELAY_MS,
                   help="pause per connection between bad requests (rate <= conns x 1000 / delay)")
    ns = p.parse_args()
    quiet_logs()
    cfg = Config.make(quick=ns.quick, engines=["postgresql"])
    with scratch_dir() as wd:
        rows = run(cfg, wd, lambda m: print(m, file=sys.stderr, flush=True),
                   duration=ns.duration, connections=ns.flood_connections,
                   delay_ms=ns.flood_delay_ms)
    print(render_table(rows))
    for r in rows[:1]:
        print(r.notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
