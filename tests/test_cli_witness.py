"""Witnesses, quorum and the auditor's client commands end to end, as separate processes:
a witness server, the service with its background feeder, and ``reserve audit``."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import ROOT, add_site, assert_one_line_error, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    base.update({"RESERVE_HOME": str(home), "RESERVE_PASSPHRASE": "cli-test-pass", **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=base, cwd=ROOT,
    )


def wait_http(url: str, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        p.terminate()
        p.wait(timeout=10)


def test_witness_quorum_and_audit_commands(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--log-id", "test.local/cli").returncode == 0
    add_site(home)
    for user, role in (("olga", "operator"), ("audrey", "auditor")):
        r = run(home, "keys", "register", "--as", "admin", "--user", user, "--roles", role, "--sites", "SITE-A")
        assert r.returncode == 0, r.stderr
    assert run(home, "move", "ACC-1", "7", env={"RESERVE_USER": "olga"}).returncode == 0
    b0 = tmp_path / "b0"
    assert run(home, "export", str(b0)).returncode == 0
    log_vkey = (b0 / "log.vkey").read_text().strip()

    # the partner's witness: key made and kept in its state dir, never printed
    wdir = tmp_path / "witness"
    init = run(home, "witness", "init", "w1.example/witness", "--state", str(wdir))
    assert init.returncode == 0, init.stderr
    vkey = init.stdout.strip()
    assert vkey.startswith("w1.example/witness+") and len(init.stdout.splitlines()) == 1
    key_files = [p for p in (wdir / "keys").iterdir() if p.is_file() and not p.name.endswith(".pub")]
    assert key_files and all(oct(p.stat().st_mode & 0o777) == "0o600" for p in key_files)
    wport = free_port()
    procs.append(spawn(home, "witness", "serve", "--state", str(wdir), "--port", str(wport), "--log", log_vkey))
    wait_http(f"http://127.0.0.1:{wport}/")

    assert run(home, "witness", "add", "w1.example/witness", f"http://127.0.0.1:{wport}", vkey).returncode == 0
    bad = run(home, "witness", "add", "w2", "http://x", vkey)
    assert_one_line_error(bad)

    # no cosignature yet: a quorum of 1 refuses, naming size and count
    refused = run(home, "verify", "--witness", vkey)
    assert refused.returncode == 1
    assert "checkpoint at size 6 has 0 valid cosignature(s)" in refused.stderr
    usage = run(home, "verify", "--witness", vkey, "--quorum", "2")
    assert usage.returncode == 2
    fed = run(home, "witness", "feed")
    assert fed.stdout.strip() == "w1.example/witness: cosigned", fed.stderr
    ok = run(home, "verify", "--witness", vkey, "--quorum", "1")
    assert ok.returncode == 0, ok.stderr

    b1 = tmp_path / "b1"
    assert run(home, "export", str(b1)).returncode == 0
    assert "— w1.example/witness " in (b1 / "checkpoint.note").read_text()
    vb = run(home, "verify-bundle", str(b1), "--trust", str(home / "log.pub"), "--witness", vkey)
    assert vb.returncode == 0, vb.stderr
    vb0 = run(home, "verify-bundle", str(b0), "--trust", str(home / "log.pub"), "--witness", vkey)
    assert vb0.returncode == 1 and "0 valid cosignature" in vb0.stderr
    with sqlite3.connect(home / "ledger.db") as db:
        leaves = [bytes(r[0]) for r in db.execute("SELECT leaf FROM access_log ORDER BY seq")]
    assert sum(b'"action":"export"' in leaf and b'"via":"cli"' in leaf for leaf in leaves) == 2

    # the service: feeds the witness in the background, serves the auditor
    port = free_port()
    procs.append(spawn(home, "serve", "--port", str(port), env={"RESERVE_WITNESS_INTERVAL": "0.2"}))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/health")
    assert run(home, "move", "ACC-1", "5", env={"RESERVE_USER": "olga"}).returncode == 0
    deadline = time.time() + 20
    while time.time() < deadline:
        note = urllib.request.urlopen(base + "/log/checkpoint").read().decode()
        if note.split("\n")[1] == "7" and "— w1.example/witness " in note:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the service did not collect the witness's cosignature")
    token = run(home, "token", "--user", "audrey").stdout.strip()
    env = {"RESERVE_TOKEN": token, "RESERVE_URL": base}
    state = tmp_path / "audit"
    s1 = run(home, "audit", "sync", "--state", str(state), "--witness", vkey, "--trust", str(home / "log.pub"), env=env)
    assert s1.returncode == 0, s1.stderr
    assert s1.stdout.startswith("OK size 7 ") and "verified 7 new entries since size 0" in s1.stdout
    assert run(home, "move", "ACC-1", "1", env={"RESERVE_USER": "olga"}).returncode == 0
    time.sleep(1.0)  # the feeder's next round
    s2 = run(home, "audit", "sync", "--state", str(state), "--witness", vkey, env=env)
    assert s2.returncode == 0, s2.stderr
    assert "verified 1 new entries since size 7" in s2.stdout
    noauth = run(home, "audit", "sync", "--state", str(state), env={"RESERVE_URL": base})
    assert noauth.returncode == 2 and "--as USER" in noauth.stderr
    # Without a token the auditor signs in by key login, as every client command does.
    assert run(home, "move", "ACC-1", "1", env={"RESERVE_USER": "olga"}).returncode == 0
    time.sleep(1.0)
    s3 = run(home, "audit", "sync", "--state", str(state), "--witness", vkey, "--as", "audrey",
             env={"RESERVE_URL": base})
    assert s3.returncode == 0, s3.stderr
    assert "verified 1 new entries since size 8" in s3.stdout
    fetched = tmp_path / "fetched"
    f = run(home, "audit", "fetch", str(fetched), env=env)
    assert f.returncode == 0, f.stderr
    vf = run(home, "verify-bundle", str(fetched), "--trust", str(home / "log.pub"), "--witness", vkey)
    assert vf.returncode == 0, vf.stderr
    (state / "state.json").write_bytes(b"{}\n{}\n")
    broken = run(home, "audit", "sync", "--state", str(state), env=env)
    assert_one_line_error(broken)
    assert broken.returncode == 1 and "saved audit state" in broken.stderr
