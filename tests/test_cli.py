"""The `reserve` command as scripts and auditors use it: exit codes, one-line errors,
the stable interface of issue #2 (RESERVE_* variables, --as, log.pub, bundles)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(home: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_") or k == "RESERVE_UNSAFE_KDF_COST"}
    base.update({"RESERVE_HOME": str(home), "RESERVE_PASSPHRASE": "cli-test-pass"})
    if env:
        base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, env=base, cwd=ROOT, input=input, timeout=120, check=False,
    )


def add_site(home: Path, *codes: str, owner: str = "OWNER-A") -> None:
    """An owner and sites for a key's scope to name (issue #12: a registration names only
    what exists, and an operator names a site); written directly, two entries or more."""
    from keys import FileKeystore
    from keys.sealing import load_or_create_sealer
    from ledger.service import Ledger
    from ledger.store.db import make_engine

    keys, pw = home / "keys", b"cli-test-pass"
    # The log is owner-scoped (reserve init, issue #14): appending opens the owners' sealed secrets.
    led = Ledger(make_engine(f"sqlite:///{home / 'ledger.db'}"), FileKeystore(keys, passphrase=pw),
                 sealer=lambda: load_or_create_sealer(keys, passphrase=pw))
    led.act("admin", "owner.registered", code=owner, name="Owner A", country="JP")
    for code in codes or ("SITE-A",):
        led.act("admin", "site.registered", code=code, classification="RESTRICTED", custodian=owner,
                owners=[owner], location_commitment="ab" * 32)
    led.engine.dispose()


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    proc = run(h, "init", "--log-id", "test.local/cli")
    assert proc.returncode == 0, proc.stderr
    return h


def test_init_writes_log_pub_and_refuses_second_init(home: Path) -> None:
    assert (home / "log.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert oct((home / "keys").stat().st_mode & 0o777) == "0o700"
    again = run(home, "init")
    assert_one_line_error(again)
    assert "already holds a log" in again.stderr


def test_register_move_verify_export_verify_bundle(home: Path, tmp_path: Path) -> None:
    add_site(home)
    assert run(home, "keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "SITE-A").returncode == 0
    moved = run(home, "move", "ACC-1", "7", env={"RESERVE_USER": "olga"})
    assert moved.returncode == 0, moved.stderr
    users = run(home, "user", "list")
    assert "olga" in users.stdout and "operator" in users.stdout and "SITE-A" in users.stdout
    verified = run(home, "verify", "--trust", str(home / "log.pub"))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK size 5 root ")
    out = tmp_path / "bundle"
    assert run(home, "export", str(out)).returncode == 0
    lines = (out / "entries.jsonl").read_bytes().splitlines()
    assert len(lines) == 5 and (out / "genesis.json").read_bytes().strip() == lines[0]
    ok = run(home, "verify-bundle", str(out), "--trust", str(home / "log.pub"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split()[:3] == verified.stdout.split()[:3]
    two = run(home, "verify-bundle", str(out), "--trust", str(home / "log.pub"), "--jobs", "2")
    assert two.returncode == 0 and two.stdout == ok.stdout


def test_refusal_is_one_line_and_nonzero(home: Path) -> None:
    add_site(home)
    run(home, "keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "SITE-A")
    proc = run(home, "move", "ACC-1", "-5", "--as", "olga")
    assert_one_line_error(proc)
    assert "would go negative" in proc.stderr
    proc = run(home, "move", "ACC-1", "5")
    assert_one_line_error(proc)
    assert "--as USER" in proc.stderr


def test_wrong_passphrase_fails_cleanly_without_echoing_it(home: Path) -> None:
    proc = run(home, "move", "ACC-1", "5", "--as", "admin", env={"RESERVE_PASSPHRASE": "s3cret-wrong"})
    assert_one_line_error(proc)
    assert "s3cret-wrong" not in proc.stderr


def test_missing_passphrase_without_terminal(home: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESERVE_")}
    env["RESERVE_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "cli", "move", "A", "1", "--as", "admin"],
                          capture_output=True, text=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, check=False)
    assert_one_line_error(proc)
    assert "RESERVE_PASSPHRASE" in proc.stderr


def test_bad_database_url(home: Path) -> None:
    proc = run(home, "verify", "--db", "mysql://nope")
    assert_one_line_error(proc)
    assert proc.returncode == 2


def test_verify_bundle_with_wrong_trust_key_fails(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    run(home, "export", str(out))
    other = tmp_path / "other"
    run(other, "init")
    proc = run(home, "verify-bundle", str(out), "--trust", str(other / "log.pub"))
    assert proc.returncode == 1
    assert "FAILED" in proc.stderr and "trusted log key" in proc.stderr


def test_verify_bundle_runs_with_only_ledger(home: Path, tmp_path: Path) -> None:
    """The auditor's machine: no database driver, no ORM, no keystore, no web stack."""
    out = tmp_path / "b"
    run(home, "export", str(out))
    blocker = (
        "import sys\n"
        "for m in ('sqlalchemy','alembic','psycopg','keys','api','fastapi','cryptography'):\n"
        "    sys.modules[m] = None\n"
        "from cli.main import main\n"
        f"sys.exit(main(['verify-bundle', {str(out)!r}, '--trust', {str(home / 'log.pub')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK size 1 ")


