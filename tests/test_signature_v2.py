"""Entry signatures bound to one log (issue #9 item 6): the v2 form, the v1 ratchet.

v2 signs ``reserve-ledger/entry/v2\\n || log_id || "\\n" || JCS(body)``. A log born v2
takes only v2; a log written before v2 keeps verifying, and takes v1 only until its
first v2 entry (``LogInfo.entry_sig_version``, the reducer's ratchet).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ledger.entries
import ledger.store.log
from keys import FileKeystore
from ledger.bundle import Bundle
from ledger.canonical import canonical
from ledger.entries import (
    ENTRY_DOMAIN,
    ENTRY_DOMAIN_V1,
    parse_submission,
    signing_message,
    signing_message_v1,
)
from ledger.errors import Rejected, SignatureInvalid, VerificationFailed
from ledger.reducer import Context, apply
from ledger.service import Ledger, new_body
from ledger.state import LogInfo, State
from ledger.store.audit import export_bundle, verify_database
from ledger.store.db import make_engine
from ledger.store.projections import read_log_info
from ledger.verify import verify_history
from tests.conftest import PASSPHRASE, make_ledger, with_operator
from tests.tamper_helpers import log_public_key, read_leaf, tampering, write_leaf


def test_the_message_binds_domain_log_id_and_body() -> None:
    body = canonical({"a": 1})
    assert signing_message(body, log_id="eu.example/ledger") == (
        b"reserve-ledger/entry/v2\neu.example/ledger\n" + body
    )
    assert ENTRY_DOMAIN != ENTRY_DOMAIN_V1
    assert signing_message_v1(body) == b"reserve-ledger/entry/v1\n" + body
    with pytest.raises(Exception, match="one non-empty line"):
        signing_message(body, log_id="a\nb")


def two_logs(tmp_path: Path) -> tuple[Ledger, Ledger]:
    """Two ledgers, national and EU, with one keystore: the same admin and operator keys
    are registered in both."""
    keys = tmp_path / "keys"
    a = Ledger(make_engine(f"sqlite:///{tmp_path / 'a.db'}"), FileKeystore(keys, passphrase=PASSPHRASE))
    a.init(log_id="jp.example/ledger", admin="admin")
    b = Ledger(make_engine(f"sqlite:///{tmp_path / 'b.db'}"), FileKeystore(keys, passphrase=PASSPHRASE))
    b.init(log_id="eu.example/ledger", admin="admin")
    with_operator(a)
    with_operator(b)
    assert a.active_key_of("olga").public_key == b.active_key_of("olga").public_key
    return a, b


def test_an_entry_signed_for_log_a_is_refused_by_log_b(tmp_path: Path) -> None:
    a, b = two_logs(tmp_path)
    body = new_body("test.movement", "olga", account="ACC", delta=5)
    for_a = a.sign(body, [a.signer_for("olga")])
    size_b = ledger.store.log.head(b.engine).size
    with pytest.raises(SignatureInvalid, match="for this log"):
        ledger.store.log.append(b.engine, [for_a], log_signer=b.log_signer())
    assert ledger.store.log.head(b.engine).size == size_b  # nothing written
    ledger.store.log.append(a.engine, [for_a], log_signer=a.log_signer())  # A takes it


def test_a_v1_submission_is_refused_on_the_write_path(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    body = new_body("test.movement", "olga", account="ACC", delta=5)
    legacy = legacy_sign(body, sqlite_ledger)
    with pytest.raises(SignatureInvalid):
        parse_submission(legacy, log_id=sqlite_ledger.log_id())


def legacy_sign(body: dict[str, object], led: Ledger) -> dict[str, object]:
    import base64

    sig = led.signer_for(str(body["author"])).sign(signing_message_v1(canonical(body)))
    return {
        "entry": body,
        "sigs": [{"pub": led.signer_for(str(body["author"])).public_key.hex(), "sig": base64.b64encode(sig).decode()}],
    }


def legacy_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setattr(ledger.entries, "signing_message", lambda body, *, log_id: signing_message_v1(body))
    monkeypatch.setattr(ledger.store.log, "Context", functools.partial(Context, sig_version=1))
    led = make_ledger(f"sqlite:///{tmp_path / 'old.db'}", tmp_path / "keys")
    with_operator(led)
    led.act("olga", "test.movement", account="ACC", delta=7)
    monkeypatch.undo()
    return led


def test_an_old_v1_log_still_verifies_and_ratchets_to_v2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led = legacy_ledger(tmp_path, monkeypatch)
    with led.engine.connect() as conn:
        info = read_log_info(conn)
    assert info is not None and info.entry_sig_version == 1
    # It really is a v1 log: its entries verify only under the v1 message.
    leaf = read_leaf_line(led, 4)  # the movement (after owner, site and olga's key)
    with pytest.raises(SignatureInvalid):
        ledger.entries.check_signatures(
            [ledger.entries.Sig(**s) for s in leaf["sigs"]], canonical(leaf["entry"]), log_id=led.log_id()
        )
    verify_database(led.engine, trusted_log_key=log_public_key(led))
    verify_database(led.engine, trusted_log_key=log_public_key(led), jobs=2)

    # The first v2 entry ratchets the log: v1 is refused from then on.
    led.act("olga", "test.movement", account="ACC", delta=1)
    with led.engine.connect() as conn:
        info = read_log_info(conn)
    assert info is not None and info.entry_sig_version == 2
    report = verify_database(led.engine, trusted_log_key=log_public_key(led), jobs=2)
    assert report.size == 6

    # The same history as a bundle, verified offline (v1 then v2, in worker processes).
    out = tmp_path / "bundle"
    export_bundle(led.engine, out)
    b = Bundle(out)
    b.check_files()
    for jobs in (1, 2):
        rep = verify_history(
            b.rows(), b.checkpoints(), trusted_log_key=log_public_key(led), projections=b.projections(), jobs=jobs
        )
        assert rep.size == 6

    # Rewriting the ratcheting entry itself as v1 changes nothing the rules can see (the
    # checkpoint catches it); a v1 entry after it breaks the ratchet.
    led.act("olga", "test.movement", account="ACC", delta=1)
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, 6)
        leaf["sigs"] = legacy_sign(leaf["entry"], led)["sigs"]
        write_leaf(conn, 6, leaf)
    with pytest.raises(VerificationFailed, match="bound to its id") as ei:
        verify_database(led.engine, trusted_log_key=log_public_key(led))
    assert ei.value.seq == 6


def read_leaf_line(led: Ledger, seq: int) -> dict[str, Any]:
    with led.engine.connect() as conn:
        return read_leaf(conn, seq)


def test_a_log_born_v2_refuses_v1_in_the_verifier(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    sqlite_ledger.act("olga", "test.movement", account="ACC", delta=7)
    with sqlite_ledger.engine.connect() as conn:
        info = read_log_info(conn)
    assert info is not None and info.entry_sig_version == 2
    with tampering(sqlite_ledger.engine) as conn:
        leaf = read_leaf(conn, 2)
        leaf["sigs"] = legacy_sign(leaf["entry"], sqlite_ledger)["sigs"]
        write_leaf(conn, 2, leaf)
    for jobs in (1, 2):
        with pytest.raises(VerificationFailed) as ei:
            verify_database(sqlite_ledger.engine, trusted_log_key=log_public_key(sqlite_ledger), jobs=jobs)
        assert ei.value.seq == 2
        assert "bound to its id" in ei.value.public_message


def test_the_ratchet_is_the_reducers() -> None:
    """Pure: a state at v2 refuses a v1 entry; a state at v1 moves to v2 on a v2 entry."""
    now = datetime.now(UTC)
    body = ledger.entries._convert(
        new_body("test.movement", "olga", account="ACC", delta=1), ledger.entries.AnyBody
    )
    state = State()
    state.apply([ledger.state.SetLogInfo(LogInfo(log_id="x", log_key="a" * 64, entry_sig_version=2))])
    with pytest.raises(Rejected) as ei:
        apply(state, body, [], Context(seq=5, recorded_at=now, sig_version=1))
    assert ei.value.rule == "signature-version"


def test_a_genesis_is_signed_for_the_log_it_names(tmp_path: Path) -> None:
    led = make_ledger(f"sqlite:///{tmp_path / 'l.db'}", tmp_path / "k")
    leaf = read_leaf_line(led, 0)
    sigs = [ledger.entries.Sig(**s) for s in leaf["sigs"]]
    ledger.entries.check_signatures(sigs, canonical(leaf["entry"]), log_id="test.local/ledger")
    with pytest.raises(SignatureInvalid):
        ledger.entries.check_signatures(sigs, canonical(leaf["entry"]), log_id="other")


def test_the_genesis_marks_a_demo_ledger(tmp_path: Path) -> None:
    """Only ``reserve demo`` marks a ledger as a demo; the state exposes the mark."""
    real = make_ledger(f"sqlite:///{tmp_path / 'real.db'}", tmp_path / "k")
    assert real.is_demo() is False
    assert "demo" not in read_leaf_line(real, 0)["entry"]
    demo = Ledger(make_engine(f"sqlite:///{tmp_path / 'demo.db'}"), FileKeystore(tmp_path / "k2", passphrase=PASSPHRASE))
    demo.init(log_id="reserve.local/demo", admin="admin", demo=True)
    assert demo.is_demo() is True
    assert read_leaf_line(demo, 0)["entry"]["demo"] is True
    verify_database(demo.engine, trusted_log_key=log_public_key(demo))
