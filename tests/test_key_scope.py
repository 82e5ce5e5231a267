"""Key registration checks its scope (issue #12): the sites and owners a registration
names exist, and an operator names at least one site. A rule of the reducer, so the
write path refuses it and the verifier catches it in a history edited behind its back;
registrations recorded before the rule (older logs) are not judged by it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from ledger.errors import Rejected, VerificationFailed
from ledger.rules import keys as key_rules
from ledger.service import Ledger
from ledger.store.audit import verify_database
from ledger.store.projections import read_keys
from tests.tamper_helpers import log_public_key, read_leaf, resign, tampering, write_leaf

JP, SITE = "JP-RESERVE", "SITE-7F3K"


def _reference(led: Ledger) -> None:
    led.act("admin", "owner.registered", code=JP, name="Japan reserve", country="JP")
    led.act("admin", "site.registered", code=SITE, classification="SECRET", custodian=JP, owners=[JP],
            location_commitment="ab" * 32)


def _size(led: Ledger) -> int:
    return verify_database(led.engine, trusted_log_key=log_public_key(led)).size


@pytest.mark.parametrize(
    ("roles", "sites", "owners", "words", "field"),
    [
        (["operator"], ["SITE-GHOST"], [], "site SITE-GHOST is not registered", "entry.sites"),
        (["operator"], [], [], "name at least one site", "entry.sites"),
        (["official"], [], ["XX-NOBODY"], "owner XX-NOBODY is not registered", "entry.owners"),
        (["operator"], [SITE, "SITE-GHOST"], [], "site SITE-GHOST is not registered", "entry.sites"),
    ],
)
def test_registration_naming_what_does_not_exist_is_refused(
    ledger: Ledger, roles: list[str], sites: list[str], owners: list[str], words: str, field: str
) -> None:
    _reference(ledger)
    before = _size(ledger)
    with pytest.raises(Rejected) as exc:
        ledger.register_key(admin="admin", user="olga", roles=roles, sites=sites, owners=owners, clearance="NONE")
    assert exc.value.rule == "key-scope" and words in exc.value.public_message and exc.value.field == field
    assert _size(ledger) == before  # nothing written
    with ledger.engine.connect() as conn:
        assert "olga" not in {k.user for k in read_keys(conn).values()}


def test_registration_within_existing_scope_is_accepted(ledger: Ledger) -> None:
    _reference(ledger)
    ledger.register_key(admin="admin", user="olga", roles=["operator"], sites=[SITE], owners=[], clearance="NONE")
    ledger.register_key(admin="admin", user="fiona", roles=["official"], sites=[], owners=[JP], clearance="NONE")
    # An auditor or a minister names no site; only operators need one.
    ledger.register_key(admin="admin", user="audrey", roles=["auditor"], sites=[], owners=[], clearance="NONE")
    assert _size(ledger) == 6


def test_verifier_catches_a_registration_edited_to_name_a_ghost_site(sqlite_ledger: Ledger) -> None:
    led = sqlite_ledger
    _reference(led)
    seq = led.register_key(
        admin="admin", user="olga", roles=["operator"], sites=[SITE], owners=[], clearance="NONE"
    ).first_seq
    with tampering(led.engine) as conn:
        leaf = read_leaf(conn, seq)
        leaf["entry"]["sites"] = ["SITE-GHOST"]
        write_leaf(conn, seq, resign(leaf, [led.keystore.load("admin")]))
    with pytest.raises(VerificationFailed) as exc:
        verify_database(led.engine, trusted_log_key=log_public_key(led))
    assert exc.value.seq == seq and exc.value.rule == "key-scope"


def test_registrations_recorded_before_the_rule_are_not_judged(
    sqlite_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older log registered operators before their sites: it still verifies, because
    the rule judges only registrations recorded from KEY_SCOPE_CHECKED_FROM on (the
    log's clock). Here the cut is moved to just after such a registration."""
    led = sqlite_ledger
    monkeypatch.setattr(key_rules, "KEY_SCOPE_CHECKED_FROM", datetime.now(UTC) + timedelta(days=1))
    old = led.register_key(admin="admin", user="olga", roles=["operator"], sites=["SITE-LATER"], owners=[],
                           clearance="NONE").first_seq
    time.sleep(0.01)
    monkeypatch.setattr(key_rules, "KEY_SCOPE_CHECKED_FROM", datetime.now(UTC))
    # From the cut on, the same registration is refused; the old one still verifies.
    with pytest.raises(Rejected, match="SITE-LATER is not registered"):
        led.register_key(admin="admin", user="omar", roles=["operator"], sites=["SITE-LATER"], owners=[],
                         clearance="NONE")
    assert _size(led) == old + 1
    # With the cut before it, the verifier judges the old registration too.
    monkeypatch.setattr(key_rules, "KEY_SCOPE_CHECKED_FROM", datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(VerificationFailed) as exc:
        verify_database(led.engine, trusted_log_key=log_public_key(led))
    assert exc.value.seq == old and exc.value.rule == "key-scope"
