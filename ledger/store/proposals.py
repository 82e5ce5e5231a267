"""Storing co-signature proposals (issue #9 item 3): ``proposals`` and
``proposal_signatures`` (migration 0006). The rules of the transitions are in
``ledger.proposals``; this module reads and writes them atomically.

A signature is added in one write transaction that re-reads the proposal under the write
lock (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite ``BEGIN IMMEDIATE``), so two signers
racing each see the other's signature, and only one of them completes the proposal. The
complete entry is appended through the normal path (the service's group committer); the
outcome is recorded in the append transaction itself (``appended`` with its seq) or, if
the reducer refuses it, afterwards (``refused`` with the problem).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ledger.entries import Sig, parse_submission
from ledger.errors import Conflict, InvalidEntry, KeyNotAuthorised, LedgerError, NotFound, Rejected
from ledger.proposals import (
    Proposal,
    Signature,
    check_cosign,
    check_new,
    check_withdraw,
    expiry,
    verify_cosignature,
)
from ledger.store.db import write_transaction
from ledger.store.projections import read_user_keys
from ledger.store.schema import entries, proposal_signatures, proposals
from ledger.timefmt import format_time

log = structlog.get_logger("ledger.proposals")

# Appends a complete submission; ``also(conn, seq)`` runs in the append transaction.
Append = Callable[[dict[str, Any], Callable[[Connection, int], None]], int]


def _load(conn: Connection, pid: str, *, lock: bool = False) -> Proposal | None:
    q = select(proposals).where(proposals.c.id == pid)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return None
    sigs = conn.execute(
        select(proposal_signatures)
        .where(proposal_signatures.c.proposal_id == pid)
        .order_by(proposal_signatures.c.position)
    ).all()
    return Proposal(
        id=row.id,
        body=json.loads(row.body),
        proposer=row.proposer,
        cosigners=tuple(json.loads(row.cosigners)),
        created_at=row.created_at,
        expires_at=row.expires_at,
        status=row.status,
        signatures=tuple(Signature(s.user_name, s.pub, s.sig, s.signed_at) for s in sigs),
        closed_at=row.closed_at,
        outcome_seq=row.outcome_seq,
        outcome=json.loads(row.outcome) if row.outcome else None,
    )


def get(conn: Connection, pid: str) -> Proposal:
    p = _load(conn, pid)
    if p is None:
        raise NotFound("no such proposal")
    return p


def involving(conn: Connection, user: str) -> list[Proposal]:
    """Proposals ``user`` made or is named in, newest first."""
    out = []
    for row in conn.execute(select(proposals.c.id, proposals.c.proposer, proposals.c.cosigners).order_by(proposals.c.created_at.desc())):
        if row.proposer == user or user in json.loads(row.cosigners):
            p = _load(conn, row.id)
            assert p is not None
            out.append(p)
    return out


def waiting_for(conn: Connection, user: str, *, at: datetime) -> list[Proposal]:
    """Open, unexpired proposals that wait for ``user``'s signature."""
    when = format_time(at)
    rows = conn.execute(
        select(proposals.c.id, proposals.c.cosigners)
        .where(proposals.c.status == "open", proposals.c.expires_at > when)
        .order_by(proposals.c.created_at)
    )
    out = []
    for row in rows:
        if user in json.loads(row.cosigners):
            p = _load(conn, row.id)
            assert p is not None
            if user in p.waiting_for():
                out.append(p)
    return out


def _active(conn: Connection, user: str) -> list[Any]:
    return [k for k in read_user_keys(conn, user) if k.revoked_seq is None]


