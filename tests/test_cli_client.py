"""``reserve`` as a client of a running service (issue #9), end to end over HTTP.

Every person has their own RESERVE_HOME with a keystore holding their key alone: a
security admin, an operator, a second officer, two officials and a minister. The
server's administrator (local mode on the server) only initialises the ledger, registers
the security admin and the sealed site, and verifies the log at the end.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.timefmt import format_time
from tests.test_cli import ROOT, assert_one_line_error, run

JP, NDPR, SITE, LOT = "JP-RESERVE", "NDPR-OXIDE", "SITE-7F3K", "LOT-1"
PEOPLE = {  # user: (roles, sites, owners)
    "sam": ("security_admin", "", ""),
    "olga": ("operator", SITE, ""),
    "oscar": ("operator", SITE, ""),
    "fiona": ("official", "", JP),
    "felix": ("official", "", JP),
    "mina": ("minister", "", JP),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class World:
    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = root, url
        self.server = root / "server"

    def home(self, user: str) -> Path:
        return self.root / user

    def client(self, user: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"RESERVE_URL": self.url, "RESERVE_USER": user, "RESERVE_PASSPHRASE": f"pass-of-{user}"}
        return run(self.home(user), *args, env=env, input=input)

    def ok(self, user: str, *args: str) -> str:
        proc = self.client(user, *args)
        assert proc.returncode == 0, (user, args, proc.stderr)
        # Nothing on stderr but the test suite's own cheap-KDF warning (tests/conftest.py).
        assert all("unsafe_kdf_cost" in line for line in proc.stderr.splitlines()), proc.stderr
        return proc.stdout

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.server, *args)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("client")
    port = _free_port()
    w = World(root, f"http://127.0.0.1:{port}")
    assert w.admin("init", "--log-id", "test.local/client").returncode == 0
    loc = root / "loc.json"
    loc.write_text(json.dumps({"name": "Depot", "address": "Nowhere 1", "latitude": 1.5, "longitude": 2.5}))
    for step in (
        ["owner", "add", JP, "--name", "Japan reserve", "--country", "JP", "--as", "admin"],
        ["material", "add", NDPR, "--name", "NdPr oxide", "--form", "oxide", "--grade-basis", "TREO", "--as", "admin"],
        ["site", "add", SITE, "--classification", "SECRET", "--custodian", JP, "--location-file", str(loc), "--as", "admin"],
    ):
        proc = w.admin(*step)
        assert proc.returncode == 0, proc.stderr
    # Each person makes their own keystore; the public key is all that travels.
    for user in PEOPLE:
        out = w.ok(user, "keys", "generate", user)
        hexkey = out.split("public key (hex): ")[1].split()[0]
        (root / f"{user}.pub").write_text(hexkey)
    proc = w.admin("keys", "register", "--as", "admin", "--user", "sam", "--roles", "security_admin",
                   "--public-key-file", str(root / "sam.pub"))
    assert proc.returncode == 0, proc.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env.update({"RESERVE_HOME": str(w.server), "RESERVE_PASSPHRASE": "cli-test-pass"})
    server = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(w.url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("reserve serve did not start") from None
                time.sleep(0.2)
        yield w
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_end_to_end_each_person_signs_with_their_own_key(world: World, tmp_path: Path) -> None:
    w = world
    # The security admin registers everyone's own public key, over HTTP.
    for user, (roles, sites, owners) in PEOPLE.items():
        if user == "sam":
            continue
        args = ["keys", "register", "--user", user, "--roles", roles, "--public-key-file", str(w.root / f"{user}.pub")]
        args += ["--sites", sites] if sites else []
        args += ["--owners", owners] if owners else []
        assert "registered a key for" in w.ok("sam", *args)
    token = w.home("sam") / "token.json"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert json.loads(token.read_text())["access_token"] not in w.ok("sam", "login")

    cert = tmp_path / "cert.pdf"
    cert.write_bytes(b"%PDF assay")
    w.ok("olga", "lot", "add", LOT, "--material", NDPR, "--origin", "AU", "--supplier", "Lynas", "--purity", "99.5",
         "--basis", "TREO", "--certificate", str(cert))
    out = w.ok("olga", "stock", "receive", "--site", SITE, "--owner", JP, "--lot", LOT, "--qty", "12.5 t",
               "--supplier", "Lynas", "--purity", "99.5", "--reference", "DN-1")
    assert out.startswith("recorded stock.receipt at seq ")
    balances = json.loads(w.ok("olga", "balances", "--format", "json"))
    assert [b["quantity"] for b in balances["balances"]] == ["12.5 t"]
    assert "12.5 t" in w.ok("olga", "balances", "--format", "csv").splitlines()[1]

    # A count beyond tolerance: a proposal the second officer signs with their own key.
    proposed = w.ok("olga", "stock", "count", "--site", SITE, "--owner", JP, "--lot", LOT, "--book", "12.5 t",
                    "--counted", "12 t", "--second-officer", "oscar")
    assert proposed.startswith("proposed stock.count: proposal ")
    pid = proposed.split("proposal ")[1].split()[0]
    assert pid in w.ok("oscar", "pending")
    assert pid not in w.ok("fiona", "pending")
    unasked = w.client("oscar", "cosign", pid)  # off a terminal, nobody signs unasked
    assert unasked.returncode == 2 and "--yes" in unasked.stderr
    not_named = w.client("fiona", "cosign", pid, "--yes")
    assert_one_line_error(not_named)
    assert not_named.returncode == 1
    shown = w.ok("oscar", "cosign", pid, "--yes")
    assert "counted: 12 t (12000000 g)" in shown and "appended at seq" in shown
    assert "12 t" in w.ok("olga", "balances")

    # A release policy: the security admin proposes, the minister co-signs.
    effective = datetime.now(UTC) + timedelta(seconds=20)  # a few CLI starts away
    proposed = w.ok("sam", "release", "policy", "--owner", JP, "--material", NDPR, "--quorum", "1",
                    "--crisis-index", "FASTMARKETS-NDPR", "--crisis-currency", "USD", "--crisis-threshold", "95",
                    "--regimes", "emergency_release,loan", "--effective-at", format_time(effective), "--cosign", "mina")
    pid = proposed.split("proposal ")[1].split()[0]
    assert "waiting" in w.ok("sam", "proposal", "show", pid) or "open" in w.ok("sam", "proposal", "show", pid)
    assert "appended at seq" in w.ok("mina", "cosign", pid, "--yes")
    assert "to come" in w.ok("fiona", "release", "policies") or "in force" in w.ok("fiona", "release", "policies")
    while datetime.now(UTC) <= effective:
        time.sleep(0.2)

    declaration = tmp_path / "declaration.pdf"
    declaration.write_bytes(b"%PDF exhausted")
    price = w.ok("felix", "release", "price", "--index", "FASTMARKETS-NDPR", "--material", NDPR, "--value", "120",
                 "--currency", "USD", "--source", "Fastmarkets").split()[-1]
    req = w.ok("fiona", "release", "request", "--owner", JP, "--material", NDPR, "--qty", "2 t",
               "--recipient", "Demo Magnetics KK", "--regime", "emergency_release", "--purpose", "magnet lines idle",
               "--declaration", str(declaration), "--price-observation", price).split()[-1]
    own = w.client("fiona", "release", "approve", req)
    assert_one_line_error(own)
    assert own.returncode == 1 and "nobody approves their own request" in own.stderr
    w.ok("felix", "release", "approve", req)
    order = w.ok("mina", "release", "order", req, "--cap", "2 t", "--valid-until", "2099-01-01T00:00:00Z",
                 "--sites", SITE, "--report-to", "Diet committee").split()[-1]
    w.ok("olga", "stock", "release", "--site", SITE, "--owner", JP, "--lot", LOT, "--qty", "1.5 t", "--order", order,
         "--recipient", "Demo Magnetics KK")
    listed = json.loads(w.ok("fiona", "release", "list", "--all", "--format", "json"))
    assert [o["remaining_g"] for o in listed["orders"]] == [500_000]

    # Nobody's keystore holds a second person's key.
    for user in PEOPLE:
        names = {p.name.split(".")[0] for p in (w.home(user) / "keys").iterdir() if not p.name.startswith(".")}
        assert names == {user}, (user, names)
    # And the log verifies, every signature included.
    verified = w.admin("verify", "--trust", str(w.server / "log.pub"))
    assert verified.returncode == 0, verified.stderr


def test_client_errors_are_one_line_with_the_local_exit_codes(world: World) -> None:
    w = world
    # Refused by a rule of the service (an admin records no movement): exit 1.
    refused = w.client("sam", "stock", "receive", "--site", SITE, "--owner", JP, "--lot", LOT, "--qty", "1 t",
                       "--supplier", "S", "--purity", "99", "--reference", "R")
    assert_one_line_error(refused)
    assert refused.returncode == 1
    # Sites' locations are sealed on the server: local mode only.
    site = w.client("sam", "site", "add", "SITE-2B9Q", "--classification", "SECRET", "--custodian", JP,
                    "--location-file", "-", input="{}")
    assert_one_line_error(site)
    assert site.returncode == 2 and "local mode" in site.stderr
    # Server commands are refused in client mode.
    init = w.client("sam", "init")
    assert_one_line_error(init)
    assert init.returncode == 2
    # A service that does not answer: exit 2, naming the URL.
    down = run(w.home("sam"), "owner", "list", env={"RESERVE_URL": "http://127.0.0.1:9", "RESERVE_USER": "sam",
                                                   "RESERVE_PASSPHRASE": "pass-of-sam"})
    assert_one_line_error(down)
    assert down.returncode == 2 and "cannot reach the service at http://127.0.0.1:9" in down.stderr
    # A user without a key in their keystore cannot log in, and says how to get one.
    nokey = run(w.root / "nobody", "owner", "list", env={"RESERVE_URL": w.url, "RESERVE_USER": "nobody",
                                                         "RESERVE_PASSPHRASE": "x-pass"})
    assert_one_line_error(nokey)
    assert nokey.returncode == 2 and "keys generate" in nokey.stderr


def test_client_keystore_refuses_a_second_person(world: World) -> None:
    proc = world.client("olga", "keys", "generate", "oscar")
    assert_one_line_error(proc)
    assert proc.returncode == 2 and "another person's key" in proc.stderr


def test_expired_token_is_renewed_by_a_new_challenge(world: World) -> None:
    token = world.home("fiona") / "token.json"
    world.ok("fiona", "owner", "list")
    doc = json.loads(token.read_text())
    doc["access_token"] = "not-a-token"  # a revoked or garbled token: the service says 401
    token.write_text(json.dumps(doc))
    assert JP in world.ok("fiona", "owner", "list")
    assert json.loads(token.read_text())["access_token"] != "not-a-token"
    doc = json.loads(token.read_text())
    doc["expires_at"] = 0  # expired: renewed before the call
    token.write_text(json.dumps(doc))
    assert JP in world.ok("fiona", "owner", "list", "--format", "csv")
    assert json.loads(token.read_text())["expires_at"] > time.time()
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
