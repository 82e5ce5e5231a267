"""Helpers for the tamper and trigger tests: build a small history, then rewrite the
database behind the application's back, the way an attacker with DBA rights would.

The append-only triggers are bypassed only inside :func:`tampering`'s transaction:

* SQLite: the triggers are dropped and re-created from their own SQL in the same
  transaction (SQLite DDL is transactional), so the database is guarded again after it;
* PostgreSQL: ``SET LOCAL session_replication_role = replica`` (we connect as superuser),
  which disables ordinary triggers for that transaction only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update

from ledger.canonical import canonical, parse_json
from ledger.crypto import Signer
from ledger.entries import sign_body
from ledger.merkle import leaf_hash
from ledger.service import Ledger
from ledger.store.schema import checkpoints, entries
from tests.conftest import with_operator

OPERATOR = "olga"
ACCOUNT = "ACC-1"
#: Deltas of the movements appended by :func:`build_history`, one append each.
DELTAS = (10, 5, -3, 7, 2, -4, 6, 1)
FIRST_MOVE = 4  # seq 0: genesis, 1-2: owner and site (issue #12), 3: olga's key
SIZE = FIRST_MOVE + len(DELTAS)  # 12 entries, one checkpoint per append: sizes 1..12


def build_history(led: Ledger) -> int:
    """Genesis (already there), register ``olga``, then one append per movement.

    Returns the size of the log (:data:`SIZE`)."""
    with_operator(led, OPERATOR)
    for delta in DELTAS:
        led.act(OPERATOR, "test.movement", account=ACCOUNT, delta=delta)
    return SIZE


def log_public_key(led: Ledger) -> bytes:
    return led.keystore.public_key("log")


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """One transaction in which the append-only triggers do not fire."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn
            return
        triggers = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        ).all()
        assert triggers, "the migration created no triggers"
        for name, _sql in triggers:
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        yield conn
        for _name, sql in triggers:
            conn.execute(text(sql))


def trigger_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "WHERE NOT t.tgisinternal AND c.relnamespace = "
                    "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
                )
            )
        else:
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        return {r[0] for r in rows}


# -- reading and rewriting entries ------------------------------------------------------


def entry_row(conn: Connection, seq: int) -> Any:
    return conn.execute(select(entries).where(entries.c.seq == seq)).one()


def read_leaf(conn: Connection, seq: int) -> dict[str, Any]:
    leaf = parse_json(bytes(entry_row(conn, seq).leaf))
    assert isinstance(leaf, dict)
    return leaf


def write_leaf(
    conn: Connection, seq: int, leaf: dict[str, Any], *, update_hash: bool = True
) -> bytes:
    """Store ``leaf`` (re-canonicalised) at ``seq``; by default the ``leaf_hash`` column
    is updated to match, so only what is *inside* the leaf can give the forgery away."""
    line = canonical(leaf)
    values: dict[str, Any] = {"leaf": line}
    if update_hash:
        values["leaf_hash"] = leaf_hash(line)
    conn.execute(update(entries).where(entries.c.seq == seq).values(**values))
    return line


def resign(
    leaf: dict[str, Any], signers: list[Signer], *, log_id: str = "test.local/ledger"
) -> dict[str, Any]:
    """The same leaf with its body signed afresh (v2, for ``log_id``) by ``signers``
    (author unchanged)."""
    signed = sign_body(leaf["entry"], signers, log_id=log_id)
    return {**leaf, "sigs": signed["sigs"]}


def flip_sig_byte(sig_b64: str, index: int = 10) -> str:
    """A different, still well-formed base64 signature (one byte flipped)."""
    raw = bytearray(base64.b64decode(sig_b64, validate=True))
    raw[index] ^= 0x01
    out = base64.b64encode(bytes(raw)).decode()
    assert out != sig_b64 and len(out) == len(sig_b64)
    return out


def swap_entries(conn: Connection, k: int) -> None:
    """Swap the whole rows (leaf bytes and every column) of seq ``k`` and ``k + 1``."""
    parking = 10**12  # a seq no test history reaches; keeps the primary key unique
    conn.execute(update(entries).where(entries.c.seq == k).values(seq=parking))
    conn.execute(update(entries).where(entries.c.seq == k + 1).values(seq=k))
    conn.execute(update(entries).where(entries.c.seq == parking).values(seq=k + 1))


def checkpoint_row(conn: Connection, size: int) -> Any:
    return conn.execute(select(checkpoints).where(checkpoints.c.size == size)).one()


def replace_note_root(note: str, old_root: bytes, new_root: bytes) -> str:
    """The note with its root line replaced; the signature line is kept as it was."""
    old_line = "\n" + base64.b64encode(old_root).decode() + "\n"
    new_line = "\n" + base64.b64encode(new_root).decode() + "\n"
    assert note.count(old_line) == 1, note
    return note.replace(old_line, new_line)


def other_root(root: bytes) -> bytes:
    return bytes([root[0] ^ 0xFF]) + root[1:]


def seqs(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.scalars(select(entries.c.seq).order_by(entries.c.seq)))
