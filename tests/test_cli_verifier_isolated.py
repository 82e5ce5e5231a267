"""The verifier runs with nothing but ``ledger`` and the ``reserve`` command (DESIGN.md):
``verify-bundle`` must work with the web and database libraries made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_cli import ROOT, run

BLOCKER = """
import sys
BLOCKED = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "psycopg", "psycopg2", "alembic", "httpx", "api", "keys"}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
        return None

sys.meta_path.insert(0, Blocker())
from cli.main import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
if leaked:
    print("imported:", leaked, file=sys.stderr)
    code = 99
sys.exit(code)
"""


def _blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER, *args],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )


def test_verify_bundle_without_web_or_database_libraries(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--log-id", "test.local/isolated").returncode == 0
    # An auditor: a key whose scope names no site (an operator's must name one; issue #12).
    assert run(home, "keys", "register", "--as", "admin", "--user", "audrey", "--roles", "auditor").returncode == 0
    bundle = tmp_path / "bundle"
    assert run(home, "export", str(bundle)).returncode == 0
    ok = _blocked("verify-bundle", str(bundle), "--trust", str(home / "log.pub"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK size 2 ")
    # The blocker works: a command that needs the database fails to import it.
    needs_db = _blocked("verify", "--trust", str(home / "log.pub"))
    assert needs_db.returncode != 0
    # And a tampered bundle still fails, in one line.
    lines = (bundle / "entries.jsonl").read_bytes().splitlines()
    (bundle / "entries.jsonl").write_bytes(b"\n".join(lines[:-1]) + b"\n")
    bad = _blocked("verify-bundle", str(bundle), "--trust", str(home / "log.pub"))
    assert bad.returncode == 1, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
