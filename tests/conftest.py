"""Shared fixtures: a fresh ledger on SQLite and on the real PostgreSQL server.

PostgreSQL tests use the server at 127.0.0.1:5432 (database ``test``, user ``postgres``),
each in its own schema. Where the server does not answer they are skipped with a message,
unless ``LEDGER_REQUIRE_POSTGRES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from keys import FileKeystore
from ledger.service import Ledger
from ledger.store.db import make_engine
from ledger.store.projections import read_table

# Key files cost scrypt N = 2^17 (~0.4 s) each; the suite makes hundreds. Only the test
# suite sets this (keys/filestore.py logs a warning whenever it is used).
os.environ.setdefault("RESERVE_UNSAFE_KDF_COST", "10")

PG_BASE = os.environ.get("LEDGER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("LEDGER_REQUIRE_POSTGRES") == "1"
PASSPHRASE = b"test-passphrase"
SHARED = Path(__file__).resolve().parents[2] / "shared"


def _pg_available() -> str | None:
    try:
        eng = create_engine(PG_BASE, connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("select 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


_PG_ERROR: str | None = None
_PG_CHECKED = False


def require_pg() -> None:
    global _PG_ERROR, _PG_CHECKED
    if not _PG_CHECKED:
        _PG_ERROR = _pg_available()
        _PG_CHECKED = True
    if _PG_ERROR is not None:
        msg = f"PostgreSQL at 127.0.0.1:5432 is not answering ({_PG_ERROR})"
        if REQUIRE_PG:
            pytest.fail(msg + " and LEDGER_REQUIRE_POSTGRES=1")
        pytest.skip(msg)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    require_pg()
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(PG_BASE)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def _key_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


def make_ledger(url: str, keydir: Path) -> Ledger:
    led = Ledger(make_engine(url), FileKeystore(keydir, passphrase=PASSPHRASE))
    led.init(log_id="test.local/ledger", admin="admin")
    return led


@pytest.fixture
def ledger(db_url: str, tmp_path: Path) -> Ledger:
    """An initialised ledger (genesis only) on each engine."""
    return make_ledger(db_url, tmp_path / "keys")


@pytest.fixture
def sqlite_ledger(sqlite_url: str, tmp_path: Path) -> Ledger:
    return make_ledger(sqlite_url, tmp_path / "keys")


OPERATOR_OWNER = "OWNER-A"
OPERATOR_SITE = "SITE-A"


def operator_site(led: Ledger) -> str:
    """``SITE-A`` (held for ``OWNER-A``), registered unless it is (two entries): a key
    names only a site and an owner that exist (issue #12)."""
    with led.engine.connect() as conn:
        sites = read_table(conn, "sites")
    if OPERATOR_SITE not in sites:
        led.act("admin", "owner.registered", code=OPERATOR_OWNER, name="Owner A", country="JP")
        led.act(
            "admin", "site.registered", code=OPERATOR_SITE, classification="RESTRICTED",
            custodian=OPERATOR_OWNER, owners=[OPERATOR_OWNER], location_commitment="ab" * 32,
        )
    return OPERATOR_SITE


def with_operator(led: Ledger, user: str = "olga") -> Ledger:
    """An operator of ``SITE-A`` (:func:`operator_site`: the first call adds two entries)."""
    operator_site(led)
    led.register_key(admin="admin", user=user, roles=["operator"], sites=[OPERATOR_SITE], owners=[], clearance="NONE")
    return led
