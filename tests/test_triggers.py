"""The database itself keeps the signed log append-only (DESIGN.md, point 5).

Writes that bypass the application (plain SQLAlchemy Core on the ledger's own engine)
must be refused by the triggers of ``migrations/versions/0001_signed_log.py``: no UPDATE
or DELETE on ``entries``, ``tree_nodes`` and ``checkpoints`` (nor TRUNCATE on
PostgreSQL), and no entry inserted at any seq but the next one. Every refusal must leave
the rows exactly as they were, and the history must still verify afterwards.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, Table, create_engine, delete, insert, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ledger.service import Ledger
from ledger.store.audit import verify_database
from ledger.store.schema import checkpoints, entries, tree_nodes
from tests.conftest import make_ledger, with_operator
from tests.tamper_helpers import log_public_key, trigger_names

TABLES: dict[str, Table] = {
    "entries": entries,
    "tree_nodes": tree_nodes,
    "checkpoints": checkpoints,
}
SIZE = 7  # genesis, owner and site (issue #12), olga's key, three movements


def _grow(led: Ledger) -> Ledger:
    with_operator(led, "olga")
    for delta in (3, 4, -2):
        led.act("olga", "test.movement", account="ACC-1", delta=delta)
    return led


@pytest.fixture
def led(ledger: Ledger) -> Ledger:
    """Both engines: a ledger holding :data:`SIZE` entries and as many checkpoints."""
    return _grow(ledger)


@pytest.fixture
def pg_led(pg_url: str, tmp_path: Path) -> Ledger:
    return _grow(make_ledger(pg_url, tmp_path / "keys"))


@pytest.fixture
def sqlite_led(sqlite_ledger: Ledger) -> Ledger:
    return _grow(sqlite_ledger)


# -- helpers ---------------------------------------------------------------------------


def snapshot(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every row of ``table`` (bytes normalised), in primary-key order."""
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]


