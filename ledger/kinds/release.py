"""Entry kinds of ministerial release authorisation (issue #5).

The chain of authority, in log order:

1. ``policy.set``: per owner and material, the approval quorum, the crisis threshold, the
   count tolerance and the open release regimes, from a stated future time. Signed by a
   security admin (``sigs[0]``, the author) and co-signed by a minister of that owner.
2. ``price.observed``: a price of a material on a named index, recorded by an official
   (the evidence a price-spike sale points to).
3. ``release.requested``: an official of the owner asks for a quantity of one material to
   go to a named recipient under one regime, with the evidence that regime needs.
4. ``release.approved``: other officials of the owner approve, each once, optionally with
   a lower cap as their condition.
5. ``release.ordered``: a minister of the owner, once the quorum is met, orders it: a cap,
   a validity window, the eligible sites (by code), the body to report to.
6. ``release.order_revoked``: a minister of the owner withdraws an order.

The movements that execute an order (``stock.release``, ``stock.sale``,
``stock.loan_out``) are stock kinds (``ledger.kinds.stock``) carrying ``order``.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from ledger.kinds.base import FREE_TEXT, Body, Code, EntryId, Hex64, Text, Time
from ledger.kinds.stock import Name, Percent, Qty

Regime = Literal["emergency_release", "price_spike_sale", "ordinary_sale", "loan"]
REGIMES: Final[tuple[str, ...]] = (
    "emergency_release",
    "price_spike_sale",
    "ordinary_sale",
    "loan",
)
# An exact, non-negative decimal amount ("1234.5"), never a float.
Amount = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$")]
Currency = Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]  # ISO 4217
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, extra=FREE_TEXT)]
Quorum = Annotated[int, msgspec.Meta(ge=1, le=12)]


class PolicySet(Body, tag="policy.set", frozen=True):
    """The release policy of one owner and material from ``effective_at`` on (which must
    be later than the time the log records this entry). The policy in force at a time T
    is the one with the latest ``effective_at`` not after T; without one, no release
    regime is open for that owner and material."""

    owner: Code
    material: Code
    quorum: Quorum
    crisis_index: Code
    crisis_currency: Currency
    crisis_threshold: Amount
    count_tolerance_pct: Percent
    regimes: Annotated[list[Regime], msgspec.Meta(max_length=4)]
    effective_at: Time


class PriceObserved(Body, tag="price.observed", frozen=True):
    """A price of ``material`` on ``index`` (per the index's own unit), in ``currency``,
    observed at ``observed_at`` from ``source``."""

    index: Code
    material: Code
    value: Amount
    currency: Currency
    observed_at: Time
    source: Name


# -- evidence a request carries ---------------------------------------------------------


class ExhaustionDeclaration(
    msgspec.Struct,
    tag="exhaustion_declaration",
    tag_field="type",
    forbid_unknown_fields=True,
    frozen=True,
):
    """Emergency release: SHA-256 of the recipient's signed declaration that its own
    inventory is exhausted (the document itself stays with the ministry)."""

    document_sha256: Hex64


class PriceCrossing(
    msgspec.Struct,
    tag="price_observation",
    tag_field="type",
    forbid_unknown_fields=True,
    frozen=True,
):
    """Price-spike sale: the ``price.observed`` entry whose value reached the crisis
    threshold of the policy in force."""

    observation: EntryId


class EmergencyOverride(
    msgspec.Struct, tag="override", tag_field="type", forbid_unknown_fields=True, frozen=True
):
    """In place of the regime's evidence, a stated reason; the minister's order must then
    confirm the override explicitly."""

    reason: Reason


Evidence = ExhaustionDeclaration | PriceCrossing | EmergencyOverride


class ReleaseRequested(Body, tag="release.requested", frozen=True):
    """An official asks for ``quantity`` grams of ``material`` of ``owner`` to go to
    ``recipient`` under ``regime``. Emergency releases carry an exhaustion declaration,
    price-spike sales a price observation (either may carry an override instead);
    ordinary sales and loans carry no evidence."""

    owner: Code
    material: Code
    quantity: Qty
    recipient: Name
    regime: Regime
    purpose: Reason
    evidence: Evidence | None = None


class ReleaseApproved(Body, tag="release.approved", frozen=True):
    """An official of the owner approves a request; ``cap`` is an optional condition: the
    order may not exceed it."""

    request: EntryId
    cap: Qty | None = None
    comment: Text = ""


class ReleaseOrdered(Body, tag="release.ordered", frozen=True):
    """A minister's order executing an approved request: at most ``cap`` grams of the
    request's material, executed between ``valid_from`` and ``valid_until`` at the listed
    sites, under ``regime`` (the request's). ``report_to`` names the parliament or
    committee the order must be reported to. ``confirm_override`` is the minister's
    explicit acceptance of a request's emergency override (required then, refused
    otherwise)."""

    request: EntryId
    cap: Qty
    valid_from: Time
    valid_until: Time
    sites: Annotated[list[Code], msgspec.Meta(min_length=1, max_length=32)]
    regime: Regime
    report_to: Name
    confirm_override: bool = False


class OrderRevoked(Body, tag="release.order_revoked", frozen=True):
    """A minister of the owner withdraws an order; nothing more may be executed under it."""

    order: EntryId
    reason: Reason


RELEASE_KINDS = (
    PolicySet | PriceObserved | ReleaseRequested | ReleaseApproved | ReleaseOrdered | OrderRevoked
)
