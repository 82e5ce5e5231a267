"""Private PostgreSQL clusters for tests that must restart a server or replicate one
(issue #11), and the `reserve serve --workers N` subprocess those tests drive.

* ``private_cluster``: a fresh cluster (``initdb``) on a free port in a temporary
  directory, run as the ``postgres`` user: a test may stop, crash and restart it without
  touching the shared server other engineers' tests use.
* ``hot_standby``: a streaming replica of the shared server at 127.0.0.1:5432, made with
  ``pg_basebackup -R`` and started on a free port. Replication needs a ``replication``
  line in the server's pg_hba; if it has none and this process may edit that file (root),
  one trust line for 127.0.0.1 is added once and the configuration reloaded (never a
  restart: other runs keep working).

Where a cluster cannot be started they skip with the reason, and fail instead under
``LEDGER_REQUIRE_POSTGRES=1`` (CI).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_BASE, REQUIRE_PG, require_pg

REPLICATION_HBA = "host replication all 127.0.0.1/32 trust"


def unavailable(reason: str) -> None:
    if REQUIRE_PG:
        pytest.fail(reason + " and LEDGER_REQUIRE_POSTGRES=1")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_major() -> str:
    eng = create_engine(PG_BASE)
    with eng.connect() as c:
        v = str(c.execute(text("show server_version_num")).scalar())
    eng.dispose()
    return str(int(v) // 10000)


def _bindir() -> Path | None:
    major = _server_major()
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d).parent.name == major and Path(d, "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _as_postgres(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Run as the postgres user (PostgreSQL refuses to run as root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, schema: str, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}?options=-csearch_path%3D{schema}"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.datadir}"
        )
        return _as_postgres(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l",
             str(self.datadir / "server.log"), "-w", "-t", "60", *args]
        )

    def start(self) -> None:
        r = self.pg_ctl("start")
        if r.returncode != 0:
            log = (self.datadir / "server.log").read_text(errors="replace")[-800:]
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()[:300]} {log}")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def crash(self) -> None:
        """Kill the postmaster as a power cut would end it: no shutdown checkpoint."""
        self.stop("immediate")


def _prepare_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="reserve-pg-"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(d, pw.pw_uid, pw.pw_gid)
    d.chmod(0o700)
    return d


def _cluster_bindir() -> Path:
    require_pg()
    if os.geteuid() != 0:
        try:
            if pwd.getpwuid(os.geteuid()).pw_name != "postgres":
                unavailable("a private PostgreSQL cluster needs root or the postgres user")
        except KeyError:
            unavailable("a private PostgreSQL cluster needs root or the postgres user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("no postgres system user to run a private cluster")
    bindir = _bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries (pg_ctl, initdb) not found")
    assert bindir is not None
    return bindir


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    bindir = _cluster_bindir()
    parent = _prepare_dir()
    data = parent / "data"
    r = _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                      "--no-instructions", "-E", "UTF8"])
    if r.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        unavailable(f"initdb failed: {r.stderr.strip()[:300]}")
    cluster = Cluster(bindir, data, free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(parent, ignore_errors=True)


def _ensure_replication_allowed() -> None:
    """Idempotent: a replication line in the shared server's pg_hba, then a reload."""
    eng = create_engine(PG_BASE)
    try:
        with eng.connect() as c:
            ok = c.execute(
                text(
                    "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) "
                    "AND (address IS NULL OR address = '127.0.0.1') AND error IS NULL"
                )
            ).scalar()
            if ok:
                return
            hba = Path(str(c.execute(text("show hba_file")).scalar()))
        if not os.access(hba, os.W_OK):
            unavailable("the PostgreSQL server allows no replication connection and its pg_hba is not writable here")
        lines = hba.read_text().splitlines()
        if REPLICATION_HBA not in lines:
            with hba.open("a") as f:
                f.write(f"\n# added by the reserve-ledger tests (issue #11): a local hot standby\n{REPLICATION_HBA}\n")
        with eng.connect() as c:
            c.execute(text("SELECT pg_reload_conf()"))
        time.sleep(0.5)
    finally:
        eng.dispose()


@contextmanager
def hot_standby() -> Iterator[Cluster]:
    """A streaming replica of the shared server (read-only, hot standby)."""
    bindir = _cluster_bindir()
    _ensure_replication_allowed()
    parent = _prepare_dir()
    data = parent / "data"
    r = _as_postgres([str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", "5432", "-U", "postgres",
                      "-D", str(data), "-X", "stream", "-R", "--checkpoint=fast", "--no-sync"],
                     timeout=300)
    if r.returncode != 0:
        shutil.rmtree(parent, ignore_errors=True)
        unavailable(f"pg_basebackup failed: {r.stderr.strip()[:300]}")
    # Debian keeps the server's configuration outside its data directory: the standby
    # gets its own minimal one (the replication settings are in postgresql.auto.conf).
    for name, content in (
        ("postgresql.conf", "hot_standby = on\nhot_standby_feedback = on\nmax_connections = 100\n"),
        ("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n"),
        ("pg_ident.conf", ""),
    ):
        (data / name).write_text(content)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(data / name, pw.pw_uid, pw.pw_gid)
    for stale in ("postmaster.pid", "postmaster.opts"):
        with suppress(FileNotFoundError):
            (data / stale).unlink()
    cluster = Cluster(bindir, data, free_port())
    try:
        try:
            cluster.start()
        except RuntimeError as exc:
            unavailable(f"the hot standby did not start: {exc}")
        eng = create_engine(cluster.url)
        with eng.connect() as c:
            assert c.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        eng.dispose()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(parent, ignore_errors=True)


