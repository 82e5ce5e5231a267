"""The denylist of revoked token ids (RFC 8725: a stolen token can be cut off)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from ledger.store.schema import revoked_tokens


def is_revoked(conn: Connection, jti: str) -> bool:
    q = select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == jti)
    return conn.execute(q).first() is not None


def revoke(conn: Connection, *, jti: str, expires_at: int, by: str) -> None:
    if not is_revoked(conn, jti):
        conn.execute(insert(revoked_tokens).values(jti=jti, expires_at=expires_at, revoked_by=by))
