"""Cosignatures are append-only in the database itself (migration 0007), on SQLite and
PostgreSQL, and served with the checkpoint as one valid signed note."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from keys.signer import Ed25519Signer
from ledger.checkpoint import checkpoint_body, parse_checkpoint, verify_checkpoint
from ledger.cosignature import Cosigner, cosign, valid_cosigners
from ledger.errors import ConfigError, Conflict
from ledger.service import Ledger
from ledger.store.witnesses import add_witness, cosigned_note, latest_checkpoint, store_cosignature


def test_cosignatures_are_append_only_and_served(ledger: Ledger) -> None:
    signer = Ed25519Signer.generate()
    c = Cosigner(name="w.example/1", public_key=signer.public_key)
    add_witness(ledger.engine, name=c.name, url="https://w.example", vkey=c.vkey)
    with pytest.raises(Conflict):
        add_witness(ledger.engine, name=c.name, url="https://w.example", vkey=c.vkey)
    with pytest.raises(ConfigError):
        add_witness(ledger.engine, name="other", url="https://w.example", vkey=c.vkey)
    with ledger.engine.connect() as conn:
        latest = latest_checkpoint(conn)
    assert latest is not None
    size, note = latest
    line = cosign(checkpoint_body(parse_checkpoint(note)), signer=signer, name=c.name, timestamp=1_800_000_000)
    store_cosignature(ledger.engine, size=size, witness=c.name, line=line, timestamp=1_800_000_000)
    store_cosignature(ledger.engine, size=size, witness=c.name, line=line, timestamp=1_800_000_000)  # idempotent
    with ledger.engine.connect() as conn:
        served = cosigned_note(conn)
    assert served.count("\u2014 ") == 2 and valid_cosigners(served, [c]) == [c]
    log_key = ledger.log_signer().public_key
    verify_checkpoint(served, public_key=log_key, key_name=parse_checkpoint(served).origin)
    for sql in ("UPDATE cosignatures SET line = 'x'", "DELETE FROM cosignatures"):
        with pytest.raises(DBAPIError), ledger.engine.begin() as conn:
            conn.execute(text(sql))
    with ledger.engine.connect() as conn:
        assert cosigned_note(conn) == served
