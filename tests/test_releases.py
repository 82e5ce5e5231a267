"""Ministerial release authorisation (issue #5): the happy paths end to end, one refusal
per rule (each showing that nothing was written), separation of duties, time, tamper."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from ledger.bundle import Bundle
from ledger.entries import make_leaf
from ledger.errors import NotFound, Rejected, VerificationFailed
from ledger.merkle import leaf_hash
from ledger.records import LOANS, holding, virtual
from ledger.service import Ledger, new_body
from ledger.store import releases
from ledger.store.audit import export_bundle, verify_database
from ledger.store.log import AppendResult, append, head
from ledger.store.projections import read_table
from ledger.store.schema import entries, log_state
from ledger.timefmt import format_time, now, parse_time
from ledger.verify import verify_history
from tests.conftest import make_ledger
from tests.release_helpers import crisis_price, entry_id, order, policy_body, request, set_policy
from tests.test_units import BARE_GRAMS

JP, EU = "JP", "EU"
NDPR, GA = "NDPR-OXIDE", "GA-METAL"
LOT, LOT_GA = "LOT-A", "LOT-GA"
SITE_A, SITE_B, SITE_E = "SITE-A", "SITE-B", "SITE-E"
RECIPIENT = "Tokyo Magnet Works"
REPORT_TO = "House of Representatives, Committee on Economy, Trade and Industry"

USERS = [
    # user, roles, sites, owners
    ("olga", ["operator"], [SITE_A], []),
    ("oscar", ["operator"], [SITE_B], []),
    ("fiona", ["official"], [], [JP]),  # requests
    ("felix", ["official"], [], [JP]),  # approves
    ("frank", ["official"], [], [JP]),  # approves
    ("elena", ["official"], [], [EU]),  # an official of another owner
    ("mina", ["minister"], [], [JP]),
    ("marc", ["minister"], [], [EU]),
    ("duo", ["official", "minister"], [], [JP]),  # one person, two roles
]


def _setup(led: Ledger) -> Ledger:
    led.act("admin", "owner.registered", code=JP, name="Japan reserve", country="JP")
    led.act("admin", "owner.registered", code=EU, name="EU joint stock", country="BE")
    for code, form in ((NDPR, "oxide"), (GA, "metal")):
        led.act("admin", "material.registered", code=code, name=code, form=form, base_unit="g", grade_basis="TREO")
    for code, owners in ((SITE_A, [JP, EU]), (SITE_B, [JP]), (SITE_E, [EU])):
        led.act("admin", "site.registered", code=code, classification="SECRET", custodian=owners[0], owners=owners,
                location_commitment="ab" * 32)
    for user, roles, sites, owners in USERS:
        led.register_key(admin="admin", user=user, roles=roles, sites=sites, owners=owners, clearance="NONE")
    for code, material in ((LOT, NDPR), (LOT_GA, GA)):
        led.act("olga", "lot.registered", code=code, material=material, origin="AU", supplier="S", purity="99.5",
                basis="TREO", certificate_sha256="cd" * 32, containers=[])
    for user, site, owner, lot, qty in (("olga", SITE_A, JP, LOT, 1_000_000), ("oscar", SITE_B, JP, LOT, 1_000_000),
                                        ("olga", SITE_A, JP, LOT_GA, 50_000), ("olga", SITE_A, EU, LOT, 50_000)):
        led.act(user, "stock.receipt", site=site, owner=owner, lot=lot, quantity=qty, occurred_at=now(), supplier="S",
                accepted_purity="99.5", reference="DN")
    set_policy(led, JP, NDPR, minister="mina", quorum=2, tolerance="2", threshold="150")
    crisis_price(led, "felix", NDPR)  # emergency requests point at it (issue #12)
    return led


@pytest.fixture
def led(sqlite_url: str, tmp_path: Path) -> Ledger:
    return _setup(make_ledger(sqlite_url, tmp_path / "keys"))


# -- helpers ---------------------------------------------------------------------------------

def snapshot(led: Ledger) -> tuple[Any, ...]:
    with led.engine.connect() as conn:
        return (
            head(led.engine).size,
            *(sorted(map(repr, read_table(conn, t).items())) for t in
              ("release_requests", "release_orders", "policies", "prices", "balances", "loans")),
        )


def refused(led: Ledger, rule: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Rejected:
    """The call is refused by ``rule``, and nothing at all was written."""
    before = snapshot(led)
    with pytest.raises(Rejected) as info:
        fn(*args, **kw)
    assert info.value.rule == rule, info.value
    assert snapshot(led) == before, "a refused entry must write nothing"
    assert not BARE_GRAMS.search(str(info.value)), info.value  # display units (issue #12)
    return info.value


def approved(led: Ledger, qty: int = 100_000, regime: str = "emergency_release",
             approvers: tuple[str, ...] = ("felix", "frank"), requester: str = "fiona", **kw: Any) -> str:
    req = request(led, requester, JP, NDPR, qty, RECIPIENT, regime, **kw)
    for a in approvers:
        led.act(a, "release.approved", request=req)
    return req


def ordered(led: Ledger, qty: int = 100_000, regime: str = "emergency_release", sites: tuple[str, ...] = (SITE_A,),
            **kw: Any) -> str:
    return order(led, "mina", approved(led, qty, regime), qty, regime, sites, **kw)


def release(led: Ledger, order_id: str, qty: int, *, user: str = "olga", site: str = SITE_A, owner: str = JP,
            lot: str = LOT, recipient: str = RECIPIENT, occurred_at: str | None = None) -> AppendResult:
    return led.act(user, "stock.release", site=site, owner=owner, lot=lot, quantity=qty,
                   occurred_at=occurred_at or now(), order=order_id, recipient=recipient)


def at_time(led: Ledger, t: datetime, user: str, kind: str, *cosigners: str, **fields: Any) -> AppendResult:
    """Append with the log's clock (and the author's) set to ``t``."""
    body = new_body(kind, user, **fields)
    body["created_at"] = format_time(t)
    signers = [led.signer_for(user), *(led.signer_for(c) for c in cosigners)]
    return append(led.engine, [led.sign(body, signers)], log_signer=led.log_signer(), clock=lambda: format_time(t))


# -- the happy paths, on both engines --------------------------------------------------------

def test_emergency_release_and_loan_end_to_end(ledger: Ledger, tmp_path: Path) -> None:
    led = _setup(ledger)
    req = request(led, "fiona", JP, NDPR, 500_000, RECIPIENT, "emergency_release", purpose="magnet lines idle")
    with led.engine.connect() as conn:
        (r,) = releases.open_requests(conn, owners=[JP], at=now())
        assert (r.id, r.quantity, r.status, r.quorum, r.approvals) == (req, 500_000, "open", 2, ())
        assert r.needs[0].startswith("2 more approval(s) by officials of JP")
        assert releases.open_requests(conn, owners=[EU], at=now()) == []
    led.act("felix", "release.approved", request=req, cap=400_000, comment="not more than 400 kg")
    with led.engine.connect() as conn:
        (r,) = releases.open_requests(conn, owners=None, at=now())
        assert [(a.user, a.cap, a.counts) for a in r.approvals] == [("felix", 400_000, True)]
        assert r.needs[0].startswith("1 more approval(s)")
    led.act("frank", "release.approved", request=req)
    with led.engine.connect() as conn:
        (r,) = releases.open_requests(conn, owners=None, at=now())
        assert len(r.needs) == 1 and r.needs[0].startswith("an order by a minister of JP other than felix, fiona, frank")
    emergency = order(led, "mina", req, 400_000, "emergency_release", [SITE_A, SITE_B], report_to=REPORT_TO)
    release(led, emergency, 250_000)
    release(led, emergency, 150_000, user="oscar", site=SITE_B)

    # A loan that comes back.
    loan_req = request(led, "fiona", JP, NDPR, 100_000, "Proterial Ltd", "loan")
    for a in ("felix", "frank"):
        led.act(a, "release.approved", request=loan_req)
    loan_order = order(led, "mina", loan_req, 100_000, "loan", [SITE_A])
    due = format_time(datetime.now(UTC) + timedelta(days=30))
    loan = entry_id(led, led.act("olga", "stock.loan_out", site=SITE_A, owner=JP, lot=LOT, quantity=100_000,
                                 occurred_at=now(), borrower="Proterial Ltd", due_at=due, premium_pct="2", order=loan_order))
    with led.engine.connect() as conn:
        rep = releases.order_report(conn, loan_order, owners=[JP], at=now())
        assert rep.on_loan == 100_000 and rep.overdue == ()
        later = format_time(datetime.now(UTC) + timedelta(days=31))
        assert [e.entry_id for e in releases.order_report(conn, loan_order, owners=[JP], at=later).overdue] == [loan]
    led.act("olga", "stock.loan_return", site=SITE_A, loan=loan, quantity=100_000, occurred_at=now())

    with led.engine.connect() as conn:
        assert releases.open_requests(conn, owners=None, at=now()) == []
        views = {o.id: o for o in releases.list_orders(conn, owners=[JP], at=now())}
        assert (views[emergency].cap, views[emergency].remaining, views[emergency].status) == (400_000, 0, "exhausted")
        assert (views[loan_order].remaining, views[loan_order].status) == (0, "exhausted")
        assert releases.list_orders(conn, owners=[JP], at=now(), active_only=True) == []
        with pytest.raises(NotFound):
            releases.get_order(conn, emergency, owners=[EU], at=now())
        rep = releases.order_report(conn, emergency, owners=[JP], at=now())
        assert rep.report_to == REPORT_TO and rep.requester == "fiona" and rep.order.minister == "mina"
        assert [(e.site, e.quantity) for e in rep.executions] == [(SITE_A, 250_000), (SITE_B, 150_000)]
        assert [a.user for a in rep.approvals] == ["felix", "frank"] and rep.quorum == 2
        assert rep.declaration == "ee" * 32 and rep.evidence_type == "price_observation"
        assert "IDX-NDPR 100000 USD" in rep.evidence_detail
        text = json.dumps(asdict(rep))
        assert "H/" not in text and "ab" * 32 not in text  # site codes only
        loan_rep = releases.order_report(conn, loan_order, owners=None, at=now())
        assert loan_rep.on_loan == 0 and loan_rep.executions[0].loan_outstanding == 0
        bal = read_table(conn, "balances")
    assert bal[(holding(JP, SITE_A), LOT)].quantity == 1_000_000 - 250_000
    assert bal[(holding(JP, SITE_B), LOT)].quantity == 1_000_000 - 150_000
    assert bal[(virtual("recipient", RECIPIENT), LOT)].quantity == 400_000
    assert bal[(LOANS, LOT)].quantity == 0

    report = verify_database(led.engine, trusted_log_key=led.log_signer().public_key)
    assert report.size == head(led.engine).size
    out = tmp_path / "bundle"
    export_bundle(led.engine, out)
    b = Bundle(out)
    b.check_files()
    verify_history(b.rows(), b.checkpoints(), trusted_log_key=led.log_signer().public_key,
                   projections=b.projections())


def test_price_spike_sale_with_observation(led: Ledger) -> None:
    refused(led, "price-evidence", request, led, "fiona", JP, NDPR, 10_000, "Buyer", "price_spike_sale",
            evidence={"type": "price_observation", "observation": "0" * 32})  # nothing observed yet
    low = entry_id(led, led.act("felix", "price.observed", index="IDX-NDPR", material=NDPR, value="120.5",
                                currency="USD", observed_at=now(), source="Fastmarkets"))
    err = refused(led, "price-evidence", request, led, "fiona", JP, NDPR, 10_000, "Buyer", "price_spike_sale",
                  evidence={"type": "price_observation", "observation": low})
    assert "below the crisis threshold of 150" in str(err)
    high = entry_id(led, led.act("felix", "price.observed", index="IDX-NDPR", material=NDPR, value="151",
                                 currency="USD", observed_at=now(), source="Fastmarkets"))
    err = refused(led, "price-evidence", request, led, "fiona", JP, NDPR, 10_000, "Buyer", "price_spike_sale",
                  evidence={"type": "price_observation", "observation": low})
    assert "not the latest" in str(err)
    req = request(led, "fiona", JP, NDPR, 10_000, "Buyer", "price_spike_sale",
                  evidence={"type": "price_observation", "observation": high})
    for a in ("felix", "frank"):
        led.act(a, "release.approved", request=req)
    o = order(led, "mina", req, 10_000, "price_spike_sale", [SITE_A])
    led.act("olga", "stock.sale", site=SITE_A, owner=JP, lot=LOT, quantity=10_000, occurred_at=now(), buyer="Buyer",
            tender_ref="T-1", order=o)
    with led.engine.connect() as conn:
        rep = releases.order_report(conn, o, owners=None, at=now())
        assert "IDX-NDPR 151 USD" in rep.evidence_detail and rep.order.remaining == 0
        (p,) = releases.latest_prices(conn, material=NDPR)
        assert p.value == "151"
    verify_database(led.engine, trusted_log_key=None)


def test_count_tolerance_comes_from_the_policy_in_force(led: Ledger) -> None:
    def count(owner: str, book: int, counted: int) -> Any:
        return led.act("olga", "stock.count", site=SITE_A, owner=owner, lot=LOT, book=book, counted=counted,
                       occurred_at=now())
    count(JP, 1_000_000, 985_000)  # 1.5 %: within the JP policy's 2 %
    refused(led, "count-tolerance", count, JP, 985_000, 960_000)  # 2.5 %
    refused(led, "count-tolerance", count, EU, 50_000, 49_500)  # 1 %: EU has no policy, 0.5 %


# -- policies -------------------------------------------------------------------------------

def submit_policy(led: Ledger, signers: list[str], *, owner: str = JP, author: str = "admin",
                  effective_in: timedelta = timedelta(hours=1), **kw: Any) -> AppendResult:
    effective = format_time(datetime.now(UTC) + effective_in)
    body = policy_body(author, owner, NDPR, effective_at=effective, **kw)
    return led.submit(body, [led.signer_for(s) for s in signers])


def test_policy_rules(led: Ledger) -> None:
    refused(led, "role", submit_policy, led, ["fiona", "mina"], author="fiona")
    refused(led, "policy-cosign", submit_policy, led, ["admin"])
    refused(led, "policy-cosign", submit_policy, led, ["admin", "marc"])  # a minister of another owner
    refused(led, "policy-cosign", submit_policy, led, ["admin", "felix"])  # not a minister
    refused(led, "policy-regimes", submit_policy, led, ["admin", "mina"], regimes=["loan", "loan"])
    err = refused(led, "policy-effective", submit_policy, led, ["admin", "mina"], effective_in=timedelta(seconds=-1))
    assert "only at a future time" in str(err)
    refused(led, "unknown-owner", submit_policy, led, ["admin", "mina"], owner="NOBODY")
    submit_policy(led, ["admin", "mina"])


def test_price_rules(led: Ledger) -> None:
    kw = dict(index="IDX-NDPR", material=NDPR, value="99", currency="USD", source="S")
    refused(led, "role", led.act, "olga", "price.observed", observed_at=now(), **kw)
    refused(led, "clock", led.act, "felix", "price.observed",
            observed_at=format_time(datetime.now(UTC) + timedelta(hours=1)), **kw)
    refused(led, "unknown-material", led.act, "felix", "price.observed", observed_at=now(), **{**kw, "material": "NOPE"})


def test_a_policy_change_is_not_used_before_it_takes_effect(led: Ledger) -> None:
    start = datetime.now(UTC)
    effective = start + timedelta(hours=1)
    # Quorum 2 now; a policy lowering it to 1 and opening GA loans, from an hour on.
    led.submit(policy_body("admin", JP, NDPR, effective_at=format_time(effective), quorum=1),
               [led.signer_for("admin"), led.signer_for("mina")])
    led.submit(policy_body("admin", JP, GA, effective_at=format_time(effective), regimes=["loan"]),
               [led.signer_for("admin"), led.signer_for("mina")])
    req = approved(led, approvers=("felix",))
    err = refused(led, "quorum", order, led, "mina", req, 100_000, "emergency_release", [SITE_A])
    assert "needs 2 approval(s)" in str(err)
    err = refused(led, "no-policy", request, led, "fiona", JP, GA, 1_000, "B", "loan")
    assert "opens it from" in str(err)
    with led.engine.connect() as conn:
        views = releases.list_policies(conn, owners=[JP], at=now())
        assert [(p.material, p.quorum, p.in_force) for p in views] == [(GA, 1, False), (NDPR, 2, True), (NDPR, 1, False)]
    # One second after it takes effect, the same order goes through.
    t = effective + timedelta(seconds=1)
    at_time(led, t, "mina", "release.ordered", request=req, cap=100_000, valid_from=format_time(t),
            valid_until=format_time(t + timedelta(days=1)), sites=[SITE_A], regime="emergency_release", report_to="C")
    at_time(led, t, "fiona", "release.requested", owner=JP, material=GA, quantity=1_000, recipient="B", regime="loan",
            purpose="p")
    verify_database(led.engine, trusted_log_key=None)


# -- requests ---------------------------------------------------------------------------------

def test_request_rules(led: Ledger) -> None:
    refused(led, "owner-scope", request, led, "elena", JP, NDPR, 1, RECIPIENT, "emergency_release")
    refused(led, "role", request, led, "olga", JP, NDPR, 1, RECIPIENT, "emergency_release")
    refused(led, "role", request, led, "mina", JP, NDPR, 1, RECIPIENT, "emergency_release")
    refused(led, "unknown-material", request, led, "fiona", JP, "NOPE", 1, RECIPIENT, "loan")
    err = refused(led, "no-policy", request, led, "fiona", JP, GA, 1, RECIPIENT, "loan")
    assert "no release regime is open" in str(err)
    set_policy(led, JP, GA, minister="mina", regimes=["ordinary_sale"])
    err = refused(led, "regime-closed", request, led, "fiona", JP, GA, 1, RECIPIENT, "loan")
    assert "a loan is not open for JP GA-METAL" in str(err)
    err = refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "price_spike_sale")
    assert "must carry the price observation" in str(err)
    refused(led, "price-evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence={"type": "price_observation", "observation": "0" * 32})
    refused(led, "evidence", request, led, "fiona", JP, GA, 1, RECIPIENT, "ordinary_sale",
            evidence={"type": "override", "reason": "because"})
    refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence={"type": "override", "reason": "   "})


def test_seed_rule_emergency_release_needs_declaration_and_crisis_price(led: Ledger) -> None:
    """Issue #12: reserves go to a company only once its own inventory is exhausted and the
    price has reached the crisis threshold (or the minister confirms an override)."""
    price = {"type": "price_observation", "observation": crisis_price(led, "felix", NDPR)}
    err = refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
                  evidence=price, declaration=False)
    assert "declaration that its own inventory is exhausted" in str(err)
    err = refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
                  evidence=[])
    assert "must carry the price observation" in str(err)
    refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence=[price, {"type": "override", "reason": "both"}])
    refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence=[price, price])
    # a price below the threshold is no crisis
    low = entry_id(led, led.act("felix", "price.observed", index="IDX-NDPR", material=NDPR, value="149.99",
                                currency="USD", observed_at=now(), source="LME"))
    refused(led, "price-evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence={"type": "price_observation", "observation": low})
    high = entry_id(led, led.act("felix", "price.observed", index="IDX-NDPR", material=NDPR, value="150",
                                 currency="USD", observed_at=now(), source="LME"))
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release",
                  evidence={"type": "price_observation", "observation": high})
    with led.engine.connect() as conn:
        (r,) = [r for r in releases.open_requests(conn, owners=[JP], at=now()) if r.id == req]
    assert (r.declaration, r.evidence_type, r.evidence) == ("ee" * 32, "price_observation", high)
    # an override stands in for the price, never for the declaration
    refused(led, "evidence", request, led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence={"type": "override", "reason": "hospital magnets"}, declaration=False)
    request(led, "fiona", JP, NDPR, 1, RECIPIENT, "emergency_release",
            evidence={"type": "override", "reason": "hospital magnets"})


def test_seed_rule_every_sale_carries_the_declaration(led: Ledger) -> None:
    set_policy(led, JP, GA, minister="mina", regimes=["ordinary_sale", "loan"])
    err = refused(led, "evidence", request, led, "fiona", JP, GA, 1, RECIPIENT, "ordinary_sale", declaration=False)
    assert "declaration" in str(err)
    request(led, "fiona", JP, GA, 1, RECIPIENT, "ordinary_sale")
    refused(led, "evidence", request, led, "fiona", JP, GA, 1, RECIPIENT, "loan",
            evidence={"type": "exhaustion_declaration", "document_sha256": "ee" * 32})
    request(led, "fiona", JP, GA, 1, RECIPIENT, "loan")


def test_emergency_override_needs_the_ministers_confirmation(led: Ledger) -> None:
    req = approved(led, evidence={"type": "override", "reason": "hospital MRI magnets, declaration to follow"})
    err = refused(led, "override-confirmation", order, led, "mina", req, 100_000, "emergency_release", [SITE_A])
    assert "must confirm it explicitly" in str(err)
    o = order(led, "mina", req, 100_000, "emergency_release", [SITE_A], confirm_override=True)
    plain = approved(led)
    refused(led, "override-confirmation", order, led, "mina", plain, 100_000, "emergency_release", [SITE_A],
            confirm_override=True)
    with led.engine.connect() as conn:
        assert releases.order_report(conn, o, owners=None, at=now()).evidence_type == "override"


# -- approvals: separation of duties -----------------------------------------------------------

def test_self_approval_is_refused(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    err = refused(led, "self-approval", led.act, "fiona", "release.approved", request=req)
    assert "nobody approves their own request" in str(err)


def test_two_approvals_with_the_same_key_are_refused(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    led.act("felix", "release.approved", request=req)
    refused(led, "approval-same-key", led.act, "felix", "release.approved", request=req)


def test_the_same_person_approves_once_whatever_the_key(led: Ledger) -> None:
    second = led.keystore.generate("felix-2")
    led.register_key(admin="admin", user="felix", roles=["official"], sites=[], owners=[JP], clearance="NONE",
                     public_key=second.public_key)
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    led.act("felix", "release.approved", request=req)
    body = new_body("release.approved", "felix", request=req)
    err = refused(led, "approval-same-person", led.submit, body, [second])
    assert "distinct officials" in str(err)


def test_approval_outside_the_owner_scope_is_refused(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    refused(led, "owner-scope", led.act, "elena", "release.approved", request=req)
    refused(led, "role", led.act, "olga", "release.approved", request=req)
    refused(led, "role", led.act, "mina", "release.approved", request=req)


def test_approval_rules(led: Ledger) -> None:
    refused(led, "unknown-request", led.act, "felix", "release.approved", request="0" * 32)
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    err = refused(led, "approval-cap", led.act, "felix", "release.approved", request=req, cap=1_001)
    assert "0.001001 t is more than the 0.001 t requested" in str(err)


def test_a_request_lapses_after_30_days(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    late = datetime.now(UTC) + timedelta(days=30, seconds=5)
    err = refused(led, "request-lapsed", at_time, led, late, "felix", "release.approved", request=req)
    assert "lapsed" in str(err)


# -- orders ------------------------------------------------------------------------------------

def test_an_order_before_quorum_is_refused(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    refused(led, "quorum", order, led, "mina", req, 1_000, "emergency_release", [SITE_A])
    led.act("felix", "release.approved", request=req)
    err = refused(led, "quorum", order, led, "mina", req, 1_000, "emergency_release", [SITE_A])
    assert "needs 2 approval(s) by distinct officials of JP; this request has 1" in str(err)


def test_the_same_person_cannot_request_and_order(led: Ledger) -> None:
    req = approved(led, requester="duo")
    err = refused(led, "separation-of-duties", order, led, "duo", req, 100_000, "emergency_release", [SITE_A])
    assert "made this request" in str(err)


def test_the_same_person_cannot_approve_and_order(led: Ledger) -> None:
    req = approved(led, approvers=("felix", "duo"))
    err = refused(led, "separation-of-duties", order, led, "duo", req, 100_000, "emergency_release", [SITE_A])
    assert "approved this request" in str(err)


def test_a_key_revoked_between_approval_and_order_no_longer_counts(led: Ledger) -> None:
    req = approved(led)
    frank = led.active_key_of("frank")
    led.revoke_key(actor="admin", key_id=frank.key_id, reason="laptop stolen")
    err = refused(led, "quorum", order, led, "mina", req, 100_000, "emergency_release", [SITE_A])
    assert "frank's approval" in str(err) and "revoked" in str(err)
    with led.engine.connect() as conn:
        r = releases.get_request(conn, req, owners=None, at=now())
        assert [a.counts for a in r.approvals] == [True, False]
        assert r.needs[0].startswith("1 more approval(s)")


def test_a_revoked_key_cannot_approve(led: Ledger) -> None:
    from ledger.errors import KeyNotAuthorised

    req = request(led, "fiona", JP, NDPR, 1_000, RECIPIENT, "emergency_release")
    led.revoke_key(actor="admin", key_id=led.active_key_of("felix").key_id, reason="left")
    before = snapshot(led)
    with pytest.raises(KeyNotAuthorised):
        led.act("felix", "release.approved", request=req)
    assert snapshot(led) == before


def test_order_scope_and_role(led: Ledger) -> None:
    req = approved(led)
    refused(led, "owner-scope", order, led, "marc", req, 100_000, "emergency_release", [SITE_A])
    refused(led, "role", order, led, "felix", req, 100_000, "emergency_release", [SITE_A])
    refused(led, "unknown-request", order, led, "mina", "0" * 32, 100_000, "emergency_release", [SITE_A])


def test_order_cap_rules(led: Ledger) -> None:
    req = request(led, "fiona", JP, NDPR, 100_000, RECIPIENT, "emergency_release")
    led.act("felix", "release.approved", request=req, cap=60_000)
    led.act("frank", "release.approved", request=req)
    err = refused(led, "order-cap", order, led, "mina", req, 100_001, "emergency_release", [SITE_A])
    assert "more than the 0.1 t requested" in str(err)
    err = refused(led, "order-cap", order, led, "mina", req, 60_001, "emergency_release", [SITE_A])
    assert "the cap of 0.060001 t is above the 0.06 t condition of felix's approval" in str(err)
    order(led, "mina", req, 60_000, "emergency_release", [SITE_A])
    refused(led, "unknown-request", order, led, "mina", req, 1, "emergency_release", [SITE_A])  # ordered once


def test_order_window_sites_and_regime_rules(led: Ledger) -> None:
    req = approved(led)
    past = format_time(datetime.now(UTC) - timedelta(hours=1))
    err = refused(led, "order-window", order, led, "mina", req, 1, "emergency_release", [SITE_A], valid_from=past)
    assert "cannot authorise the past" in str(err)
    refused(led, "order-window", order, led, "mina", req, 1, "emergency_release", [SITE_A],
            valid_for=timedelta(seconds=-1))
    refused(led, "order-sites", order, led, "mina", req, 1, "emergency_release", [SITE_A, SITE_A])
    # Out of scope (a site not holding for the owner) reads exactly like nonexistent.
    missing = refused(led, "site-owner", order, led, "mina", req, 1, "emergency_release", ["SITE-Z"])
    foreign = refused(led, "site-owner", order, led, "mina", req, 1, "emergency_release", [SITE_E])
    assert (str(missing).replace("SITE-Z", SITE_E), missing.field) == (str(foreign), foreign.field)
    refused(led, "order-regime", order, led, "mina", req, 1, "loan", [SITE_A])


def test_revocation_rules(led: Ledger) -> None:
    o = ordered(led)
    refused(led, "unknown-order", led.act, "mina", "release.order_revoked", order="0" * 32, reason="r")
    refused(led, "owner-scope", led.act, "marc", "release.order_revoked", order=o, reason="r")
    refused(led, "role", led.act, "felix", "release.order_revoked", order=o, reason="r")
    led.act("mina", "release.order_revoked", order=o, reason="crisis over")
    refused(led, "already-revoked", led.act, "mina", "release.order_revoked", order=o, reason="again")


# -- executions -------------------------------------------------------------------------------

def test_execution_over_the_cap_is_refused(led: Ledger) -> None:
    o = ordered(led, 100_000)
    release(led, o, 70_000)
    err = refused(led, "order-cap", release, led, o, 30_001)
    assert "0.03 t of 0.1 t remain" in str(err)
    release(led, o, 30_000)
    refused(led, "order-cap", release, led, o, 1)


def test_execution_by_an_operator_of_a_non_eligible_site_is_refused(led: Ledger) -> None:
    o = ordered(led, sites=(SITE_A,))
    err = refused(led, "order-site", release, led, o, 1_000, user="oscar", site=SITE_B)
    assert "not one of the order's eligible sites" in str(err)
    refused(led, "site-scope", release, led, o, 1_000, user="oscar", site=SITE_A)  # and not his site either


def test_execution_of_another_owner_material_regime_or_recipient_is_refused(led: Ledger) -> None:
    o = ordered(led)
    refused(led, "order-owner", release, led, o, 1_000, owner=EU)
    refused(led, "order-material", release, led, o, 1_000, lot=LOT_GA)
    refused(led, "order-recipient", release, led, o, 1_000, recipient="Someone Else KK")
    refused(led, "order-regime", led.act, "olga", "stock.sale", site=SITE_A, owner=JP, lot=LOT, quantity=1,
            occurred_at=now(), buyer=RECIPIENT, tender_ref="T", order=o)
    refused(led, "unknown-order", release, led, "0" * 32, 1_000)


def test_execution_after_revocation_is_refused(led: Ledger) -> None:
    o = ordered(led)
    release(led, o, 1_000)
    led.act("mina", "release.order_revoked", order=o, reason="recipient re-supplied")
    err = refused(led, "order-revoked", release, led, o, 1_000)
    assert "revoked" in str(err) and "recipient re-supplied" in str(err)


def test_execution_one_second_after_the_window_is_refused(led: Ledger) -> None:
    o = ordered(led, valid_for=timedelta(seconds=5))
    with led.engine.connect() as conn:
        until = parse_time(releases.get_order(conn, o, owners=None, at=now()).valid_until)
    fields = dict(site=SITE_A, owner=JP, lot=LOT, order=o, recipient=RECIPIENT)
    at_time(led, until, "olga", "stock.release", quantity=1_000, occurred_at=format_time(until), **fields)  # the last instant
    late = until + timedelta(seconds=1)
    err = refused(led, "order-window", at_time, led, late, "olga", "stock.release", quantity=1_000,
                  occurred_at=format_time(late), **fields)
    assert "expired" in str(err)
    # Nor may it be dated back into the window once the order has expired.
    refused(led, "order-window", at_time, led, late, "olga", "stock.release", quantity=1_000,
            occurred_at=format_time(until), **fields)


def test_execution_before_the_window_is_refused(led: Ledger) -> None:
    start = format_time(datetime.now(UTC) + timedelta(hours=2))
    o = order(led, "mina", approved(led), 100_000, "emergency_release", [SITE_A], valid_from=start)
    err = refused(led, "order-window", release, led, o, 1_000)
    assert "valid only from" in str(err)


def test_sales_and_loans_need_an_order_of_their_regime(led: Ledger) -> None:
    sale = ordered(led, regime="ordinary_sale")
    loan = ordered(led, regime="loan")
    due = format_time(datetime.now(UTC) + timedelta(days=9))
    refused(led, "order-regime", led.act, "olga", "stock.loan_out", site=SITE_A, owner=JP, lot=LOT, quantity=1,
            occurred_at=now(), borrower=RECIPIENT, due_at=due, premium_pct="1", order=sale)
    refused(led, "order-regime", release, led, loan, 1)
    led.act("olga", "stock.sale", site=SITE_A, owner=JP, lot=LOT, quantity=1, occurred_at=now(), buyer=RECIPIENT,
            tender_ref="T", order=sale)


def test_executions_are_not_reversible(led: Ledger) -> None:
    o = ordered(led)
    r = entry_id(led, release(led, o, 1_000))
    refused(led, "not-reversible", led.act, "olga", "stock.reversal", site=SITE_A, reverses=r, occurred_at=now(),
            reason="keyed twice")


# -- tamper: an over-cap execution inserted behind the application's back ------------------------

@pytest.fixture
def tamper_ledger(db_url: str, tmp_path: Path) -> Iterator[Ledger]:
    yield _setup(make_ledger(db_url, tmp_path / "keys"))


def test_an_over_cap_execution_inserted_into_the_database_fails_verify(tamper_ledger: Ledger) -> None:
    led = tamper_ledger
    o = ordered(led, 100_000)
    release(led, o, 60_000)
    verify_database(led.engine, trusted_log_key=led.log_signer().public_key)
    # The forger holds the operator's key, and writes straight into the database.
    body = new_body("stock.release", "olga", site=SITE_A, owner=JP, lot=LOT, quantity=50_000, occurred_at=now(),
                    order=o, recipient=RECIPIENT)
    signed = led.sign(body, [led.signer_for("olga")])
    h = head(led.engine)
    seq, recorded = int(h.size), now()
    leaf = make_leaf(seq=seq, prev_hash=h.head_hash, recorded_at=recorded, body=body, sigs=signed["sigs"])
    lh = leaf_hash(leaf)
    with led.engine.begin() as conn:
        conn.execute(insert(entries).values(seq=seq, entry_id=body["id"], kind="stock.release", author="olga",
                                            recorded_at=recorded, leaf_hash=lh, leaf=leaf))
        conn.execute(update(log_state).values(size=seq + 1, head_hash=lh.hex(), last_recorded_at=recorded))
        assert conn.execute(select(entries.c.seq).where(entries.c.seq == seq)).scalar_one() == seq
    with pytest.raises(VerificationFailed) as info:
        verify_database(led.engine, trusted_log_key=led.log_signer().public_key)
    assert info.value.seq == seq
    assert "cap" in str(info.value) and "0.04 t of 0.1 t remain" in str(info.value), info.value
