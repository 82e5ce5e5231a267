"""Projections: the reducer's state, materialised in tables for fast reads.

Written in the same transaction as the entries that change them, from the same
:class:`~ledger.state.Change` objects the in-memory state applies, and compared with a
full replay by the verifier.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, literal, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from ledger.records import (
    BalanceRec,
    LoanRec,
    LotRec,
    MaterialRec,
    MovementRec,
    OrderRec,
    OwnerRec,
    PolicyRec,
    PriceRec,
    RequestRec,
    SiteRec,
    TargetRec,
    TransferRec,
)
from ledger.state import Change, KeyRecord, Loader, LogInfo, Post, Put, PutKey
from ledger.store import schema
from ledger.store.schema import entries, keys, log_state


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
        "custody": rec.custody,
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
        custody=row.custody,
        registered_seq=row.registered_seq,
        revoked_seq=row.revoked_seq,
    )


@dataclass(frozen=True)
class Spec:
    """How one reducer table (``ledger.state.TABLES``) is stored. ``record`` is None for
    a plain integer value (``test_balances``). Which tables the verifier compares is
    ``ledger.state.COMPARED_TABLES``."""

    table: Table
    key_cols: tuple[str, ...]
    record: type | None


SPECS: dict[str, Spec] = {
    "test_balances": Spec(schema.test_balances, ("account",), None),
    "owners": Spec(schema.owners, ("code",), OwnerRec),
    "materials": Spec(schema.materials, ("code",), MaterialRec),
    "lots": Spec(schema.lots, ("code",), LotRec),
    "sites": Spec(schema.sites, ("code",), SiteRec),
    "targets": Spec(schema.targets, ("owner", "material"), TargetRec),
    "balances": Spec(schema.balances, ("account", "lot"), BalanceRec),
    "transfers": Spec(schema.transfers, ("id",), TransferRec),
    "loans": Spec(schema.loans, ("id",), LoanRec),
    "movements": Spec(schema.movements, ("entry_id",), MovementRec),
    "policies": Spec(schema.policies, ("owner", "material"), PolicyRec),
    "prices": Spec(schema.prices, ("price_index", "material", "currency"), PriceRec),
    "release_requests": Spec(schema.release_requests, ("id",), RequestRec),
    "release_orders": Spec(schema.release_orders, ("id",), OrderRec),
}


def _tuplify(v: Any) -> Any:
    return tuple(_tuplify(x) for x in v) if isinstance(v, list) else v


def to_row(spec: Spec, key: Hashable, value: Any) -> dict[str, Any]:
    if spec.record is None:
        return {spec.key_cols[0]: key, "balance": value}
    return {
        f.name: json.dumps(getattr(value, f.name))
        if isinstance(getattr(value, f.name), tuple)
        else getattr(value, f.name)
        for f in fields(value)
    }


def from_row(spec: Spec, row: Any) -> tuple[Hashable, Any]:
    if spec.record is None:
        return row[0], int(row.balance)
    values = {}
    for f in fields(spec.record):
        v = getattr(row, f.name)
        values[f.name] = _tuplify(json.loads(v)) if "tuple" in str(f.type) else v
    rec = spec.record(**values)
    return rec.key, rec


def _key_clause(spec: Spec, keys_: list[Hashable]) -> Any:
    cols = [spec.table.c[c] for c in spec.key_cols]
    if len(cols) == 1:
        return cols[0].in_(keys_)
    return tuple_(*cols).in_([tuple(k) for k in keys_])  # type: ignore[arg-type]


def write_changes(
    conn: Connection, changes: Iterable[Change], *, kinds: Mapping[int, str], recorded_at: str
) -> int:
    """Persist a batch's changes; only the last value of each record matters. Each
    posting also gets its entry's kind (``kinds`` by seq) and the batch's log time, so a
    lot trace needs no join (issue #12). Returns the number of postings written."""
    key_rows: dict[str, dict[str, Any]] = {}
    puts: dict[str, dict[Hashable, Any]] = {}
    posting_rows: list[dict[str, Any]] = []
    for ch in changes:
        if isinstance(ch, Put):
            puts.setdefault(ch.table, {})[ch.key] = ch.value
        elif isinstance(ch, Post):
            p = ch.posting
            posting_rows.append(
                {
                    "seq": p.seq,
                    "n": p.n,
                    "account": p.account,
                    "material": p.material,
                    "lot": p.lot,
                    "delta": p.delta,
                    "balance_after": p.balance_after,
                    "kind": kinds[p.seq],
                    "recorded_at": recorded_at,
                }
            )
        elif isinstance(ch, PutKey):
            key_rows[ch.record.key_id] = _key_row(ch.record)
        # SetLogInfo goes to log_state (the appender); SeenEntryId is entries.entry_id.
    upsert(conn, schema.keys, list(key_rows.values()), key=["key_id"])
    for name, values in puts.items():
        spec = SPECS[name]
        gone = [k for k, v in values.items() if v is None]
        if gone:
            conn.execute(delete(spec.table).where(_key_clause(spec, gone)))
        rows = [to_row(spec, k, v) for k, v in values.items() if v is not None]
        if name == "movements":
            # A movement recorded by this batch cannot be in the table yet: a plain
            # insert (COPY on PostgreSQL); only a reversal's mark updates an older one.
            new = [r for r in rows if r["seq"] in kinds]
            _insert(conn, spec.table, new)
            rows = [r for r in rows if r["seq"] not in kinds]
        upsert(conn, spec.table, rows, key=list(spec.key_cols))
    if posting_rows:
        _insert(conn, schema.postings, posting_rows)
    return len(posting_rows)


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert new rows. PostgreSQL: COPY, in the append's transaction: it takes 200
    postings in about a quarter of the time of the driver's pipelined executemany
    (issue #12: a receipt writes a movement and two legs more than a test movement).
    Other engines: executemany."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    import psycopg

    driver = conn.connection.driver_connection
    assert driver is not None
    cols = list(rows[0])
    sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
    try:
        with driver.cursor() as cur, cur.copy(sql) as copy:
            for r in rows:
                copy.write_row([r[c] for c in cols])
    except psycopg.Error as exc:
        # The exception SQLAlchemy raises for a statement (IntegrityError, ...), so the
        # append maps it as it maps every database refusal.
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc


def read_table(conn: Connection, name: str) -> dict[Hashable, Any]:
    spec = SPECS[name]
    return dict(from_row(spec, r) for r in conn.execute(select(spec.table)))


def read_log_info(conn: Connection) -> LogInfo | None:
    row = conn.execute(
        select(
            log_state.c.log_id, log_state.c.log_key, log_state.c.entry_sig_version, log_state.c.demo
        )
    ).first()
    if row is None:
        return None
    return LogInfo(
        log_id=row.log_id,
        log_key=row.log_key,
        entry_sig_version=int(row.entry_sig_version),
        demo=bool(row.demo),
    )


def read_user_keys(conn: Connection, user: str) -> list[KeyRecord]:
    return [_key_record(r) for r in conn.execute(select(keys).where(keys.c.user_name == user))]


def _caller_query() -> Any:
    one = select(literal(1).label("one")).subquery()
    return select(schema.revoked_tokens.c.jti.label("revoked_jti"), keys).select_from(
        one.outerjoin(
            schema.revoked_tokens, schema.revoked_tokens.c.jti == bindparam("jti")
        ).outerjoin(keys, keys.c.user_name == bindparam("user"))
    )


# Built once: every authenticated request runs it, and building the statement cost more
# Python time than running it (issue #11, profiled).
_CALLER_QUERY = _caller_query()


def read_caller(conn: Connection, user: str, jti: str) -> tuple[bool, list[KeyRecord]]:
    """Whether token ``jti`` is revoked, and ``user``'s keys, in ONE round trip: every
    authenticated request asks both (issue #11: round trips, not CPU, bound the service
    under load)."""
    rows = conn.execute(_CALLER_QUERY, {"jti": jti, "user": user}).all()
    revoked = any(r.revoked_jti is not None for r in rows)
    return revoked, [_key_record(r) for r in rows if r.key_id is not None]


def read_keys_by_id(conn: Connection, ids: Iterable[str]) -> list[KeyRecord]:
    """The registered keys among ``ids``, in one query (a batch's signers)."""
    wanted = list(set(ids))
    if not wanted:
        return []
    return [_key_record(r) for r in conn.execute(select(keys).where(keys.c.key_id.in_(wanted)))]


def read_keys(conn: Connection) -> dict[str, KeyRecord]:
    return {r.key_id: _key_record(r) for r in conn.execute(select(keys))}


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

    def get(table: str, key: Hashable) -> Any:
        spec = SPECS[table]
        cols = [spec.table.c[c] for c in spec.key_cols]
        values = key if isinstance(key, tuple) else (key,)
        row = conn.execute(
            select(spec.table).where(*[c == v for c, v in zip(cols, values, strict=True)])
        ).first()
        return from_row(spec, row)[1] if row is not None else None

    return Loader(
        log_info=lambda: read_log_info(conn),
        key=key,
        keys_of=keys_of,
        admin_count=admin_count,
        entry_id_seen=entry_id_seen,
        get=get,
    )
