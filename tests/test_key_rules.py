"""Key-registry rules, through the real write path: each refusal writes nothing, and
the verifier accepts exactly the histories the write path accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keys import Ed25519Signer
from ledger.entries import sign_body
from ledger.errors import KeyNotAuthorised, Rejected
from ledger.service import Ledger, new_body
from ledger.store.audit import verify_database
from ledger.store.log import append, head
from ledger.timefmt import format_time
from tests.conftest import with_operator


def size(led: Ledger) -> int:
    return int(head(led.engine).size)


def refused(led: Ledger, exc_type: type[Exception], fn, *args, match: str | None = None, **kw) -> Exception:  # type: ignore[no-untyped-def]
    before = size(led)
    with pytest.raises(exc_type, match=match) as info:
        fn(*args, **kw)
    assert size(led) == before, "a refused entry must write nothing"
    verify_database(led.engine, trusted_log_key=None)
    return info.value


def test_operator_can_move_and_history_verifies(ledger: Ledger) -> None:
    with_operator(ledger)
    ledger.act("olga", "test.movement", account="ACC", delta=10)
    report = verify_database(ledger.engine, trusted_log_key=ledger.log_signer().public_key)
    assert report.size == 5  # genesis, owner, site (issue #12), olga's key, the movement
    assert report.checkpoints == 5


def test_unregistered_key_is_refused(sqlite_ledger: Ledger) -> None:
    sqlite_ledger.keystore.generate("mallory")
    exc = refused(sqlite_ledger, KeyNotAuthorised, sqlite_ledger.act, "mallory", "test.movement", account="A", delta=1)
    assert "not registered" in str(exc)


def test_only_admin_registers_keys(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    exc = refused(
        sqlite_ledger, Rejected, sqlite_ledger.register_key,
        admin="olga", user="eve", roles=["operator"], sites=[], owners=[], clearance="NONE",
    )
    assert exc.rule == "role"  # type: ignore[attr-defined]


def test_admin_cannot_record_movements(sqlite_ledger: Ledger) -> None:
    exc = refused(sqlite_ledger, Rejected, sqlite_ledger.act, "admin", "test.movement", account="A", delta=1)
    assert exc.rule == "role"  # type: ignore[attr-defined]


def test_admin_role_is_exclusive(sqlite_ledger: Ledger) -> None:
    exc = refused(
        sqlite_ledger, Rejected, sqlite_ledger.register_key,
        admin="admin", user="sam", roles=["security_admin", "operator"], sites=[], owners=[], clearance="NONE",
    )
    assert exc.rule == "separation-of-duties"  # type: ignore[attr-defined]
    with_operator(sqlite_ledger, "sam")
    sqlite_ledger.keystore.generate("sam2")
    exc = refused(
        sqlite_ledger, Rejected, sqlite_ledger.register_key,
        admin="admin", user="sam", roles=["security_admin"], sites=[], owners=[], clearance="NONE",
        public_key=sqlite_ledger.keystore.public_key("sam2"),
    )
    assert exc.rule == "separation-of-duties"  # type: ignore[attr-defined]


def test_key_cannot_be_registered_twice(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    exc = refused(
        sqlite_ledger, Rejected, sqlite_ledger.register_key,
        admin="admin", user="olga", roles=["operator"], sites=[], owners=[], clearance="NONE",
    )
    assert exc.rule == "key-exists"  # type: ignore[attr-defined]


def test_revoked_key_signs_nothing_after_but_history_stays_valid(ledger: Ledger) -> None:
    with_operator(ledger)
    ledger.act("olga", "test.movement", account="ACC", delta=10)
    kid = ledger.active_key_of("olga").key_id
    ledger.revoke_key(actor="admin", key_id=kid, reason="laptop lost")
    exc = refused(ledger, KeyNotAuthorised, ledger.act, "olga", "test.movement", account="ACC", delta=1)
    assert "revoked at seq 5" in str(exc)
    verify_database(ledger.engine, trusted_log_key=None)  # the movement at seq 4 stays valid


def test_owner_may_revoke_own_key_not_others(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger, "olga")
    with_operator(sqlite_ledger, "omar")
    omar = sqlite_ledger.active_key_of("omar").key_id
    exc = refused(sqlite_ledger, Rejected, sqlite_ledger.revoke_key, actor="olga", key_id=omar, reason="x")
    assert exc.rule == "role"  # type: ignore[attr-defined]
    sqlite_ledger.revoke_key(actor="omar", key_id=omar, reason="leaving")


def test_last_admin_cannot_be_revoked(sqlite_ledger: Ledger) -> None:
    kid = sqlite_ledger.active_key_of("admin").key_id
    exc = refused(sqlite_ledger, Rejected, sqlite_ledger.revoke_key, actor="admin", key_id=kid, reason="x")
    assert exc.rule == "last-admin"  # type: ignore[attr-defined]


def test_log_key_cannot_be_revoked(sqlite_ledger: Ledger) -> None:
    kid = sqlite_ledger.active_key_of("log").key_id
    exc = refused(sqlite_ledger, Rejected, sqlite_ledger.revoke_key, actor="admin", key_id=kid, reason="x")
    assert exc.rule == "log-key"  # type: ignore[attr-defined]


def test_log_key_rotation(ledger: Ledger) -> None:
    old = ledger.log_signer().public_key
    with_operator(ledger)
    ledger.rotate_log_key()
    new = ledger.log_signer().public_key
    assert new != old
    ledger.act("olga", "test.movement", account="ACC", delta=3)
    # An auditor anchored to the genesis key, or to the new key, accepts the history.
    verify_database(ledger.engine, trusted_log_key=old)
    verify_database(ledger.engine, trusted_log_key=new)
    # A stranger's key is not an anchor of this log.
    from ledger.errors import VerificationFailed

    with pytest.raises(VerificationFailed, match="trusted log key"):
        verify_database(ledger.engine, trusted_log_key=Ed25519Signer.generate().public_key)


def test_rotation_needs_both_keys(sqlite_ledger: Ledger) -> None:
    new = Ed25519Signer.generate()
    body = new_body("log.key_rotated", "log", new_key=new.public_key.hex())
    sub = sqlite_ledger.sign(body, [sqlite_ledger.log_signer()])  # without the new key's signature
    exc = refused(sqlite_ledger, Rejected, append, sqlite_ledger.engine, [sub], log_signer=sqlite_ledger.log_signer())
    assert exc.rule == "log-key"  # type: ignore[attr-defined]


def test_replayed_submission_is_refused(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    sub = sqlite_ledger.sign(new_body("test.movement", "olga", account="ACC", delta=4), [sqlite_ledger.signer_for("olga")])
    append(sqlite_ledger.engine, [sub], log_signer=sqlite_ledger.log_signer())
    exc = refused(sqlite_ledger, Rejected, append, sqlite_ledger.engine, [sub], log_signer=sqlite_ledger.log_signer())
    assert exc.rule == "replay"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("delta", "rule"), [(timedelta(hours=25), "stale-entry"), (timedelta(minutes=-10), "clock")])
def test_entries_signed_too_long_ago_or_in_the_future(sqlite_ledger: Ledger, delta: timedelta, rule: str) -> None:
    with_operator(sqlite_ledger)
    body = new_body("test.movement", "olga", account="ACC", delta=4)
    body["created_at"] = format_time(datetime.now(UTC) - delta)
    sub = sqlite_ledger.sign(body, [sqlite_ledger.signer_for("olga")])
    exc = refused(sqlite_ledger, Rejected, append, sqlite_ledger.engine, [sub], log_signer=sqlite_ledger.log_signer())
    assert exc.rule == rule  # type: ignore[attr-defined]


def test_negative_balance_is_refused_and_batch_is_atomic(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    olga = sqlite_ledger.signer_for("olga")
    subs = [
        sqlite_ledger.sign(new_body("test.movement", "olga", account="ACC", delta=d), [olga]) for d in (5, -3, -3)
    ]
    exc = refused(sqlite_ledger, Rejected, append, sqlite_ledger.engine, subs, log_signer=sqlite_ledger.log_signer())
    assert exc.rule == "negative-holding"  # type: ignore[attr-defined]
    assert exc.seq is None  # seq 4 was never written (issue #8, item 10)
    assert "batch entry 2: " in str(exc)


def test_second_genesis_is_refused(sqlite_ledger: Ledger) -> None:
    admin = sqlite_ledger.signer_for("admin")
    log = sqlite_ledger.log_signer()
    body = new_body("genesis", "admin", log_id="x", log_key=log.public_key.hex(), admin_key=admin.public_key.hex())
    exc = refused(sqlite_ledger, Rejected, append, sqlite_ledger.engine, [sign_body(body, [admin, log], log_id="x")], log_signer=log)
    assert exc.rule == "genesis"  # type: ignore[attr-defined]


def test_author_must_sign_first(sqlite_ledger: Ledger) -> None:
    with_operator(sqlite_ledger)
    body = new_body("test.movement", "omar", account="ACC", delta=4)  # author omar, signed by olga
    sub = sqlite_ledger.sign(body, [sqlite_ledger.signer_for("olga")])
    refused(sqlite_ledger, KeyNotAuthorised, append, sqlite_ledger.engine, [sub], log_signer=sqlite_ledger.log_signer(), match="author")