def create(
    engine: Engine,
    submission: dict[str, Any],
    *,
    proposer: str,
    cosigners: list[str],
    log_id: str,
    at: datetime,
    ttl: timedelta | None = None,
) -> Proposal:
    """Open a proposal: the body signed (v2, this log) by the proposer's active key."""
    signed, body = parse_submission(submission, log_id=log_id)
    expires = expiry(body["created_at"], at=at, ttl=ttl)
    check_new(body=body, sigs=list(signed.sigs), proposer=proposer, cosigners=cosigners, expires_at=expires, at=at)
    pid = body["id"]
    when = format_time(at)
    try:
        with write_transaction(engine) as conn:
            if signed.sigs[0].pub not in {k.public_key for k in _active(conn, proposer)}:
                raise KeyNotAuthorised(
                    "the proposal is not signed by one of your active keys", field="sigs[0]"
                )
            for i, name in enumerate(cosigners):
                if not _active(conn, name):
                    raise InvalidEntry(f"'{name}' has no active key in this ledger", field=f"cosigners[{i}]")
            if conn.execute(select(entries.c.seq).where(entries.c.entry_id == pid)).first() is not None:
                raise Conflict("an entry with this id is already in the log")
            conn.execute(
                insert(proposals).values(
                    id=pid,
                    entry_id=pid,
                    kind=body["kind"],
                    proposer=proposer,
                    body=json.dumps(body),
                    cosigners=json.dumps(cosigners),
                    created_at=when,
                    expires_at=expires,
                    status="open",
                )
            )
            s = signed.sigs[0]
            conn.execute(
                insert(proposal_signatures).values(
                    proposal_id=pid, user_name=proposer, position=0, pub=s.pub, sig=s.sig, signed_at=when
                )
            )
    except IntegrityError:
        raise Conflict("a proposal of this entry already exists") from None
    log.info("proposal_opened", proposal=pid, kind=body["kind"], proposer=proposer)
    with engine.connect() as conn:
        return get(conn, pid)


def add_signature(
    engine: Engine, pid: str, sig: Sig, *, user: str, log_id: str, at: datetime
) -> Proposal:
    """Add ``user``'s co-signature (checked over the stored body); returns the
    proposal as it now stands."""
    when = format_time(at)
    try:
        with write_transaction(engine) as conn:
            p = _load(conn, pid, lock=True)
            if p is None:
                raise NotFound("no such proposal")
            if user not in p.cosigners and user != p.proposer:
                raise NotFound("no such proposal")  # not named: as if it did not exist
            check_cosign(p, user=user, at=at)
            verify_cosignature(p, sig, log_id=log_id, active_keys=_active(conn, user))
            conn.execute(
                insert(proposal_signatures).values(
                    proposal_id=pid,
                    user_name=user,
                    position=1 + p.cosigners.index(user),
                    pub=sig.pub,
                    sig=sig.sig,
                    signed_at=when,
                )
            )
            p = _load(conn, pid)
            assert p is not None
    except IntegrityError:  # the constraints backstop the lock: one signature per signer/key
        raise Conflict("you have already signed this proposal") from None
    log.info("proposal_cosigned", proposal=pid, signer=user)
    return p


def _mark_appended(pid: str, at: datetime) -> Callable[[Connection, int], None]:
    def mark(conn: Connection, seq: int) -> None:
        conn.execute(
            update(proposals)
            .where(proposals.c.id == pid, proposals.c.status == "open")
            .values(status="appended", outcome_seq=seq, closed_at=format_time(at))
        )

    return mark


def finish(engine: Engine, p: Proposal, append: Append, *, at: datetime) -> Proposal:
    """Append a complete proposal's entry through the normal path; record the outcome."""
    if p.status != "open" or not p.is_complete():
        return p
    try:
        append(p.submission(), _mark_appended(p.id, at))
    except LedgerError as exc:
        outcome = {
            "code": exc.code,
            "rule": exc.rule if isinstance(exc, Rejected) else None,
            "detail": exc.public_message,
            "field": exc.field,
        }
        with write_transaction(engine) as conn:
            conn.execute(
                update(proposals)
                .where(proposals.c.id == p.id, proposals.c.status == "open")
                .values(status="refused", outcome=json.dumps(outcome), closed_at=format_time(at))
            )
        log.info("proposal_refused", proposal=p.id, code=exc.code)
    else:
        log.info("proposal_appended", proposal=p.id)
    with engine.connect() as conn:
        return get(conn, p.id)


def withdraw(engine: Engine, pid: str, *, user: str, at: datetime) -> Proposal:
    with write_transaction(engine) as conn:
        p = _load(conn, pid, lock=True)
        if p is None or (user != p.proposer and user not in p.cosigners):
            raise NotFound("no such proposal")
        check_withdraw(p, user=user, at=at)
        conn.execute(
            update(proposals)
            .where(proposals.c.id == pid, proposals.c.status == "open")
            .values(status="withdrawn", closed_at=format_time(at))
        )
        p = _load(conn, pid)
        assert p is not None
    log.info("proposal_withdrawn", proposal=pid)
    return p
