"""Engines and migrations for both supported databases.

SQLite is opened in WAL mode with ``synchronous=FULL`` (a committed append survives a
power cut) and every transaction starts with ``BEGIN IMMEDIATE``, so two writers never
both read the same head: the second waits (``busy_timeout``) for the first to commit.
PostgreSQL serialises appenders on the ``log_state`` row (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import Compiled
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.sql import ClauseElement

from ledger.errors import ConfigError, StorageError

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _sqlite_setup(engine: Engine, *, readonly: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # INSERT OR REPLACE deletes the row it replaces; only with recursive triggers on
        # does that fire the append-only DELETE triggers.
        cur.execute("PRAGMA recursive_triggers=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers (write_transaction) take the write lock up front, so two appenders
        # queue instead of failing on a stale snapshot; readers get a WAL snapshot.
        writing = conn.get_execution_options().get("ledger_write", False) and not readonly
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def make_engine(url: str, *, readonly: bool = False, pool_size: int = 10) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    ``readonly`` engines read a consistent snapshot per transaction (SQLite WAL snapshot,
    PostgreSQL REPEATABLE READ) without blocking appenders: exports and verification.
    ``pool_size`` (PostgreSQL): connections kept open; up to 20 more are opened under
    load and closed when returned to a full pool, so it should cover the usual number of
    concurrent users of the engine (a new PostgreSQL connection costs a process).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url)
            _sqlite_setup(engine, readonly=readonly)
        elif url.startswith("postgresql+psycopg"):
            # No pre-ping (a round trip per checkout); stale connections are recycled.
            engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=20,
                pool_recycle=1800,
                isolation_level="REPEATABLE READ" if readonly else "READ COMMITTED",
            )
        else:
            raise ConfigError("database URL must be sqlite:///... or postgresql://...")
    except ArgumentError as exc:
        raise ConfigError("database URL is not valid") from exc
    return engine


_COMPILED: dict[tuple[int, str], tuple[ClauseElement, Compiled]] = {}


def plain_rows(conn: Connection, stmt: ClauseElement, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``stmt``'s rows as the driver's own tuples, on ``conn``'s database connection.

    For the reads that return thousands of rows (a whole reserve's balances, a lot's
    trace): SQLAlchemy's row objects cost more than the query itself, and are tracked by
    the cyclic garbage collector where plain tuples of strings and integers are not
    (issue #12). Only for statements whose columns need no result processing (strings
    and integers). It runs in the transaction ``conn`` has begun; callers run a
    statement through ``conn`` first when they need it to share that snapshot (one
    statement alone is a consistent snapshot on both engines). ``stmt`` is compiled
    once per dialect and kept: pass statements built once, not per call.
    """
    cache_key = (id(stmt), conn.dialect.name)
    hit = _COMPILED.get(cache_key)
    if hit is None or hit[0] is not stmt:
        hit = (stmt, stmt.compile(dialect=conn.dialect))
        if len(_COMPILED) < 512:
            _COMPILED[cache_key] = hit
    compiled = hit[1]
    values = compiled.construct_params(params) or {}
    positions = getattr(compiled, "positiontup", None)
    args: Any = values if positions is None else tuple(values[k] for k in positions)
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        # Listeners of the connection still see the statement (tracing, tests).
        conn.dispatch.before_cursor_execute(conn, cursor, compiled.string, args, None, False)
        cursor.execute(compiled.string, args)
        return list(cursor.fetchall())
    except conn.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy would raise it
        raise DBAPIError.instance(
            compiled.string, args, exc, conn.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        cursor.close()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it holds the write lock from its first
    statement (``BEGIN IMMEDIATE``); on PostgreSQL callers add their own lock."""
    with engine.connect() as conn:
        conn.execution_options(ledger_write=True)
        with conn.begin():
            yield conn


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (the only way it ever changes)."""
    cfg = _alembic_config()
    try:
        with write_transaction(engine) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise StorageError("cannot reach or migrate the database") from exc


def has_log(engine: Engine) -> bool:
    try:
        return "log_state" in inspect(engine).get_table_names()
    except OperationalError as exc:
        raise StorageError("cannot reach the database") from exc
