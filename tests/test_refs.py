"""References people can type (issue #12, ``ledger/refs.py``): a seq, an id, a unique
id prefix of 8+ characters; a key by id, prefix or its user's name. Ambiguity is refused
with the candidates' seqs, never guessed."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from keys import Ed25519Signer
from ledger.crypto import key_id
from ledger.errors import InvalidQuery, NotFound
from ledger.refs import AmbiguousReference, resolve_entry, resolve_key
from ledger.service import Ledger, new_body

PREFIX = "abcdef01"


def _owner(led: Ledger, code: str, *, entry_id: str | None = None, kind: str = "owner.registered") -> int:
    fields: dict[str, Any] = (
        dict(code=code, name=f"Owner {code}", country="JP")
        if kind == "owner.registered"
        else dict(code=code, name=code, form="oxide", base_unit="g", grade_basis="TREO")
    )
    body = new_body(kind, "admin", **fields)
    if entry_id is not None:
        body["id"] = entry_id
    return led.submit(body, [led.signer_for("admin")]).first_seq


def _id(prefix: str = PREFIX) -> str:
    return prefix + secrets.token_hex(16)[len(prefix):]


def test_seq_id_and_prefix_name_the_same_entry(ledger: Ledger) -> None:
    eid = _id()
    seq = _owner(ledger, "JP-RESERVE", entry_id=eid)
    with ledger.engine.connect() as conn:
        for ref in (str(seq), eid, eid[:8], eid[:12], eid[:8].upper(), f" {eid[:10]} "):
            got = resolve_entry(conn, ref)
            assert (got.seq, got.entry_id, got.kind) == (seq, eid, "owner.registered"), ref
        # With the kinds a field may name: the same entry, or a clear refusal.
        assert resolve_entry(conn, eid[:8], kinds=("owner.registered",)).seq == seq
        with pytest.raises(NotFound, match=f"seq {seq} is a owner.registered"):
            resolve_entry(conn, str(seq), kinds=("release.ordered",))


def test_ambiguous_prefix_is_refused_with_the_candidates_seqs(ledger: Ledger) -> None:
    a = _owner(ledger, "JP-RESERVE", entry_id=_id(PREFIX + "00"))
    b = _owner(ledger, "EU-JOINT", entry_id=_id(PREFIX + "11"))
    c = _owner(ledger, "NDPR-OXIDE", entry_id=_id(PREFIX + "22"), kind="material.registered")
    with ledger.engine.connect() as conn:
        with pytest.raises(AmbiguousReference) as exc:
            resolve_entry(conn, PREFIX)
        assert exc.value.candidates == (str(a), str(b), str(c))
        assert f"seqs {a}, {b}, {c}" in exc.value.public_message
        with pytest.raises(AmbiguousReference, match=f"seqs {a}, {b}\\)"):
            resolve_entry(conn, PREFIX, kinds=("owner.registered",))
        # Among materials the same prefix is unique; one more character is unique anyway.
        assert resolve_entry(conn, PREFIX, kinds=("material.registered",)).seq == c
        assert resolve_entry(conn, PREFIX + "1").seq == b


def test_an_id_prefix_of_digits_is_found_too(ledger: Ledger) -> None:
    """Ids are hex, so the first 8 characters are all digits for about 2 % of entries:
    eight digits or more are looked up as a seq and as an id prefix."""
    eid = _id("20261129")
    seq = _owner(ledger, "JP-RESERVE", entry_id=eid)
    with ledger.engine.connect() as conn:
        assert resolve_entry(conn, "20261129").seq == seq
        assert resolve_entry(conn, eid).seq == seq
        assert resolve_entry(conn, str(seq)).entry_id == eid  # short: a seq
        with pytest.raises(NotFound, match="at seq or id prefix 20261130"):
            resolve_entry(conn, "20261130")


def test_unknown_short_and_malformed_references_are_one_clear_line(ledger: Ledger) -> None:
    with ledger.engine.connect() as conn:
        with pytest.raises(NotFound, match="no entry at seq 999"):
            resolve_entry(conn, "999")
        with pytest.raises(NotFound, match="no release order '0123456789ab'"):
            resolve_entry(conn, "0123456789ab", kinds=("release.ordered",))
        with pytest.raises(InvalidQuery, match="too short"):
            resolve_entry(conn, "abc")
        for bad in ("-1", "zz12345678", "ab\x00cdef0123", "", "a" * 33):
            with pytest.raises(InvalidQuery) as exc:
                resolve_entry(conn, bad)
            assert "\x00" not in str(exc.value) and "zz" not in str(exc.value)


def test_key_by_user_name_id_and_prefix(ledger: Ledger) -> None:
    ledger.act("admin", "owner.registered", code="JP-RESERVE", name="JP", country="JP")
    ledger.register_key(admin="admin", user="fiona", roles=["official"], sites=[], owners=["JP-RESERVE"], clearance="NONE")
    with ledger.engine.connect() as conn:
        fiona = resolve_key(conn, "fiona")
        assert fiona.user == "fiona"
        assert resolve_key(conn, fiona.key_id).key_id == fiona.key_id
        assert resolve_key(conn, fiona.key_id[:8]).key_id == fiona.key_id
        with pytest.raises(NotFound, match="no key and no user with a key named 'nobody'"):
            resolve_key(conn, "nobody")
        with pytest.raises(InvalidQuery, match="too short"):
            resolve_key(conn, fiona.key_id[:5])
    # A second active key: the name no longer says which; the refusal lists both ids.
    second = Ed25519Signer.generate().public_key
    ledger.register_key(
        admin="admin", user="fiona", roles=["official"], sites=[], owners=["JP-RESERVE"],
        clearance="NONE", public_key=second,
    )
    with ledger.engine.connect() as conn, pytest.raises(AmbiguousReference) as exc:
        resolve_key(conn, "fiona")
    assert set(exc.value.candidates) == {fiona.key_id[:16], key_id(second)[:16]}
    # Once one is revoked, the name names the other again.
    ledger.act("admin", "key.revoked", key_id=fiona.key_id, reason="rotated")
    with ledger.engine.connect() as conn:
        assert resolve_key(conn, "fiona").key_id == key_id(second)
