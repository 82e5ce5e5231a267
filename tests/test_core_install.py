"""``pip install reserve-ledger`` without the ``server`` extra gives a working verifier
(issue #10): a fresh venv with only the core dependencies verifies a bundle with the
``reserve`` command, answers questions from it, writes a report, has no web framework,
database driver or structlog, and a server command says in one line what is missing."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from ledger.service import Ledger
from ledger.store.audit import export_bundle
from tests.tamper_helpers import SIZE, build_history, log_public_key

REPO = Path(__file__).resolve().parents[1]
SERVER_ONLY = ("sqlalchemy", "alembic", "psycopg", "structlog", "fastapi", "uvicorn", "jwt", "pkcs11")


def _core_pins() -> list[str]:
    """The core dependencies at the versions the lock file pins."""
    import tomllib

    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in core}
    pins = {}
    for line in (REPO / "requirements-dev.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    assert names <= set(pins), names - set(pins)
    return [f"{n}=={pins[n]}" for n in sorted(names)]


@pytest.mark.slow
def test_the_core_install_verifies_a_bundle(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    build_history(sqlite_ledger)
    bundle = tmp_path / "bundle"
    export_bundle(sqlite_ledger.engine, bundle)
    trust = log_public_key(sqlite_ledger).hex()

    # The project's source only (no .venv, no var/): building in place would write
    # build/ and *.egg-info into the working tree.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in ("ledger", "keys", "api", "cli"):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))

    env_dir = tmp_path / "core-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *_core_pins()], check=True, timeout=300)
    subprocess.run([*pip, "--no-deps", str(src)], check=True, timeout=300)
    reserve = str(env_dir / "bin" / "reserve")

    missing = subprocess.run(
        [str(py), "-c", "import importlib.util as u, sys; "
         f"print([m for m in {SERVER_ONLY!r} if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert missing.stdout.strip() == "[]", f"server packages in the core install: {missing.stdout}"

    def cmd(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [reserve, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "RESERVE_HOME": str(tmp_path / "home")},
        )  # fmt: skip

    r = cmd("verify-bundle", str(bundle), "--trust", trust, "--jobs", "2",
            "--report", str(tmp_path / "r.html"), "--report-json", str(tmp_path / "r.json"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"OK size {SIZE} ")
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")

    r = cmd("bundle", "balances", str(bundle), "--trust", trust, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "owner,site,material,lot,quantity,quantity_g"

    r = cmd("verify", "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert r.returncode == 2
    assert r.stderr.startswith("error: 'verify' needs the server extra")
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
