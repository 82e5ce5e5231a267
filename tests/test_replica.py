"""A read replica on PostgreSQL streaming replication (issue #11), for real: a hot
standby of the shared server (``pg_basebackup -R``) on another port. The service runs
two workers writing to the primary and reading from the standby; a realistic scenario
goes over HTTP; then the history is verified and exported on the replica alone.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ledger.store.db import make_engine
from ledger.store.replica import replica_status, wait_for_replay
from tests.pg_cluster import (
    LOT,
    OWNER,
    SITE_A,
    SITE_B,
    Cluster,
    Server,
    hot_standby,
    receipt,
    seed_ledger,
    service_env,
    tokens_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
OPERATORS = ["olga", "omar"]


@pytest.fixture(scope="module")
def standby() -> Iterator[Cluster]:
    with hot_standby() as c:
        yield c


def _on_standby(pg_url: str, standby: Cluster) -> str:
    """The same database and schema, on the standby's port."""
    parts = urlsplit(pg_url)
    return parts._replace(netloc=f"postgres@127.0.0.1:{standby.port}").geturl()


def _reserve(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("reserve"))
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False, timeout=300)


def test_scenario_on_primary_verified_on_replica(pg_url: str, standby: Cluster, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    seed_ledger(pg_url, home, OPERATORS)
    read_url = _on_standby(pg_url, standby)
    env = service_env(home, pg_url, RESERVE_DB_READ=read_url)
    server = Server(env, workers=2, logdir=tmp_path)
    server.start()
    primary, replica = make_engine(pg_url, readonly=True), make_engine(read_url, readonly=True)
    try:
        tok = tokens_for(home, OPERATORS)
        olga = {"Authorization": f"Bearer {tok['olga']}"}
        with httpx.Client(base_url=server.base, timeout=30) as c:
            for i in range(20):
                r = c.post("/stock/receive", json=receipt(f"PO-{i}", 50_000), headers=olga)
                assert r.status_code == 201, r.text
            d = c.post("/stock/dispatch", headers=olga, json={
                "site": SITE_A, "owner": OWNER, "lot": LOT, "quantity": "200 kg",
                "occurred_at": "2026-01-02T00:00:00Z", "to_site": SITE_B, "reference": "TR-1"})
            assert d.status_code == 201, d.text
            omar = {"Authorization": f"Bearer {tok['omar']}"}
            a = c.post("/stock/arrive", headers=omar, json={
                "site": SITE_B, "transfer": d.json()["entry_id"], "quantity": "199 kg",
                "occurred_at": "2026-01-03T00:00:00Z", "shortfall_reason": "spillage at unloading"})
            assert a.status_code == 201, a.text
            size = a.json()["seq"] + 1

            wait_for_replay(primary, replica, timeout=60)
            st = replica_status(primary, replica)
            assert st.in_recovery and st.behind_entries == 0
            ready = c.get("/ready").json()
            assert ready["replica"]["in_recovery"] is True
            assert ready["replica"]["behind_entries"] == 0
            metrics = c.get("/metrics").text
            assert "reserve_replica_lag_seconds" in metrics and "reserve_replica_behind_entries 0.0" in metrics

            # Reads come from the replica: what it shows is the primary's history.
            bal = c.get("/balances", headers=olga)
            assert bal.status_code == 200, bal.text
            text = bal.text
            assert SITE_A in text and SITE_B in text
            cp = c.get("/log/checkpoint").text
            assert f"\n{size}\n" in cp
    finally:
        server.stop()
        primary.dispose()
        replica.dispose()

    # Verification and export on the replica alone: the primary named here does not
    # even answer, so nothing can have been read from it.
    replica_only = {**env, "RESERVE_DB": "postgresql://postgres@127.0.0.1:1/nowhere"}
    v = _reserve(["verify", "--trust", str(home / "log.pub")], replica_only)
    assert v.returncode == 0, v.stderr
    assert v.stdout.startswith(f"OK size {size} ")
    # An export is recorded in the access log first (issue #10), on the primary: without
    # it there is no export; with it, the bundle itself is read from the replica.
    bundle = tmp_path / "bundle"
    refused = _reserve(["export", str(bundle)], replica_only)
    assert refused.returncode == 1 and "access log" in refused.stderr, refused.stderr
    assert not (bundle / "entries.jsonl").exists()
    e = _reserve(["export", str(bundle)], env)
    assert e.returncode == 0, e.stderr
    vb = _reserve(["verify-bundle", str(bundle), "--trust", str(home / "log.pub")], replica_only)
    assert vb.returncode == 0, vb.stderr
    assert vb.stdout.startswith(f"OK size {size} ")


def test_replica_cannot_be_written(pg_url: str, standby: Cluster, tmp_path: Path) -> None:
    """The standby refuses writes itself: a misconfigured RESERVE_DB_READ can never take
    an append, and the append path never uses it."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    eng = make_engine(_on_standby(pg_url, standby))
    with pytest.raises(DBAPIError, match="read-only"), eng.begin() as c:
        c.execute(text("CREATE TABLE should_fail (x int)"))
    eng.dispose()
