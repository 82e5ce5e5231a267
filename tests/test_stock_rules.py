"""One test per stock rule: the refusal, its rule name, and that nothing was written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import Rejected
from ledger.service import Ledger, new_body
from ledger.store.audit import verify_database
from ledger.store.log import append, head
from ledger.timefmt import format_time, now
from tests.conftest import make_ledger
from tests.release_helpers import authorise, set_policy
from tests.test_units import BARE_GRAMS

LOT, LOT2, LOT3, GA = "LOT-A", "LOT-B", "LOT-C", "LOT-GA"


def _setup(led: Ledger) -> Ledger:
    led.act("admin", "owner.registered", code="JP", name="Japan reserve", country="JP")
    led.act("admin", "owner.registered", code="EU", name="EU joint stock", country="BE")
    for code, form in (("NDPR-OXIDE", "oxide"), ("GA-METAL", "metal")):
        led.act("admin", "material.registered", code=code, name=code, form=form, base_unit="g", grade_basis="TREO")
    for code, owners in (("SITE-A", ["JP"]), ("SITE-B", ["JP"]), ("SITE-E", ["EU"])):
        led.act("admin", "site.registered", code=code, classification="SECRET", custodian=owners[0], owners=owners,
                location_commitment="ab" * 32)
    led.register_key(admin="admin", user="olga", roles=["operator"], sites=["SITE-A", "SITE-B", "SITE-E"], owners=[], clearance="NONE")
    led.register_key(admin="admin", user="oscar", roles=["operator"], sites=["SITE-A"], owners=[], clearance="NONE")
    led.register_key(admin="admin", user="omar", roles=["operator"], sites=["SITE-E"], owners=[], clearance="NONE")
    led.register_key(admin="admin", user="fiona", roles=["official"], sites=[], owners=["JP"], clearance="NONE")
    led.register_key(admin="admin", user="felix", roles=["official"], sites=[], owners=["JP"], clearance="NONE")
    led.register_key(admin="admin", user="mina", roles=["minister"], sites=[], owners=["JP"], clearance="NONE")
    for code, material, purity in ((LOT, "NDPR-OXIDE", "99.5"), (LOT2, "NDPR-OXIDE", "99.7"), (LOT3, "NDPR-OXIDE", "99.0"), (GA, "GA-METAL", "99.99")):
        led.act("olga", "lot.registered", code=code, material=material, origin="AU", supplier="S", purity=purity,
                basis="TREO", certificate_sha256="cd" * 32, containers=[])
    receive(led, LOT, 1_000_000)
    return led


@pytest.fixture
def led(sqlite_url: str, tmp_path: Path) -> Ledger:
    return _setup(make_ledger(sqlite_url, tmp_path / "keys"))


def receive(led: Ledger, lot: str, qty: int, site: str = "SITE-A", owner: str = "JP", **kw: Any) -> Any:
    fields = dict(site=site, owner=owner, lot=lot, quantity=qty, occurred_at=now(), supplier="S", accepted_purity="99.5", reference="DN")
    fields.update(kw)
    return led.act(kw.pop("user", "olga"), "stock.receipt", **{k: v for k, v in fields.items() if k != "user"})


def refused(led: Ledger, rule: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Rejected:
    before = head(led.engine).size
    with pytest.raises(Rejected) as info:
        fn(*args, **kw)
    assert info.value.rule == rule, info.value
    assert head(led.engine).size == before, "a refused movement must write nothing"
    # Every quantity a refusal states is in the display unit, never bare grams (issue #12).
    assert not BARE_GRAMS.search(str(info.value)), info.value
    return info.value


def eid(led: Ledger, res: Any) -> str:
    return led.entry_ref(str(res.first_seq))


def an_order(led: Ledger, regime: str, recipient: str, qty: int = 10_000_000) -> str:
    """A ministerial order (issue #5) for JP NDPR-OXIDE at SITE-A and SITE-B: sales and
    loans execute one."""
    set_policy(led, "JP", "NDPR-OXIDE", minister="mina", regimes=[regime])
    return authorise(led, owner="JP", material="NDPR-OXIDE", quantity=qty, recipient=recipient, regime=regime,
                     sites=["SITE-A", "SITE-B"], requester="fiona", approvers=["felix"], minister="mina")


# -- scope and roles -------------------------------------------------------------------

def test_operator_outside_site_scope(led: Ledger) -> None:
    err = refused(led, "site-scope", receive, led, LOT, 5, site="SITE-B", user="oscar")
    assert err.field == "entry.site"


def test_out_of_scope_and_missing_site_read_the_same(led: Ledger) -> None:
    a = refused(led, "site-scope", receive, led, LOT, 5, site="SITE-B", user="oscar")
    b = refused(led, "site-scope", receive, led, LOT, 5, site="SITE-NOPE", user="oscar")
    assert str(a).replace("SITE-B", "X") == str(b).replace("SITE-NOPE", "X")


@pytest.mark.parametrize("user", ["admin", "fiona"])
def test_non_operators_cannot_record_movements(led: Ledger, user: str) -> None:
    refused(led, "role", led.act, user, "stock.sale", site="SITE-A", owner="JP", lot=LOT, quantity=1, occurred_at=now(), buyer="B", tender_ref="T", order="0" * 32)


def test_site_must_hold_for_owner(led: Ledger) -> None:
    refused(led, "site-owner", receive, led, LOT, 5, owner="EU")


def test_unknown_lot(led: Ledger) -> None:
    refused(led, "unknown-lot", receive, led, "LOT-NOPE", 5)


def test_movement_in_the_future(led: Ledger) -> None:
    refused(led, "clock", receive, led, LOT, 5, occurred_at=format_time(datetime.now(UTC) + timedelta(hours=1)))


def test_target_needs_official_in_owner_scope(led: Ledger) -> None:
    kw = dict(material="NDPR-OXIDE", days_of_cover=60, annual_quantity=10, basis="consumption", valid_from=now(),
              valid_to=format_time(datetime.now(UTC) + timedelta(days=30)))
    refused(led, "owner-scope", led.act, "fiona", "target.set", owner="EU", **kw)
    led.act("fiona", "target.set", owner="JP", **kw)


# -- holdings never go negative --------------------------------------------------------

@pytest.mark.parametrize("kind", ["stock.sale", "stock.dispatch", "stock.loan_out"])
def test_no_holding_goes_negative(led: Ledger, kind: str) -> None:
    order = {"stock.sale": lambda: an_order(led, "ordinary_sale", "B"),
             "stock.loan_out": lambda: an_order(led, "loan", "B")}.get(kind, lambda: None)()
    extra: dict[str, Any] = {"stock.sale": dict(buyer="B", tender_ref="T", order=order),
                             "stock.dispatch": dict(to_site="SITE-B", reference="R"),
                             "stock.loan_out": dict(borrower="B", due_at=format_time(datetime.now(UTC) + timedelta(days=9)), premium_pct="1", order=order)}[kind]
    err = refused(led, "negative-holding", led.act, "olga", kind, site="SITE-A", owner="JP", lot=LOT, quantity=1_000_001, occurred_at=now(), **extra)
    assert "holds only 1 t" in str(err)


# -- transfers -------------------------------------------------------------------------

def dispatch(led: Ledger, qty: int = 400, to: str = "SITE-B") -> str:
    return eid(led, led.act("olga", "stock.dispatch", site="SITE-A", owner="JP", lot=LOT, quantity=qty, occurred_at=now(), to_site=to, reference="T1"))


def arrive(led: Ledger, t: str, qty: int, site: str = "SITE-B", reason: str = "") -> Any:
    return led.act("olga", "stock.arrival", site=site, transfer=t, quantity=qty, occurred_at=now(), shortfall_reason=reason)


def test_transfer_to_same_site_or_site_not_holding_for_owner(led: Ledger) -> None:
    refused(led, "same-site", dispatch, led, 5, "SITE-A")
    refused(led, "site-owner", dispatch, led, 5, "SITE-E")


def test_dispatch_refusals_do_not_tell_whether_the_destination_exists(led: Ledger) -> None:
    """Issue #8 item 7: the destination is checked last, and a missing one reads exactly
    like one that does not hold for the owner, so no refusal lists real sites."""
    def attempt(to: str, **over: Any) -> Rejected:
        fields = dict(site="SITE-A", owner="JP", lot=LOT, quantity=5, occurred_at=now(), to_site=to, reference="T1")
        fields.update(over)
        with pytest.raises(Rejected) as info:
            led.act("olga", "stock.dispatch", **fields)
        return info.value

    def seen(err: Rejected, to: str) -> tuple[str, str, str | None]:
        return err.rule, str(err).replace(to, "<dest>"), err.field

    for over in ({"lot": "NO-SUCH-LOT"}, {"quantity": 10**12}):
        answers = {seen(attempt(to, **over), to) for to in ("SITE-B", "SITE-E", "SITE-Z")}
        assert len(answers) == 1, answers
    assert seen(attempt("SITE-E"), "SITE-E") == seen(attempt("SITE-Z"), "SITE-Z")


def test_arrival_rules(led: Ledger) -> None:
    t = dispatch(led)
    refused(led, "wrong-site", arrive, led, t, 400, site="SITE-A")
    over = refused(led, "over-arrival", arrive, led, t, 401)
    assert "0.000401 t arrived but only 0.0004 t were dispatched" in str(over)
    short = refused(led, "shortfall-reason", arrive, led, t, 390)
    assert "0.00001 t are missing" in str(short)
    arrive(led, t, 390, reason="spilled")
    refused(led, "unknown-transfer", arrive, led, t, 390, reason="again")  # resolves once
    verify_database(led.engine, trusted_log_key=None)


# -- release, loans, sales -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["stock.release", "stock.sale", "stock.loan_out"])
def test_nothing_leaves_without_an_order(led: Ledger, kind: str) -> None:
    extra: dict[str, Any] = {"stock.release": dict(recipient="R"),
                             "stock.sale": dict(buyer="R", tender_ref="T"),
                             "stock.loan_out": dict(borrower="R", due_at=format_time(datetime.now(UTC) + timedelta(days=9)), premium_pct="1")}[kind]
    err = refused(led, "unknown-order", led.act, "olga", kind, site="SITE-A", owner="JP", lot=LOT, quantity=1,
                  occurred_at=now(), order="0" * 32, **extra)
    assert "nothing leaves a reserve without one" in str(err)


def test_loan_rules(led: Ledger) -> None:
    due = format_time(datetime.now(UTC) + timedelta(days=30))
    order = an_order(led, "loan", "B")
    refused(led, "due-date", led.act, "olga", "stock.loan_out", site="SITE-A", owner="JP", lot=LOT, quantity=100,
            occurred_at=now(), borrower="B", due_at="2020-01-01T00:00:00Z", premium_pct="1", order=order)
    loan = eid(led, led.act("olga", "stock.loan_out", site="SITE-A", owner="JP", lot=LOT, quantity=100, occurred_at=now(), borrower="B", due_at=due, premium_pct="1.5", order=order))
    over = refused(led, "over-return", led.act, "olga", "stock.loan_return", site="SITE-A", loan=loan, quantity=101, occurred_at=now())
    assert "only 0.0001 t of this loan are outstanding" in str(over)
    led.act("olga", "stock.loan_return", site="SITE-B", loan=loan, quantity=60, occurred_at=now())
    led.act("olga", "stock.loan_return", site="SITE-A", loan=loan, quantity=40, occurred_at=now())
    refused(led, "unknown-loan", led.act, "olga", "stock.loan_return", site="SITE-A", loan=loan, quantity=1, occurred_at=now())
    verify_database(led.engine, trusted_log_key=None)


# -- rotation and conversion -----------------------------------------------------------

def rotate(led: Ledger, lot_in: str, qty: int = 100) -> Any:
    return led.act("olga", "stock.rotation", site="SITE-A", owner="JP", lot_out=LOT, lot_in=lot_in, quantity=qty, occurred_at=now(), counterparty="C")


def test_rotation_rules(led: Ledger) -> None:
    refused(led, "rotation", rotate, led, LOT)
    refused(led, "rotation", rotate, led, GA)  # another material
    err = refused(led, "rotation-grade", rotate, led, LOT3)  # 99.0 < 99.5
    assert "equal or better grade" in str(err)
    rotate(led, LOT2)
    verify_database(led.engine, trusted_log_key=None)


def test_conversion_rules(led: Ledger) -> None:
    kw = dict(site="SITE-A", owner="JP", quantity_in=500, quantity_out=450, occurred_at=now(), processor="P")
    refused(led, "conversion", led.act, "olga", "stock.conversion", lot_in=LOT, lot_out=LOT, **kw)
    refused(led, "negative-holding", led.act, "olga", "stock.conversion", lot_in=GA, lot_out=LOT2, **kw)
    led.act("olga", "stock.conversion", lot_in=LOT, lot_out=GA, **kw)
    verify_database(led.engine, trusted_log_key=None)


# -- counts ----------------------------------------------------------------------------

def count(led: Ledger, book: int, counted: int, *cosigners: str, at: str | None = None) -> Any:
    body = new_body("stock.count", "olga", site="SITE-A", owner="JP", lot=LOT, book=book, counted=counted, occurred_at=at or now())
    return led.submit(body, [led.signer_for("olga"), *(led.signer_for(u) for u in cosigners)])


def test_count_rules(led: Ledger) -> None:
    changed = refused(led, "book-changed", count, led, 999_999, 999_999)
    assert "the book quantity is 1 t, not 0.999999 t" in str(changed)
    count(led, 1_000_000, 996_000)  # 0.4 %: within tolerance, posts 4 kg to loss
    beyond = refused(led, "count-tolerance", count, led, 996_000, 980_000)  # 1.6 %: needs a second officer
    assert "differs from the book by -0.016 t" in str(beyond)
    refused(led, "second-officer", count, led, 996_000, 980_000, "omar")  # not an officer of this site or owner
    count(led, 996_000, 980_000, "fiona")  # an official of the owner co-signs
    count(led, 980_000, 990_000, "oscar")  # or another operator of the site; a gain
    verify_database(led.engine, trusted_log_key=None)


def test_movement_dated_before_last_count(led: Ledger) -> None:
    earlier = format_time(datetime.now(UTC) - timedelta(days=2))
    count(led, 1_000_000, 1_000_000)
    err = refused(led, "before-count", receive, led, LOT, 5, occurred_at=earlier)
    assert "before the last stock count" in str(err)


# -- reversals -------------------------------------------------------------------------

def reverse(led: Ledger, ref: str, site: str = "SITE-A") -> Any:
    return led.act("olga", "stock.reversal", site=site, reverses=ref, occurred_at=now(), reason="keyed twice")


def test_reversal_mirrors_once(led: Ledger) -> None:
    r = eid(led, receive(led, LOT, 250))
    refused(led, "wrong-site", reverse, led, r, "SITE-B")
    reverse(led, r)
    err = refused(led, "already-reversed", reverse, led, r)
    assert "already reversed" in str(err)
    verify_database(led.engine, trusted_log_key=None)


def test_reversal_cannot_make_a_holding_negative(led: Ledger) -> None:
    r = eid(led, receive(led, LOT2, 250))
    order = an_order(led, "ordinary_sale", "B")
    led.act("olga", "stock.sale", site="SITE-A", owner="JP", lot=LOT2, quantity=200, occurred_at=now(), buyer="B", tender_ref="T", order=order)
    refused(led, "negative-holding", reverse, led, r)


def test_arrivals_and_resolved_transfers_are_not_reversible(led: Ledger) -> None:
    t = dispatch(led)
    a = eid(led, arrive(led, t, 400))
    refused(led, "not-reversible", reverse, led, a, "SITE-B")
    refused(led, "not-reversible", reverse, led, t)
    t2 = dispatch(led)
    reverse(led, t2)  # cancelled while in transit
    refused(led, "unknown-transfer", arrive, led, t2, 400)


def test_reversal_window(led: Ledger) -> None:
    r = eid(led, receive(led, LOT, 250))
    later = datetime.now(UTC) + timedelta(days=31)
    body = new_body("stock.reversal", "olga", site="SITE-A", reverses=r, occurred_at=format_time(later), reason="late")
    body["created_at"] = format_time(later)
    sub = led.sign(body, [led.signer_for("olga")])
    refused(led, "reversal-window", append, led.engine, [sub], log_signer=led.log_signer(), clock=lambda: format_time(later))


def test_whole_history_verifies_and_conserves(led: Ledger) -> None:
    t = dispatch(led, 300)
    arrive(led, t, 299, reason="dust")
    rotate(led, LOT2, 50)
    count(led, 1_000_000 - 300 - 50, 1_000_000 - 350)
    report = verify_database(led.engine, trusted_log_key=led.log_signer().public_key)
    assert report.size == head(led.engine).size
    from ledger.store.projections import read_table

    with led.engine.connect() as conn:
        bal = read_table(conn, "balances")
    per_lot: dict[str, int] = {}
    for (_, lot), rec in bal.items():
        per_lot[lot] = per_lot.get(lot, 0) + rec.quantity
    assert set(per_lot.values()) == {0}


# -- assays (issue #12) ---------------------------------------------------------------------

def test_receipt_purity_is_checked_against_the_lots_assay(led: Ledger) -> None:
    # LOT is assayed at 99.5 % TREO; the default tolerance is 0.5 points
    receive(led, LOT, 10, accepted_purity="99.0")
    receive(led, LOT, 10, accepted_purity="100")
    err = refused(led, "assay", receive, led, LOT, 10, accepted_purity="98.9")
    assert err.field == "entry.accepted_purity"
    assert "differs from lot LOT-A's assay of 99.5% TREO by 0.6 points" in str(err)
    refused(led, "assay", receive, led, LOT, 10, accepted_purity="98.9", purity_deviation_reason="   ")
    receive(led, LOT, 10, accepted_purity="98.9", purity_deviation_reason="supplier's re-assay, sample 4411")


def test_the_policy_in_force_sets_the_assay_tolerance(led: Ledger) -> None:
    set_policy(led, "JP", "NDPR-OXIDE", minister="mina", regimes=["loan"], assay_tolerance_pct="0.1")
    refused(led, "assay", receive, led, LOT, 10, accepted_purity="99.3")
    receive(led, LOT, 10, accepted_purity="99.4")
