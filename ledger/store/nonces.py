"""Login nonces (issue #9 item 2), in the database so that any worker process can
consume a nonce another one issued.

A nonce is consumed by one conditional UPDATE (unused, unexpired, this log, the subject
it was asked for): of two concurrent attempts exactly one changes the row, on SQLite and
PostgreSQL alike, so a nonce logs in at most once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert, update

from ledger.errors import Unauthenticated
from ledger.login import LOGIN_REFUSED, NONCE_TTL, new_nonce
from ledger.store.db import write_transaction
from ledger.store.schema import auth_nonces
from ledger.timefmt import format_time


def issue(
    engine: Engine,
    *,
    log_id: str,
    at: datetime,
    user: str | None = None,
    public_key: str | None = None,
) -> tuple[str, str]:
    """A fresh nonce for ``user`` or ``public_key`` (as asked: an unknown user gets a
    nonce too, so the challenge does not reveal who is registered); returns it and its
    expiry. Nonces that expired a while ago are purged on the way."""
    nonce = new_nonce()
    created = format_time(at)
    expires = format_time(at + NONCE_TTL)
    with write_transaction(engine) as conn:
        conn.execute(delete(auth_nonces).where(auth_nonces.c.expires_at < format_time(at - NONCE_TTL)))
        conn.execute(
            insert(auth_nonces).values(
                nonce=nonce,
                log_id=log_id,
                subject_user=user,
                subject_key=public_key,
                created_at=created,
                expires_at=expires,
            )
        )
    return nonce, expires


def consume(
    engine: Engine, *, nonce: str, log_id: str, at: datetime, user: str, public_key: str
) -> None:
    """Mark the nonce used, or raise :class:`Unauthenticated`: unknown, used, expired,
    issued by another log, or asked for another user or key."""
    when = format_time(at)
    c = auth_nonces.c
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(auth_nonces)
            .where(
                c.nonce == nonce,
                c.log_id == log_id,
                c.used_at.is_(None),
                c.expires_at > when,
                (c.subject_user.is_(None)) | (c.subject_user == user),
                (c.subject_key.is_(None)) | (c.subject_key == public_key),
            )
            .values(used_at=when)
        )
        if result.rowcount != 1:
            raise Unauthenticated(LOGIN_REFUSED)
