"""Inclusion and consistency proofs served from stored tree nodes: one batched read of
O(log n) nodes per proof (RFC 9162 sections 2.1.3 and 2.1.4), never a scan."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ledger.errors import NotFound
from ledger.merkle import consistency_proof, inclusion_proof, root_from_store
from ledger.store.log import DbNodeReader
from ledger.store.schema import entries, log_state


def _size(conn: Connection) -> int:
    row = conn.execute(select(log_state.c.size)).first()
    return int(row.size) if row else 0


def _check_size(conn: Connection, size: int | None) -> int:
    current = _size(conn)
    if size is None:
        return current
    if size < 0 or size > current:
        raise NotFound(f"the log has no tree of size {size} (current size {current})")
    return size


def prove_inclusion(
    conn: Connection, *, seq: int, size: int | None = None
) -> tuple[int, bytes, list[bytes]]:
    """(size, leaf hash, audit path) for entry ``seq`` in the tree of ``size`` leaves."""
    size = _check_size(conn, size)
    if seq < 0 or seq >= size:
        raise NotFound(f"entry {seq} is not in the tree of size {size}")
    row = conn.execute(select(entries.c.leaf_hash).where(entries.c.seq == seq)).first()
    if row is None:
        raise NotFound(f"entry {seq} is not in the log")
    return size, bytes(row.leaf_hash), inclusion_proof(DbNodeReader(conn), index=seq, size=size)


def prove_consistency(
    conn: Connection, *, old_size: int, new_size: int | None = None
) -> tuple[int, list[bytes]]:
    new_size = _check_size(conn, new_size)
    if old_size < 0 or old_size > new_size:
        raise NotFound(f"no consistency proof from size {old_size} to {new_size}")
    return new_size, consistency_proof(DbNodeReader(conn), old_size=old_size, new_size=new_size)


def root_at(conn: Connection, size: int) -> bytes:
    size = _check_size(conn, size)
    return root_from_store(DbNodeReader(conn), size)
