"""An :class:`ledger.audit_sync.AuditSource` read straight from a database: what the
service's routes serve, without HTTP (tests, benchmarks, an auditor with a replica)."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine

from ledger.store import owner_scope
from ledger.store.audit import CHUNK, db_rows
from ledger.store.proofs import prove_consistency
from ledger.store.witnesses import cosigned_note


class DbAuditSource:
    def __init__(self, engine: Engine):
        self.engine = engine

    def checkpoint(self) -> str:
        with self.engine.connect() as conn:
            return cosigned_note(conn)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        with self.engine.connect() as conn:
            return prove_consistency(conn, old_size=old_size, new_size=new_size)[1]

    def leaves(self, start: int, end: int) -> Iterator[bytes]:
        with self.engine.connect() as conn:
            for row in db_rows(conn, upto=end, start=start):
                yield row.line

    def commitments(self, start: int, end: int) -> Iterator[tuple[int, bytes]]:
        with self.engine.connect() as conn:
            for lo in range(start, end, CHUNK):  # bounded memory on a long sync
                hi = min(end, lo + CHUNK)
                yield from sorted(owner_scope.read_commitments(conn, start=lo, end=hi).items())
