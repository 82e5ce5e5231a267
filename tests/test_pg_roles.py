"""deploy/postgres-roles.sql: the runtime role appends but cannot rewrite history, even
where the triggers are gone, and it can run the whole application (issue #8, item 10).

Role names are global to the PostgreSQL cluster while each test has its own schema, so
each test creates its own uniquely named copy of ``ledger_app`` (the SQL with the name
substituted) and drops it afterwards: parallel runs never share or race on a role.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from keys import FileKeystore
from keys.sealing import load_or_create_sealer
from ledger.locations import Location
from ledger.service import Ledger
from ledger.store import access, idempotency, releases, reports
from ledger.store.audit import verify_database
from ledger.store.db import make_engine
from ledger.store.locations import open_location
from ledger.store.schema import metadata
from ledger.store.tokens import revoke
from ledger.timefmt import now
from tests import stock_scenario
from tests.conftest import PASSPHRASE, make_ledger, with_operator

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres-roles.sql"
ROLE = "ledger_app"


@pytest.fixture
def runtime_url(pg_url: str) -> Iterator[tuple[str, str]]:
    """(schema owner's URL, a URL for a fresh copy of the runtime role). The role is made
    by the deploy SQL itself, with only its name changed."""
    name = f"{ROLE}_{secrets.token_hex(5)}"
    yield pg_url, pg_url.replace("postgres@", f"{name}@")
    admin = create_engine(pg_url)
    with admin.begin() as c:
        c.execute(text(f"DROP OWNED BY {name}"))
        c.execute(text(f"DROP ROLE IF EXISTS {name}"))
    admin.dispose()


def _grant(owner: Engine, app_url: str) -> None:
    name = app_url.split("://", 1)[1].split("@", 1)[0]
    sql = ROLES_SQL.read_text()
    assert sql.count(f"'{ROLE}'") == 1  # the one place the role is named
    with owner.begin() as c:
        # Through the driver without parameters, as psql would run it ('%I' is format()'s).
        c.connection.dbapi_connection.cursor().execute(sql.replace(f"'{ROLE}'", f"'{name}'"))  # type: ignore[union-attr]


def test_every_table_has_a_grant_class() -> None:
    sql = ROLES_SQL.read_text()
    classified = set(re.findall(r"'([a-z_]+)'", sql))
    missing = {t for t in metadata.tables} - classified
    assert not missing, f"tables with no grant class in postgres-roles.sql: {sorted(missing)}"


def test_runtime_role_cannot_update_delete_or_truncate(runtime_url: tuple[str, str], tmp_path: Path) -> None:
    pg_url, app_url = runtime_url
    owner = make_ledger(pg_url, tmp_path / "keys")
    with_operator(owner)
    _grant(owner.engine, app_url)
    with owner.engine.begin() as c:
        # Remove the triggers, so only privileges stand in the way.
        for t in ("entries", "tree_nodes", "checkpoints"):
            c.execute(text(f"DROP TRIGGER {t}_append_only ON {t}"))
            c.execute(text(f"DROP TRIGGER {t}_no_truncate ON {t}"))

    app = Ledger(make_engine(app_url), FileKeystore(tmp_path / "keys", passphrase=PASSPHRASE))
    app.act("olga", "test.movement", account="ACC", delta=3)  # appending works
    for stmt in (
        "UPDATE entries SET author = 'x' WHERE seq = 0",
        "DELETE FROM entries WHERE seq = 2",
        "TRUNCATE checkpoints",
        "UPDATE tree_nodes SET hash = hash",
        "DELETE FROM postings",
        "UPDATE site_locations SET version = version",
        "DELETE FROM access_log",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"), app.engine.begin() as c:
            c.execute(text(stmt))
    verify_database(owner.engine, trusted_log_key=None)


def test_the_whole_application_runs_as_the_runtime_role(runtime_url: tuple[str, str], tmp_path: Path) -> None:
    """Connected as the runtime role only: keys, owners, materials, sites with a sealed
    location, lots, receipts, a transfer, a release flow (policy, request, approval,
    order) with a sale and a loan, a count, reads, reports, the access log, idempotency
    keys, revoked tokens, and the verifier."""
    pg_url, app_url = runtime_url
    keydir = tmp_path / "keys"
    owner = make_ledger(pg_url, keydir)  # the migration role: schema and genesis only
    _grant(owner.engine, app_url)
    sealer = load_or_create_sealer(keydir, passphrase=PASSPHRASE)
    app = Ledger(make_engine(app_url), FileKeystore(keydir, passphrase=PASSPHRASE), sealer)

    expected = stock_scenario.build_scenario(app)
    app.register_site(
        admin="admin", code="SITE-9LOC", classification="SECRET", custodian=stock_scenario.JP,
        owners=[stock_scenario.JP],
        location=Location(name="Depot", address="1 Road", latitude=45.0, longitude=7.0),
    )
    at = now()
    with app.engine.begin() as conn:
        assert open_location(conn, site="SITE-9LOC", sealer=sealer).location.name == "Depot"
        held = reports.balances(conn, owner=stock_scenario.JP)
        assert held
        reports.trace_lot(conn, stock_scenario.LOT_NDPR_1)
        reports.cover(conn, owners=None, at=at)
        reports.crma_report(conn, owners=None, year=int(at[:4]))
        reports.overdue_loans(conn, now=at)
        releases.open_requests(conn, owners=None, at=at)
        releases.order_report(conn, expected["ids"]["sale_order"], owners=None, at=at)
        claim = idempotency.IdemKey(user="olga", key="k1", request_hash="0" * 64, status=201,
                                    response=lambda seq: {"seq": seq})
        idempotency.remember_many(conn, [(claim, 1)])
        assert idempotency.stored_response(conn, user="olga", key="k1") == (201, {"seq": 1})
        revoke(conn, jti="j" * 16, expires_at=2_000_000_000, by="olga")
    access.record(app.engine, {"action": "reveal", "site": "SITE-9LOC", "user": "olga", "outcome": "granted"},
                  log_signer=app.log_signer(), log_id="test.local/ledger")
    verify_database(app.engine, trusted_log_key=None)
