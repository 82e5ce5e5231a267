"""Projections: the reducer's state, materialised in tables for fast reads.

Written in the same transaction as the entries that change them, from the same
:class:`~ledger.state.Change` objects the in-memory state applies, and compared with a
full replay by the verifier.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ledger.state import (
    Change,
    KeyRecord,
    Loader,
    LogInfo,
    PutKey,
    SetTestBalance,
)
from ledger.store.schema import entries, keys, log_state, test_balances


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], *, key: list[str]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE, for either engine."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in key}
    conn.execute(stmt.on_conflict_do_update(index_elements=key, set_=update), rows)


def _key_row(rec: KeyRecord) -> dict[str, Any]:
    return {
        "key_id": rec.key_id,
        "public_key": rec.public_key,
        "user_name": rec.user,
        "roles": json.dumps(list(rec.roles)),
        "sites": json.dumps(list(rec.sites)),
        "owners": json.dumps(list(rec.owners)),
        "clearance": rec.clearance,
        "registered_seq": rec.registered_seq,
        "revoked_seq": rec.revoked_seq,
    }


def _key_record(row: Any) -> KeyRecord:
    return KeyRecord(
        key_id=row.key_id,
        public_key=row.public_key,
        user=row.user_name,
        roles=tuple(json.loads(row.roles)),
        sites=tuple(json.loads(row.sites)),
        owners=tuple(json.loads(row.owners)),
        clearance=row.clearance,
        registered_seq=row.registered_seq,
        revoked_seq=row.revoked_seq,
    )


def write_changes(conn: Connection, changes: Iterable[Change]) -> None:
    """Persist a batch's changes; only the last value of each key or account matters."""
    key_rows: dict[str, dict[str, Any]] = {}
    balances: dict[str, int] = {}
    for ch in changes:
        if isinstance(ch, PutKey):
            key_rows[ch.record.key_id] = _key_row(ch.record)
        elif isinstance(ch, SetTestBalance):
            balances[ch.account] = ch.balance
        # SetLogInfo goes to log_state (the appender); SeenEntryId is entries.entry_id.
    upsert(conn, keys, list(key_rows.values()), key=["key_id"])
    upsert(
        conn,
        test_balances,
        [{"account": a, "balance": b} for a, b in balances.items()],
        key=["account"],
    )


def read_log_info(conn: Connection) -> LogInfo | None:
    row = conn.execute(select(log_state.c.log_id, log_state.c.log_key)).first()
    return LogInfo(log_id=row.log_id, log_key=row.log_key) if row else None


def read_keys(conn: Connection) -> dict[str, KeyRecord]:
    return {r.key_id: _key_record(r) for r in conn.execute(select(keys))}


def read_test_balances(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(test_balances).where(test_balances.c.balance != 0))
    return {r.account: r.balance for r in rows}


def db_loader(conn: Connection) -> Loader:
    """Answers the reducer's questions from the tables (the write path)."""

    def key(kid: str) -> KeyRecord | None:
        row = conn.execute(select(keys).where(keys.c.key_id == kid)).first()
        return _key_record(row) if row else None

    def keys_of(user: str) -> list[KeyRecord]:
        return [_key_record(r) for r in conn.execute(select(keys).where(keys.c.user_name == user))]

    def admin_count() -> int:
        rows = conn.execute(select(keys.c.roles).where(keys.c.revoked_seq.is_(None)))
        return sum(1 for r in rows if "security_admin" in json.loads(r.roles))

    def entry_id_seen(entry_id: str) -> bool:
        q = select(func.count()).select_from(entries).where(entries.c.entry_id == entry_id)
        return bool(conn.execute(q).scalar_one())

    def test_balance(account: str) -> int:
        q = select(test_balances.c.balance).where(test_balances.c.account == account)
        return int(conn.execute(q).scalar_one_or_none() or 0)

    return Loader(
        log_info=lambda: read_log_info(conn),
        key=key,
        keys_of=keys_of,
        admin_count=admin_count,
        entry_id_seen=entry_id_seen,
        test_balance=test_balance,
    )
