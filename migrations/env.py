"""Alembic environment: the schema of the ledger is only ever changed from here."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from ledger.store.schema import metadata

config = context.config
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from ledger.store.db import make_engine

    url = config.get_main_option("sqlalchemy.url") or os.environ.get("RESERVE_DB")
    if not url:
        raise SystemExit("set RESERVE_DB to the database URL")
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported: triggers differ per engine")
run_migrations_online()