def test_demo_is_rerunnable(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    first = run(home, "demo")
    assert first.returncode == 0, first.stderr
    second = run(home, "demo")
    assert second.returncode == 0, second.stderr
    assert run(home, "verify", "--trust", str(home / "log.pub")).returncode == 0


def test_a_kept_checkpoint_catches_a_rolled_back_log(home: Path, tmp_path: Path) -> None:
    """An auditor keeps checkpoint.note from each audit; a later history must extend it."""
    add_site(home)
    run(home, "keys", "register", "--as", "admin", "--user", "olga", "--roles", "operator", "--sites", "SITE-A")
    first = tmp_path / "first"
    assert run(home, "export", str(first)).returncode == 0
    kept = first / "checkpoint.note"
    run(home, "move", "ACC-1", "5", "--as", "olga")
    second = tmp_path / "second"
    assert run(home, "export", str(second)).returncode == 0
    pub = str(home / "log.pub")
    ok = run(home, "verify-bundle", str(second), "--trust", pub, "--checkpoint", str(kept))
    assert ok.returncode == 0, ok.stderr
    assert run(home, "verify", "--trust", pub, "--checkpoint", str(kept)).returncode == 0
    # Served the old bundle after having seen the newer checkpoint: a rollback.
    rolled = run(home, "verify-bundle", str(first), "--trust", pub, "--checkpoint", str(second / "checkpoint.note"))
    assert rolled.returncode == 1
    assert "rolled back" in rolled.stderr


def test_keys_register_refuses_the_token_issuers_name(home: Path) -> None:
    """Issue #8, item 10: one line, exit 1, and no key of the service's becomes a user's."""
    proc = run(home, "keys", "register", "--as", "admin", "--user", "token-issuer", "--roles", "auditor")
    assert proc.returncode == 1, proc.stderr
    assert "reserved" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "token-issuer" not in run(home, "user", "list").stdout


def test_text_that_lies_on_screen_is_refused_naming_the_field(home: Path) -> None:
    """Issue #8, item 4: `Evil\\u202etxt.exe` showed as "Evilexe.txt" in `owner list`."""
    proc = run(home, "owner", "add", "EVIL", "--name", "Evil\u202etxt.exe", "--country", "JP", "--as", "admin")
    assert proc.returncode == 1, proc.stderr
    assert "entry.name" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Decomposed text is normalised (NFC) by the client before it signs.
    ok = run(home, "owner", "add", "DE-RESERVE", "--name", "Mu\u0308ller", "--country", "DE", "--as", "admin")
    assert ok.returncode == 0, ok.stderr
    assert "M\u00fcller" in run(home, "owner", "list").stdout
