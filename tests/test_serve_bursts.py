"""Fresh starts of ``reserve serve`` under a burst (issue #8 item 1 and "Tests that must
exist"): ten real server processes, each hit by 32 concurrent writes the moment it
answers ``/health``. The server must stay up and acknowledge every write.

This proves the msgspec warm-up (every decoder built before serving) that the
``hostile-ledger`` branch adds: until that branch is merged, this test may fail
intermittently here (the server dying with signal 11 on a fresh start), which is the
defect it exists to catch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import api_fixtures
from tests.api_fixtures import JP, LOT_NDPR, SITE_A, copy_world, scratch_dir
from tests.conftest import PASSPHRASE

pytestmark = pytest.mark.slow

# REMOVE THIS MARK when the hostile-ledger branch (msgspec warm-up) is merged: without it
# a fresh server dies with signal 11 under the burst on some starts (seen here at start
# 9 of 10), which is what this test catches. Not strict, so it passes once fixed.
api_template = api_fixtures.api_template

STARTS = 10
BURST = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command(port: int) -> list[str]:
    reserve = Path(sys.executable).with_name("reserve")
    if reserve.exists():
        return [str(reserve), "serve", "--port", str(port)]
    return [sys.executable, "-m", "cli", "serve", "--port", str(port)]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.01)
    raise AssertionError("the server did not answer /health in time")


def _post(port: int, token: str, key: str, body: dict[str, Any]) -> int | str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/stock/receive",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError as exc:  # the connection died: the server did
        return type(exc).__name__


def test_fresh_starts_survive_a_burst_of_writes(
    api_template: api_fixtures.Template, tmp_path: Path
) -> None:
    with scratch_dir(tmp_path) as base:
        w = copy_world(api_template, base / "home")
        home, db_url = w.home, w.db_url
        token = w.token("olga")  # the issuer key is in the copy's keystore now
        before = w.entry_count()
        w.close()
        env = {
            **os.environ,
            "RESERVE_HOME": str(home),
            "RESERVE_DB": db_url,
            "RESERVE_PASSPHRASE": PASSPHRASE.decode(),
            "RESERVE_LOG_LEVEL": "warning",
        }
        acknowledged = 0
        for start in range(STARTS):
            port = _free_port()
            err = home / f"serve-{start}.err"
            out = home / f"serve-{start}.out"
            with open(err, "wb") as err_file, open(out, "wb") as out_file:
                proc = subprocess.Popen(
                    _serve_command(port), env=env, stdout=out_file, stderr=err_file
                )
                try:
                    _wait_ready(port, proc)
                    # A newcomer is told where the service listens, once it does.
                    said = f"listening on http://127.0.0.1:{port}"
                    deadline = time.monotonic() + 10
                    while said not in out.read_text() and time.monotonic() < deadline:
                        time.sleep(0.05)
                    assert said in out.read_text(), out.read_text()
                    results: list[int | str] = [0] * BURST
                    gate = threading.Barrier(BURST)

                    def send(i: int, start: int = start, port: int = port) -> None:
                        body = {
                            "site": SITE_A,
                            "owner": JP,
                            "lot": LOT_NDPR,
                            "quantity": "1 kg",
                            "occurred_at": "2026-01-01T00:00:00Z",
                            "supplier": "Lynas Rare Earths",
                            "accepted_purity": "99.50",
                            "reference": f"PO-BURST-{start}-{i}",
                        }
                        gate.wait()
                        results[i] = _post(port, token, f"burst-{start}-{i}", body)

                    threads = [threading.Thread(target=send, args=(i,)) for i in range(BURST)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join(timeout=120)
                    alive = proc.poll() is None
                    assert alive, (
                        f"start {start}: the server died ({proc.returncode}) under the burst: "
                        + err.read_bytes().decode(errors="replace")[-500:]
                    )
                    assert results == [201] * BURST, (start, results)
                    acknowledged += BURST
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        # Every acknowledged write is in the log.
        from sqlalchemy import func, select

        from ledger.store.db import make_engine
        from ledger.store.schema import entries

        engine = make_engine(db_url)
        with engine.connect() as conn:
            size = int(conn.execute(select(func.count()).select_from(entries)).scalar_one())
        engine.dispose()
        assert size == before + acknowledged