# -- the service as a subprocess ---------------------------------------------------------


class Server:
    """``reserve serve --workers N`` on a free port, stdout/stderr to a file."""

    def __init__(self, env: dict[str, str], workers: int, logdir: Path):
        self.port = free_port()
        self.env = env
        self.workers = workers
        self.log = logdir / f"serve-{self.port}.log"
        reserve = Path(sys.executable).with_name("reserve")
        self.cmd = [str(reserve), "serve", "--port", str(self.port), "--workers", str(workers)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.log.read_text()[-800:]}")
            if len(self.worker_pids()) >= self.workers:
                try:
                    with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                        if r.status == 200:
                            return
                except (urllib.error.URLError, OSError):
                    pass
            time.sleep(0.2)
        raise RuntimeError("the service did not come up: " + self.log.read_text()[-800:])

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children running multiprocessing's spawn)."""
        if self.proc is None:
            return []
        pids = []
        for child in _children(self.proc.pid):
            with suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                    pids.append(child)
        return pids

    def stop(self) -> None:
        if self.proc is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with suppress(OSError):
            out.extend(int(x) for x in Path(task).read_text().split())
    return out


# -- a small real ledger and a client that retries like a real one -------------------------

SITE_A, SITE_B, OWNER, MATERIAL, LOT = "SITE-7F3K", "SITE-2B9Q", "JP-RESERVE", "NDPR-OXIDE", "NDPR-2025-001"
LOG_ID = "test.local/workers"


def seed_ledger(url: str, home: Path, operators: list[str]) -> None:
    """Genesis, an owner, a material, two sealed sites, operators scoped to both, a lot;
    writes ``log.pub`` for ``reserve verify --trust``."""
    from keys import FileKeystore
    from keys.sealing import load_or_create_sealer
    from ledger.locations import Location
    from ledger.pubkey import to_pem
    from ledger.service import Ledger
    from ledger.store.db import make_engine
    from tests.conftest import PASSPHRASE

    keydir = home / "keys"
    led = Ledger(make_engine(url), FileKeystore(keydir, passphrase=PASSPHRASE))
    led.init(log_id=LOG_ID, admin="admin")
    led.sealer = load_or_create_sealer(keydir, passphrase=PASSPHRASE)
    (home / "log.pub").write_text(to_pem(led.log_signer().public_key))
    led.act("admin", "owner.registered", code=OWNER, name="Japan reserve", country="JP")
    led.act("admin", "material.registered", code=MATERIAL, name="NdPr oxide", form="oxide",
            base_unit="g", grade_basis="TREO")
    for code, name in ((SITE_A, "Depot Alpha"), (SITE_B, "Depot Beta")):
        led.register_site(admin="admin", code=code, classification="SECRET", custodian=OWNER,
                          owners=[OWNER], location=Location(name=name, address="1 Test Road",
                                                            latitude=46.1, longitude=23.2, notes=""))
    for op in operators:
        led.register_key(admin="admin", user=op, roles=["operator"], sites=[SITE_A, SITE_B],
                         owners=[], clearance="SECRET")
    led.act(operators[0], "lot.registered", code=LOT, material=MATERIAL, origin="AU",
            supplier="Lynas Rare Earths", purity="99.50", basis="TREO",
            certificate_sha256="01" * 32,
            containers=[{"id": f"{LOT}-C1", "type": "drum", "net_mass": 250_000}])
    led.engine.dispose()


def service_env(home: Path, db_url: str, **extra: str) -> dict[str, str]:
    from tests.conftest import PASSPHRASE

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESERVE_", "PROMETHEUS_"))}
    if "RESERVE_UNSAFE_KDF_COST" in os.environ:  # the test suite's cheap key files
        env["RESERVE_UNSAFE_KDF_COST"] = os.environ["RESERVE_UNSAFE_KDF_COST"]
    env.update({
        "RESERVE_HOME": str(home),
        "RESERVE_DB": db_url,
        "RESERVE_PASSPHRASE": PASSPHRASE.decode(),
        "RESERVE_LOG_LEVEL": "warning",
        **extra,
    })
    return env


def tokens_for(home: Path, users: list[str]) -> dict[str, str]:
    """Tokens from the service's own issuer key (made by the server at its first start)."""
    from api.auth import TokenIssuer, TokenSettings
    from api.services import TOKEN_KEY_NAME
    from keys import FileKeystore
    from tests.conftest import PASSPHRASE

    issuer = TokenIssuer(FileKeystore(home / "keys", passphrase=PASSPHRASE).load(TOKEN_KEY_NAME),
                         TokenSettings())
    return {u: issuer.issue(u) for u in users}


def receipt(ref: str, grams: int = 1000) -> dict[str, object]:
    return {"site": SITE_A, "owner": OWNER, "lot": LOT, "quantity": f"{grams} g",
            "occurred_at": "2026-01-01T00:00:00Z", "supplier": "Lynas Rare Earths",
            "accepted_purity": "99.50", "reference": ref}