def snapshot_all(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    return {name: snapshot(engine, t) for name, t in TABLES.items()}


def append_only_refusal(engine: Engine) -> tuple[type[sa_exc.DBAPIError], type[Exception]]:
    """(SQLAlchemy class, driver class) of an append-only trigger's refusal."""
    if engine.dialect.name == "postgresql":
        # RAISE ... USING ERRCODE = 'insufficient_privilege' (SQLSTATE 42501)
        return sa_exc.ProgrammingError, psycopg.errors.InsufficientPrivilege
    # RAISE(ABORT, ...) is reported as SQLITE_CONSTRAINT_TRIGGER
    return sa_exc.IntegrityError, sqlite3.IntegrityError


def order_refusal(engine: Engine) -> tuple[type[sa_exc.DBAPIError], type[Exception]]:
    if engine.dialect.name == "postgresql":
        # ERRCODE = 'integrity_constraint_violation' (SQLSTATE 23000)
        return sa_exc.IntegrityError, psycopg.errors.IntegrityConstraintViolation
    return sa_exc.IntegrityError, sqlite3.IntegrityError


def assert_refused(
    engine: Engine,
    stmt: Any,
    *,
    expected: tuple[type[sa_exc.DBAPIError], type[Exception]],
    message: str | tuple[str, ...],
) -> None:
    """``stmt`` fails with exactly the expected error (one of the messages) and changes
    no guarded row."""
    before = snapshot_all(engine)
    sa_cls, driver_cls = expected
    with pytest.raises(sa_exc.DBAPIError) as ei, engine.begin() as conn:
        conn.execute(stmt)
    assert type(ei.value) is sa_cls, repr(ei.value)
    assert type(ei.value.orig) is driver_cls, repr(ei.value.orig)
    messages = (message,) if isinstance(message, str) else message
    assert any(m in str(ei.value.orig) for m in messages), str(ei.value.orig)
    if engine.dialect.name == "postgresql":
        assert ei.value.orig.sqlstate == driver_cls.sqlstate
    assert snapshot_all(engine) == before


def assert_history_intact(led: Ledger, size: int = SIZE) -> None:
    report = verify_database(led.engine, trusted_log_key=log_public_key(led))
    assert report.size == size
    assert report.checkpoints == size
    with led.engine.connect() as conn:
        assert list(conn.scalars(select(entries.c.seq).order_by(entries.c.seq))) == list(
            range(size)
        )


def _upsert(engine: Engine, table: Table, row: dict[str, Any], key: list[str] | None = None) -> Any:
    """INSERT ... ON CONFLICT DO UPDATE, which fires UPDATE triggers on both engines."""
    dialect = pg_dialect if engine.dialect.name == "postgresql" else sqlite_dialect
    stmt = dialect.insert(table).values(**row)
    key = key or [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=key, set_={c: stmt.excluded[c] for c in row if c not in key}
    )


def _upsert_entry_id(engine: Engine) -> Any:
    """An "append" at the next seq that reuses entry 2's id, ON CONFLICT (entry_id) DO
    UPDATE: the order trigger is satisfied, so only the UPDATE trigger can stop it."""
    row = {**_entry_like(engine, SIZE), "entry_id": _one(engine, entries, seq=2)["entry_id"]}
    return _upsert(engine, entries, row, key=["entry_id"])


def _one(engine: Engine, table: Table, **where: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        q = select(table).where(*(table.c[k] == v for k, v in where.items()))
        return dict(conn.execute(q).one()._mapping)


# -- UPDATE and DELETE -----------------------------------------------------------------

MUTATIONS: dict[str, Callable[[Engine], Any]] = {
    "entries-update-column": lambda e: (
        update(entries).where(entries.c.seq == 1).values(author="mallory")
    ),
    "entries-update-leaf": lambda e: (
        update(entries).where(entries.c.seq == 3).values(leaf=b"{}", leaf_hash=b"\0" * 32)
    ),
    "entries-update-all": lambda e: update(entries).values(kind="x"),
    "entries-update-noop": lambda e: (
        update(entries).where(entries.c.seq == 2).values(seq=entries.c.seq)
    ),
    "entries-delete-tail": lambda e: delete(entries).where(entries.c.seq == SIZE - 1),
    "entries-delete-all": lambda e: delete(entries),
    "entries-upsert": lambda e: _upsert_entry_id(e),
    "tree_nodes-update": lambda e: (
        update(tree_nodes)
        .where(tree_nodes.c.level == 0, tree_nodes.c.idx == 0)
        .values(hash=b"\1" * 32)
    ),
    "tree_nodes-delete": lambda e: delete(tree_nodes).where(tree_nodes.c.level > 0),
    "tree_nodes-upsert": lambda e: _upsert(
        e, tree_nodes, {"level": 0, "idx": 1, "hash": b"\2" * 32}
    ),
    "checkpoints-update-note": lambda e: (
        update(checkpoints).where(checkpoints.c.size == SIZE).values(note="forged")
    ),
    "checkpoints-update-root": lambda e: (
        update(checkpoints).where(checkpoints.c.size == SIZE).values(root=b"\3" * 32)
    ),
    "checkpoints-delete-latest": lambda e: delete(checkpoints).where(checkpoints.c.size == SIZE),
    "checkpoints-upsert": lambda e: _upsert(
        e, checkpoints, {**_one(e, checkpoints, size=SIZE), "note": "forged"}
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_update_and_delete_are_refused(led: Ledger, case: str) -> None:
    table = case.split("-", 1)[0]
    assert_refused(
        led.engine,
        MUTATIONS[case](led.engine),
        expected=append_only_refusal(led.engine),
        message=f"{table} is append-only",
    )
    assert_history_intact(led)


def test_every_refusal_in_one_session_leaves_a_verifiable_history(led: Ledger) -> None:
    for case in sorted(MUTATIONS):
        table = case.split("-", 1)[0]
        assert_refused(
            led.engine,
            MUTATIONS[case](led.engine),
            expected=append_only_refusal(led.engine),
            message=f"{table} is append-only",
        )
    assert_history_intact(led)
    # ... and the log still takes appends after all those refusals.
    led.act("olga", "test.movement", account="ACC-1", delta=1)
    assert_history_intact(led, SIZE + 1)


# -- TRUNCATE (PostgreSQL) -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("cascade", ["", " CASCADE"])
def test_truncate_is_refused_on_postgresql(pg_led: Ledger, table: str, cascade: str) -> None:
    if table == "entries" and not cascade:
        # Balance snapshots reference their entry (migration 0014): PostgreSQL refuses a
        # plain TRUNCATE of a referenced table before any trigger runs. Still refused.
        assert_refused(
            pg_led.engine,
            text("TRUNCATE entries"),
            expected=(sa_exc.NotSupportedError, psycopg.errors.FeatureNotSupported),
            message="referenced in a foreign key constraint",
        )
    else:
        assert_refused(
            pg_led.engine,
            text(f"TRUNCATE {table}{cascade}"),
            expected=append_only_refusal(pg_led.engine),
            message=("is append-only",) if cascade else f"{table} is append-only",
        )
    assert_history_intact(pg_led)


@pytest.mark.postgres
def test_truncate_of_all_log_tables_at_once_is_refused(pg_led: Ledger) -> None:
    assert_refused(
        pg_led.engine,
        text("TRUNCATE entries, tree_nodes, checkpoints, log_state, balance_snapshots, balance_snapshot_rows"),
        expected=append_only_refusal(pg_led.engine),
        message="is append-only",
    )
    assert_history_intact(pg_led)


# -- INSERT out of order ---------------------------------------------------------------


def _entry_like(engine: Engine, seq: int) -> dict[str, Any]:
    """A row shaped like the last entry, at ``seq``, with a fresh entry id."""
    row = _one(engine, entries, seq=SIZE - 1)
    return {**row, "seq": seq, "entry_id": secrets.token_hex(16)}


@pytest.mark.parametrize(
    ("label", "seq"),
    [
        ("gap-of-one", SIZE + 1),
        ("far-ahead", SIZE + 1000),
        ("overwrite-last", SIZE - 1),
        ("overwrite-genesis", 0),
    ],
)
def test_insert_at_a_seq_that_is_not_the_next_is_refused(led: Ledger, label: str, seq: int) -> None:
    assert_refused(
        led.engine,
        insert(entries).values(**_entry_like(led.engine, seq)),
        expected=order_refusal(led.engine),
        # On SQLite an existing seq meets the no-replace guard first (migration 0001).
        message=("entries must be appended in seq order", "entries is append-only"),
    )
    assert_history_intact(led)


def test_insert_of_a_batch_with_a_hole_is_refused_whole(led: Ledger) -> None:
    rows = [_entry_like(led.engine, SIZE), _entry_like(led.engine, SIZE + 2)]
    assert_refused(
        led.engine,
        insert(entries).values(rows),
        expected=order_refusal(led.engine),
        message="entries must be appended in seq order",
    )
    assert_history_intact(led)


def test_insert_at_the_next_seq_passes_the_trigger(led: Ledger) -> None:
    """The order trigger refuses exactly the wrong seqs: the next one gets through (the
    row is rolled back here; the verifier, not the trigger, judges its content)."""
    before = snapshot_all(led.engine)
    row = _entry_like(led.engine, SIZE)
    with led.engine.connect() as conn:
        trans = conn.begin()
        conn.execute(insert(entries).values(**row))
        assert conn.scalar(select(entries.c.seq).order_by(entries.c.seq.desc()).limit(1)) == SIZE
        trans.rollback()
    assert snapshot_all(led.engine) == before
    assert_history_intact(led)


def test_the_migration_installed_the_expected_triggers(led: Ledger) -> None:
    names = trigger_names(led.engine)
    if led.engine.dialect.name == "postgresql":
        expected = {f"{t}_{s}" for t in TABLES for s in ("append_only", "no_truncate")}
    else:
        expected = {f"{t}_no_{op}" for t in TABLES for op in ("update", "delete")}
    # Later migrations may guard more tables; these are the signed log's own.
    assert expected | {"entries_in_order"} <= names


# -- SQLite: INSERT OR REPLACE deletes the row it replaces ------------------------------
#
# SQLite fires DELETE triggers for REPLACE's implicit deletions only when the
# connection has ``PRAGMA recursive_triggers=ON`` (which ``make_engine`` sets). Without
# it an entry, a checkpoint or a tree node could be overwritten or deleted.


def _replace_checkpoint(engine: Engine) -> Any:
    row = _one(engine, checkpoints, size=3)
    return insert(checkpoints).prefix_with("OR REPLACE").values(**{**row, "note": "forged"})


def _replace_tree_node(engine: Engine) -> Any:
    return insert(tree_nodes).prefix_with("OR REPLACE").values(level=0, idx=0, hash=b"\1" * 32)


def _replace_entry_by_id(engine: Engine) -> Any:
    # seq is the next one (the order trigger is satisfied); the entry_id is entry 2's,
    # so REPLACE would delete entry 2 and punch a hole in the chain.
    row = {**_entry_like(engine, SIZE), "entry_id": _one(engine, entries, seq=2)["entry_id"]}
    return insert(entries).prefix_with("OR REPLACE").values(**row)


REPLACES: dict[str, tuple[Callable[[Engine], Any], str]] = {
    "checkpoint": (_replace_checkpoint, "checkpoints"),
    "tree-node": (_replace_tree_node, "tree_nodes"),
    "entry-by-id": (_replace_entry_by_id, "entries"),
}


@pytest.mark.parametrize("case", sorted(REPLACES))
def test_sqlite_replace_cannot_overwrite_or_delete(sqlite_led: Ledger, case: str) -> None:
    make_stmt, table = REPLACES[case]
    assert_refused(
        sqlite_led.engine,
        make_stmt(sqlite_led.engine),
        expected=append_only_refusal(sqlite_led.engine),
        message=f"{table} is append-only",
    )
    assert_history_intact(sqlite_led)


@pytest.mark.parametrize("case", sorted(REPLACES))
def test_sqlite_replace_is_refused_on_any_connection(sqlite_led: Ledger, case: str) -> None:
    plain = create_engine(sqlite_led.engine.url)  # SQLAlchemy defaults, no ledger pragmas
    try:
        make_stmt, table = REPLACES[case]
        assert_refused(
            plain,
            make_stmt(plain),
            expected=append_only_refusal(plain),
            message=f"{table} is append-only",
        )
    finally:
        plain.dispose()
