"""deploy/postgres-roles.sql: the runtime role appends but cannot rewrite history,
even where the triggers are gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from keys import FileKeystore
from ledger.service import Ledger
from ledger.store.audit import verify_database
from ledger.store.db import make_engine
from tests.conftest import PASSPHRASE, make_ledger, with_operator

ROLES_SQL = Path(__file__).resolve().parents[1] / "deploy" / "postgres-roles.sql"


def test_runtime_role_cannot_update_delete_or_truncate(pg_url: str, tmp_path: Path) -> None:
    owner = make_ledger(pg_url, tmp_path / "keys")
    with_operator(owner)
    with owner.engine.begin() as c:
        # Through the driver without parameters, as psql would run it ('%I' is format()'s).
        c.connection.dbapi_connection.cursor().execute(ROLES_SQL.read_text())  # type: ignore[union-attr]
        # Remove the triggers, so only privileges stand in the way.
        for t in ("entries", "tree_nodes", "checkpoints"):
            c.execute(text(f"DROP TRIGGER {t}_append_only ON {t}"))
            c.execute(text(f"DROP TRIGGER {t}_no_truncate ON {t}"))

    app_url = pg_url.replace("postgres@", "ledger_app@")
    app = Ledger(make_engine(app_url), FileKeystore(tmp_path / "keys", passphrase=PASSPHRASE))
    app.act("olga", "test.movement", account="ACC", delta=3)  # appending works
    for stmt in (
        "UPDATE entries SET author = 'x' WHERE seq = 0",
        "DELETE FROM entries WHERE seq = 2",
        "TRUNCATE checkpoints",
        "UPDATE tree_nodes SET hash = hash",
    ):
        with pytest.raises(ProgrammingError, match="permission denied"), app.engine.begin() as c:
            c.execute(text(stmt))
    verify_database(owner.engine, trusted_log_key=None)
