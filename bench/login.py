"""Key login (issue #9): ``POST /auth/challenge`` + signing + ``POST /auth/token``,
one client at a time, against ``GET /health`` on the same server in the same run.

The service runs in this process under uvicorn (a thread, a real TCP socket) over a
fresh SQLite ledger with one self-custody user; the client is httpx. A login is two
round trips and two database writes (the nonce stored, then consumed), a signature
made by the client and checked by the server, and a token signed: its p99 is reported
as a ratio to the p99 of ``GET /health`` (one round trip, no database).

Run alone: ``python -m bench.login [--quick]`` or ``python -m bench.run --only login``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import PASSPHRASE, Config, Row, percentile, quiet_logs, register_operator

SECTION = "login"
TARGET_P99_MS = 50.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cfg: Config, workdir: Path, log: Callable[[str], None]) -> list[Row]:
    import httpx
    import uvicorn

    from api.app import create_app
    from api.auth import TokenSettings
    from api.config import ApiSettings
    from api.services import build_services
    from keys import Ed25519Signer, FileKeystore
    from ledger.config import Settings
    from ledger.login import sign_login
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    home = workdir / "login"
    home.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{home / 'ledger.db'}"
    led = Ledger(make_engine(db_url), FileKeystore(home / "keys", passphrase=PASSPHRASE))
    led.init(log_id="bench.local/login", admin="admin")
    user = Ed25519Signer.generate()
    register_operator(led, "olga", admin="admin", public_key=user.public_key)
    settings = ApiSettings(ledger=Settings(home=home, db_url=db_url, user=None, log_level="error"),
                           token=TokenSettings())
    svc = build_services(settings, passphrase=PASSPHRASE)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port,
                                           log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    n = 100 if cfg.quick else 1000
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base) as client:

            def login() -> None:
                c = client.post("/auth/challenge", json={"user": "olga"}).json()
                sig = sign_login(user, log_id=c["log_id"], nonce=c["nonce"])
                r = client.post("/auth/token", json={"nonce": c["nonce"],
                                                     "public_key": user.public_key.hex(),
                                                     "signature": sig})
                assert r.status_code == 200, r.text

            def health() -> None:
                assert client.get("/health").status_code == 200

            def sample(fn: Callable[[], None]) -> list[float]:
                for _ in range(10):  # warm-up, not timed
                    fn()
                out = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    fn()
                    out.append((time.perf_counter() - t0) * 1000)
                return sorted(out)

            h1 = sample(health)
            lg = sample(login)
            h2 = sample(health)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        svc.committer.close()
    h = min(h1, h2, key=lambda v: percentile(v, 99))
    lp50, lp99 = percentile(lg, 50), percentile(lg, 99)
    hp50, hp99 = percentile(h, 50), percentile(h, 99)
    log(f"  key login p50 {lp50:.2f} ms p99 {lp99:.2f} ms; GET /health p50 {hp50:.2f} p99 {hp99:.2f} ms (n={n})")
    note = "one client, sequential; SQLite; challenge + client signature + token"
    return [
        Row(SECTION, "key login p50 (challenge + token)", lp50, "ms", "GET /health p50", hp50,
            higher_is_better=False, notes=note),
        Row(SECTION, "key login p99 (challenge + token)", lp99, "ms", "GET /health p99", hp99,
            higher_is_better=False, target=f"<= {TARGET_P99_MS:.0f} ms", met=lp99 <= TARGET_P99_MS,
            notes=note),
    ]


def main() -> int:
    import argparse

    from bench.common import scratch_dir

    p = argparse.ArgumentParser(prog="python -m bench.login")
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args()
    quiet_logs()
    with scratch_dir() as workdir:
        for row in run(Config.make(quick=ns.quick), workdir, print):
            print(f"{row.name}: {row.value:.2f} {row.unit} (baseline {row.baseline_name} "
                  f"{row.baseline_value:.2f}, ratio {row.ratio:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
