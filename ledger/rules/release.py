"""Rules of ministerial release authorisation (issue #5; DESIGN.md, "Releases").

No gram leaves a reserve without a valid, signed chain of authority, and the verifier
proves it from the history alone, because every decision below reads only the state
(the history folded so far) and the log's own time (``ctx.recorded_at``), never a clock.

Decisions, in one place:

* **Policies** (``policy.set``) are signed by a security admin (author, ``sigs[0]``) and
  co-signed by one minister of the owner (``sigs[1]``). They take effect at a stated time
  later than the log records them; the policy in force at T is the one with the latest
  ``effective_at`` not after T. Without a policy in force no regime is open: requests
  (and orders) are refused. A policy change does not touch orders already made.
* **Requests** come from an official of the owner, for a regime open under the policy in
  force, with the regime's evidence (issue #12, the seed's rule): every release or sale
  carries the recipient's exhaustion declaration (a document hash); an emergency release
  or a price-spike sale also carries the *latest* price observation on the policy's
  crisis index and currency, at or above its threshold, or instead an emergency override
  with a reason, which the minister's order must then confirm explicitly. Loans carry no
  evidence. A request lapses 30 days after it is recorded if no order executes it.
* **Approvals** come from officials of the owner: never the requester, each person once
  (a user's keys are one person), each key once. A revoked key signs nothing (the reducer
  refuses it), and an approval whose key is revoked before the order no longer counts.
  A condition (``cap``) can only lower the quantity.
* **Orders** come from a minister of the owner who neither requested nor approved the
  request (the same person under two roles is refused), once the approvals still
  counting reach the quorum of the policy in force at the order. The cap is at most the
  requested quantity and every approval's condition; the window starts no earlier than
  the order (an order never authorises the past); the eligible sites hold stock for the
  owner. The order takes over the request (which leaves the open requests) and is kept
  for good with its executions: it is what the reporting obligation reports.
* **Executions**: ``stock.release`` executes an ``emergency_release`` order;
  ``stock.sale`` an ``ordinary_sale`` or ``price_spike_sale`` order (selling into the
  spike is what cools it); ``stock.loan_out`` a ``loan`` order. Each must be at an
  eligible site, for the order's owner and material and recipient, within the window
  (occurring in it, and recorded before it ends), before any revocation, and within the
  remaining cap, which it consumes. A loan coming back does not restore the cap.
  Executions are never reversed (a mistake is corrected by the minister revoking the
  order and a new chain of authority).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final

from ledger.kinds.release import (
    EmergencyOverride,
    ExhaustionDeclaration,
    OrderRevoked,
    PolicySet,
    PriceCrossing,
    PriceObserved,
    ReleaseApproved,
    ReleaseOrdered,
    ReleaseRequested,
)
from ledger.records import OrderRec, PolicyRec, PolicyVersion, PriceRec, RequestRec
from ledger.reducer import Context, Signers, require_role, rule
from ledger.rules.common import need, refuse, require_site_for_owner
from ledger.state import CLOCK_SKEW, Change, Put, StateView
from ledger.timefmt import format_time, parse_time
from ledger.units import format_quantity

# An approved request must be ordered within this time of being requested.
REQUEST_LIFETIME: Final = timedelta(days=30)
# Which movement kinds execute an order of each regime.
EXECUTING_KINDS: Final[dict[str, tuple[str, ...]]] = {
    "emergency_release": ("stock.release",),
    "price_spike_sale": ("stock.sale",),
    "ordinary_sale": ("stock.sale",),
    "loan": ("stock.loan_out",),
}
REGIME_WORDS: Final[dict[str, str]] = {
    "emergency_release": "an emergency release",
    "price_spike_sale": "a sale during a price spike",
    "ordinary_sale": "an ordinary sale",
    "loan": "a loan",
}
KIND_WORDS: Final[dict[str, str]] = {
    "stock.release": "a release",
    "stock.sale": "a sale",
    "stock.loan_out": "a loan",
}


def norm_time(value: str, field: str = "time") -> str:
    """A time in the log's fixed-width form, so stored times compare as strings."""
    return format_time(parse_time(value, field=field))


# -- policies and prices ------------------------------------------------------------------


@rule(PolicySet)
def policy_set(state: StateView, body: PolicySet, signers: Signers, ctx: Context) -> list[Change]:
    require_role(signers, "security_admin", ctx, what="set release policies")
    need(state, "owners", body.owner, ctx, what="owner", field="entry.owner")
    need(state, "materials", body.material, ctx, what="material", field="entry.material")
    if len(signers.cosigners) != 1:
        raise refuse(
            "policy-cosign",
            f"a release policy is signed by a security admin and co-signed by one minister of {body.owner}",
            ctx,
            "sigs",
        )
    minister = signers.cosigners[0]
    if "minister" not in minister.roles or body.owner not in minister.owners:
        raise refuse(
            "policy-cosign",
            f"the second signature must be a minister of {body.owner}; '{minister.user}' is not",
            ctx,
            "sigs[1]",
        )
    if len(set(body.regimes)) != len(body.regimes):
        raise refuse("policy-regimes", "list each regime once", ctx, "entry.regimes")
    effective = parse_time(body.effective_at, field="entry.effective_at")
    now = format_time(ctx.recorded_at)
    if effective <= ctx.recorded_at:
        raise refuse(
            "policy-effective",
            f"a policy change takes effect only at a future time: {body.effective_at} is not "
            f"after {now}, when the log recorded it",
            ctx,
            "entry.effective_at",
        )
    key = (body.owner, body.material)
    rec: PolicyRec | None = state.get("policies", key)
    kept: list[PolicyVersion] = []
    if rec is not None:
        # The log's clock never runs backwards: versions superseded by now are never
        # asked for again. Keep the one in force and those still to come.
        current = rec.in_force(now)
        kept = rec.upcoming(now) + ([current] if current is not None else [])
    kept.append(
        PolicyVersion(
            effective_at=format_time(effective),
            seq=ctx.seq,
            quorum=body.quorum,
            crisis_index=body.crisis_index,
            crisis_currency=body.crisis_currency,
            crisis_threshold=body.crisis_threshold,
            count_tolerance_pct=body.count_tolerance_pct,
            regimes=tuple(body.regimes),
            admin=signers.author.user,
            minister=minister.user,
            assay_tolerance_pct=body.assay_tolerance_pct,
        )
    )
    kept.sort(key=lambda v: (v.effective_at, v.seq))
    return [Put("policies", key, PolicyRec(body.owner, body.material, tuple(kept)))]


@rule(PriceObserved)
def price_observed(
    state: StateView, body: PriceObserved, signers: Signers, ctx: Context
) -> list[Change]:
    """Any official may record a price (prices are public, not an owner's). Only the
    latest observation per index, material and currency is kept: it is the only one a
    request can rely on."""
    if "official" not in signers.author.roles:
        raise refuse("role", "only an official records price observations", ctx, "entry.author")
    need(state, "materials", body.material, ctx, what="material", field="entry.material")
    observed = parse_time(body.observed_at, field="entry.observed_at")
    if observed > ctx.recorded_at + CLOCK_SKEW:
        raise refuse("clock", "the price is dated in the future", ctx, "entry.observed_at")
    key = (body.index, body.material, body.currency)
    latest: PriceRec | None = state.get("prices", key)
    at = format_time(observed)
    if latest is not None and latest.observed_at > at:
        return []  # an older price, recorded late: in the log, but not the latest
    rec = PriceRec(
        price_index=body.index,
        material=body.material,
        currency=body.currency,
        value=body.value,
        observed_at=at,
        source=body.source,
        entry_id=body.id,
        seq=ctx.seq,
    )
    return [Put("prices", key, rec)]


def open_policy(
    state: StateView, owner: str, material: str, regime: str, ctx: Context, field: str
) -> PolicyVersion:
    """The policy in force now, if it opens ``regime``; otherwise a refusal that says
    when (if ever) a policy already set will open it."""
    rec: PolicyRec | None = state.get("policies", (owner, material))
    now = format_time(ctx.recorded_at)
    current = rec.in_force(now) if rec is not None else None
    if current is not None and regime in current.regimes:
        return current
    later = [v for v in (rec.upcoming(now) if rec is not None else []) if regime in v.regimes]
    when = (
        f"; the policy set at seq {later[0].seq} opens it from {later[0].effective_at}, not before"
        if later
        else ""
    )
    if current is None:
        raise refuse(
            "no-policy",
            f"no release policy is in force for {owner} {material}, so no release regime is open{when}",
            ctx,
            field,
        )
    raise refuse(
        "regime-closed",
        f"{REGIME_WORDS[regime]} is not open for {owner} {material} under the policy in force "
        f"(set at seq {current.seq}, open: {', '.join(current.regimes) or 'none'}){when}",
        ctx,
        field,
    )


# -- requests and approvals ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Evidence:
    """What a request's evidence established: the declaration's hash (or ""), the trigger
    that opened the regime (``price_observation`` or ``override``, or "") with its
    reference (observation id or override reason) and what the price showed."""

    declaration: str = ""
    trigger_type: str = ""
    trigger: str = ""
    detail: str = ""


# Which evidence each regime needs (issue #12, the seed's rule): a company gets reserves
# only once its own inventory is exhausted (every release or sale carries the recipient's
# declaration), and the emergency regimes open only at the crisis price (or by an override
# the minister must confirm). A loan comes back, so it needs neither.
_NEEDS_DECLARATION: Final = frozenset({"emergency_release", "price_spike_sale", "ordinary_sale"})
_NEEDS_TRIGGER: Final = frozenset({"emergency_release", "price_spike_sale"})


def _evidence(
    state: StateView, body: ReleaseRequested, policy: PolicyVersion, ctx: Context
) -> _Evidence:
    """The request's evidence, checked against its regime."""
    regime = body.regime
    items: list[Any] = (
        [] if body.evidence is None
        else list(body.evidence) if isinstance(body.evidence, list)
        else [body.evidence]
    )
    field = "entry.evidence"
    by_type: dict[type, Any] = {}
    for item in items:
        if type(item) in by_type:
            raise refuse("evidence", "each kind of evidence may be given once", ctx, field)
        by_type[type(item)] = item
    declaration = by_type.get(ExhaustionDeclaration)
    price_ev = by_type.get(PriceCrossing)
    override = by_type.get(EmergencyOverride)
    what_price = f"the price observation on {policy.crisis_index} that reached the crisis threshold"
    if regime not in _NEEDS_DECLARATION and declaration is not None:
        raise refuse("evidence", f"{REGIME_WORDS[regime]} needs no declaration; remove it", ctx, field)
    if regime not in _NEEDS_TRIGGER and (price_ev is not None or override is not None):
        raise refuse(
            "evidence",
            f"{REGIME_WORDS[regime]} needs no price observation or override; remove it",
            ctx,
            field,
        )
    if regime in _NEEDS_DECLARATION and declaration is None:
        raise refuse(
            "evidence",
            f"a request for {REGIME_WORDS[regime]} must carry the recipient's declaration "
            "that its own inventory is exhausted",
            ctx,
            field,
        )
    result = _Evidence(declaration=declaration.document_sha256 if declaration else "")
    if regime not in _NEEDS_TRIGGER:
        return result
    if price_ev is not None and override is not None:
        raise refuse(
            "evidence",
            "give either the crisis price observation or an override, not both",
            ctx,
            field,
        )
    if override is not None:
        if not override.reason.strip():
            raise refuse("evidence", "state the reason for the override", ctx, f"{field}.reason")
        return _Evidence(result.declaration, "override", override.reason, "")
    if price_ev is None:
        raise refuse(
            "evidence",
            f"a request for {REGIME_WORDS[regime]} must carry {what_price}, or an emergency "
            "override with a stated reason",
            ctx,
            field,
        )
    index, cur, threshold = policy.crisis_index, policy.crisis_currency, policy.crisis_threshold
    price: PriceRec | None = state.get("prices", (index, body.material, cur))
    field = "entry.evidence.observation"
    if price is None:
        raise refuse(
            "price-evidence",
            f"no price of {body.material} on {index} in {cur} has been observed",
            ctx,
            field,
        )
    if price.entry_id != price_ev.observation:
        raise refuse(
            "price-evidence",
            f"that is not the latest {index} price of {body.material} in {cur}; the latest is "
            f"{price.value} {cur} observed {price.observed_at} (seq {price.seq})",
            ctx,
            field,
        )
    if Decimal(price.value) < Decimal(threshold):
        raise refuse(
            "price-evidence",
            f"the latest {index} price, {price.value} {cur}, is below the crisis threshold of "
            f"{threshold} {cur} set by the policy in force",
            ctx,
            field,
        )
    detail = (
        f"{index} {price.value} {cur} observed {price.observed_at} ({price.source}); "
        f"crisis threshold {threshold} {cur} (policy seq {policy.seq})"
    )
    return _Evidence(result.declaration, "price_observation", price_ev.observation, detail)


@rule(ReleaseRequested)
def release_requested(
    state: StateView, body: ReleaseRequested, signers: Signers, ctx: Context
) -> list[Change]:
    _in_owner_scope(
        signers, "official", body.owner, ctx, what="requests releases", field="entry.owner"
    )
    need(state, "owners", body.owner, ctx, what="owner", field="entry.owner")
    need(state, "materials", body.material, ctx, what="material", field="entry.material")
    policy = open_policy(state, body.owner, body.material, body.regime, ctx, "entry.regime")
    ev = _evidence(state, body, policy, ctx)
    rec = RequestRec(
        id=body.id,
        seq=ctx.seq,
        recorded_at=format_time(ctx.recorded_at),
        lapses_at=format_time(ctx.recorded_at + REQUEST_LIFETIME),
        requester=signers.author.user,
        requester_key=signers.author.key_id,
        owner=body.owner,
        material=body.material,
        quantity=body.quantity,
        recipient=body.recipient,
        regime=body.regime,
        purpose=body.purpose,
        declaration=ev.declaration,
        evidence_type=ev.trigger_type,
        evidence=ev.trigger,
        evidence_detail=ev.detail,
        approvals=(),
    )
    return [Put("release_requests", body.id, rec)]


def _open_request(state: StateView, request_id: str, ctx: Context) -> RequestRec:
    req: RequestRec | None = state.get("release_requests", request_id)
    if req is None:
        raise refuse(
            "unknown-request",
            "no open release request with this id (unknown, or already ordered)",
            ctx,
            "entry.request",
        )
    if format_time(ctx.recorded_at) > req.lapses_at:
        raise refuse(
            "request-lapsed",
            f"the request lapsed at {req.lapses_at}, 30 days after it was made; make a new request",
            ctx,
            "entry.request",
        )
    return req


def _in_owner_scope(
    signers: Signers, role: str, owner: str, ctx: Context, *, what: str, field: str = "entry.author"
) -> None:
    a_role = "an official" if role == "official" else f"a {role}"
    if role not in signers.author.roles:
        raise refuse("role", f"only {a_role} {what}", ctx, "entry.author")
    if owner not in signers.author.owners:
        raise refuse(
            "owner-scope",
            f"owner '{owner}' is not in your scope: only {a_role} of {owner} {what} for it",
            ctx,
            field,
        )


@rule(ReleaseApproved)
def release_approved(
    state: StateView, body: ReleaseApproved, signers: Signers, ctx: Context
) -> list[Change]:
    req = _open_request(state, body.request, ctx)
    _in_owner_scope(signers, "official", req.owner, ctx, what="approves release requests")
    me = signers.author
    if me.user == req.requester:
        raise refuse(
            "self-approval",
            f"'{me.user}' made this request (seq {req.seq}); nobody approves their own request",
            ctx,
            "entry.author",
        )
    for user, kid, seq, _at, _cap in req.approvals:
        if kid == me.key_id:
            raise refuse(
                "approval-same-key",
                f"this key already approved the request (seq {seq}); each approval is another official's",
                ctx,
                "sigs[0]",
            )
        if user == me.user:
            raise refuse(
                "approval-same-person",
                f"'{user}' already approved the request (seq {seq}, with another key); approvals come from distinct officials",
                ctx,
                "entry.author",
            )
    if body.cap is not None and body.cap > req.quantity:
        raise refuse(
            "approval-cap",
            f"a condition can only lower the quantity: {format_quantity(body.cap)} is more than "
            f"the {format_quantity(req.quantity)} requested",
            ctx,
            "entry.cap",
        )
    approval = (me.user, me.key_id, ctx.seq, format_time(ctx.recorded_at), body.cap)
    return [Put("release_requests", req.id, replace(req, approvals=(*req.approvals, approval)))]


# -- orders ---------------------------------------------------------------------------------


def counting_approvals(
    state: StateView, req: RequestRec
) -> tuple[list[tuple[str, str, int, str, int | None]], list[str]]:
    """The approvals that still count (their key not revoked since), and why the others
    do not."""
    counted: list[tuple[str, str, int, str, int | None]] = []
    lost: list[str] = []
    for a in req.approvals:
        key = state.key(a[1])
        if key is None or key.revoked_seq is not None:
            when = f" at seq {key.revoked_seq}" if key is not None else ""
            lost.append(f"{a[0]}'s approval (seq {a[2]}): the key was revoked{when}")
        else:
            counted.append(a)
    return counted, lost


@rule(ReleaseOrdered)
def release_ordered(
    state: StateView, body: ReleaseOrdered, signers: Signers, ctx: Context
) -> list[Change]:
    req = _open_request(state, body.request, ctx)
    _in_owner_scope(signers, "minister", req.owner, ctx, what="orders releases")
    me = signers.author
    if body.regime != req.regime:
        raise refuse(
            "order-regime",
            f"the request is for {REGIME_WORDS[req.regime]}; the order cannot be for {REGIME_WORDS[body.regime]}",
            ctx,
            "entry.regime",
        )
    policy = open_policy(state, req.owner, req.material, req.regime, ctx, "entry.request")
    if me.user == req.requester:
        raise refuse(
            "separation-of-duties",
            f"'{me.user}' made this request and cannot also order it",
            ctx,
            "entry.author",
        )
    if me.user in {a[0] for a in req.approvals}:
        raise refuse(
            "separation-of-duties",
            f"'{me.user}' approved this request and cannot also order it",
            ctx,
            "entry.author",
        )
    counted, lost = counting_approvals(state, req)
    if len(counted) < policy.quorum:
        why = f"; not counted: {'; '.join(lost)}" if lost else ""
        raise refuse(
            "quorum",
            f"the policy in force needs {policy.quorum} approval(s) by distinct officials of "
            f"{req.owner}; this request has {len(counted)}{why}",
            ctx,
            "entry.request",
        )
    if body.cap > req.quantity:
        raise refuse(
            "order-cap",
            f"the cap of {format_quantity(body.cap)} is more than the {format_quantity(req.quantity)} requested",
            ctx,
            "entry.cap",
        )
    for user, _kid, seq, _at, cond in req.approvals:
        if cond is not None and body.cap > cond:
            raise refuse(
                "order-cap",
                f"the cap of {format_quantity(body.cap)} is above the {format_quantity(cond)} condition "
                f"of {user}'s approval (seq {seq})",
                ctx,
                "entry.cap",
            )
    valid_from = parse_time(body.valid_from, field="entry.valid_from")
    valid_until = parse_time(body.valid_until, field="entry.valid_until")
    if valid_from < ctx.recorded_at - CLOCK_SKEW:
        raise refuse(
            "order-window",
            f"an order cannot authorise the past: it is valid from {body.valid_from}, before it was recorded ({format_time(ctx.recorded_at)})",
            ctx,
            "entry.valid_from",
        )
    if valid_until <= valid_from or valid_until <= ctx.recorded_at:
        raise refuse("order-window", "the order must end after it starts", ctx, "entry.valid_until")
    if len(set(body.sites)) != len(body.sites):
        raise refuse("order-sites", "list each eligible site once", ctx, "entry.sites")
    if req.evidence_type == "override" and not body.confirm_override:
        raise refuse(
            "override-confirmation",
            f"the request relies on an emergency override ({req.evidence}); the minister's order must confirm it explicitly",
            ctx,
            "entry.confirm_override",
        )
    if req.evidence_type != "override" and body.confirm_override:
        raise refuse(
            "override-confirmation",
            "the request carries its regime's evidence: there is no override to confirm",
            ctx,
            "entry.confirm_override",
        )
    # Eligible sites last, each refused alike whether it does not exist or does not hold
    # for the owner: no refusal tells a minister which sites exist (issue #8 item 7).
    for i, code in enumerate(body.sites):
        require_site_for_owner(state, code, req.owner, ctx, field=f"entry.sites[{i}]")
    order = OrderRec(
        id=body.id,
        seq=ctx.seq,
        recorded_at=format_time(ctx.recorded_at),
        minister=me.user,
        minister_key=me.key_id,
        request=req.id,
        requested_at=req.recorded_at,
        requester=req.requester,
        owner=req.owner,
        material=req.material,
        regime=req.regime,
        recipient=req.recipient,
        purpose=req.purpose,
        quantity_requested=req.quantity,
        declaration=req.declaration,
        evidence_type=req.evidence_type,
        evidence=req.evidence,
        evidence_detail=req.evidence_detail,
        approvals=req.approvals,
        quorum=policy.quorum,
        policy_seq=policy.seq,
        cap=body.cap,
        remaining=body.cap,
        valid_from=format_time(valid_from),
        valid_until=format_time(valid_until),
        sites=tuple(body.sites),
        report_to=body.report_to,
        executions=(),
        revoked_seq=None,
        revoked_at=None,
        revoked_by=None,
        revoke_reason=None,
    )
    # The order takes over the request: it is no longer open.
    return [Put("release_requests", req.id, None), Put("release_orders", body.id, order)]


@rule(OrderRevoked)
def order_revoked(
    state: StateView, body: OrderRevoked, signers: Signers, ctx: Context
) -> list[Change]:
    order: OrderRec | None = state.get("release_orders", body.order)
    if order is None:
        raise refuse("unknown-order", "no ministerial order with this id", ctx, "entry.order")
    _in_owner_scope(signers, "minister", order.owner, ctx, what="revokes orders")
    if order.revoked_seq is not None:
        raise refuse(
            "already-revoked",
            f"the order was already revoked at seq {order.revoked_seq}",
            ctx,
            "entry.order",
        )
    revoked = replace(
        order,
        revoked_seq=ctx.seq,
        revoked_at=format_time(ctx.recorded_at),
        revoked_by=signers.author.user,
        revoke_reason=body.reason,
    )
    return [Put("release_orders", order.id, revoked)]


# -- executions (called by the movement rules) ------------------------------------------------


def execute_order(
    state: StateView,
    ctx: Context,
    *,
    order_id: str,
    kind: str,
    entry_id: str,
    site: str,
    owner: str,
    lot: str,
    material: str,
    quantity: int,
    counterparty: str,
    counterparty_field: str,
    occurred_at: str,
) -> Put:
    """Check a release, sale or loan against the order it executes; the order with the
    quantity counted against its cap."""
    order: OrderRec | None = state.get("release_orders", order_id)
    if order is None:
        raise refuse(
            "unknown-order",
            "no ministerial order with this id: nothing leaves a reserve without one",
            ctx,
            "entry.order",
        )
    if order.revoked_seq is not None:
        raise refuse(
            "order-revoked",
            f"the order was revoked at seq {order.revoked_seq} by {order.revoked_by} "
            f"({order.revoke_reason}); nothing more may be executed under it",
            ctx,
            "entry.order",
        )
    if kind not in EXECUTING_KINDS[order.regime]:
        raise refuse(
            "order-regime",
            f"the order is for {REGIME_WORDS[order.regime]}; it cannot be executed by {KIND_WORDS[kind]}",
            ctx,
            "entry.order",
        )
    if owner != order.owner:
        raise refuse(
            "order-owner",
            f"the order releases stock of {order.owner}, not of {owner}",
            ctx,
            "entry.owner",
        )
    if material != order.material:
        raise refuse(
            "order-material",
            f"the order releases {order.material}; lot {lot} is {material}",
            ctx,
            "entry.lot",
        )
    if site not in order.sites:
        raise refuse(
            "order-site",
            f"{site} is not one of the order's eligible sites ({', '.join(order.sites)})",
            ctx,
            "entry.site",
        )
    if counterparty != order.recipient:
        raise refuse(
            "order-recipient",
            f"the order is for '{order.recipient}', not '{counterparty}'",
            ctx,
            counterparty_field,
        )
    occurred = norm_time(occurred_at, "entry.occurred_at")
    recorded = format_time(ctx.recorded_at)
    if recorded > order.valid_until or occurred > order.valid_until:
        raise refuse(
            "order-window",
            f"the order expired at {order.valid_until}",
            ctx,
            "entry.occurred_at",
        )
    if occurred < order.valid_from:
        raise refuse(
            "order-window",
            f"the order is valid only from {order.valid_from}",
            ctx,
            "entry.occurred_at",
        )
    if quantity > order.remaining:
        raise refuse(
            "order-cap",
            f"{format_quantity(quantity)} would exceed the order's cap: "
            f"{format_quantity(order.remaining)} of {format_quantity(order.cap)} remain",
            ctx,
            "entry.quantity",
        )
    execution = (ctx.seq, entry_id, recorded, occurred, kind, site, lot, quantity, counterparty)
    updated = replace(
        order, remaining=order.remaining - quantity, executions=(*order.executions, execution)
    )
    return Put("release_orders", order.id, updated)


def executable_at(order: OrderRec, at: str, *, sites: frozenset[str] | None = None) -> tuple[str, ...]:
    """The order's eligible sites (among ``sites``, when given) where something may still
    be executed at ``at`` (normalised RFC 3339): the conditions :func:`execute_order`
    checks that do not depend on the movement, so an operator's inbox (issue #12) lists
    exactly the orders the reducer would let them execute. ``()``: none."""
    if order_status(order, at) != "in force":
        return ()
    return tuple(s for s in order.sites if sites is None or s in sites)


def order_status(order: OrderRec, at: str) -> str:
    """Where the order stands at ``at`` (normalised RFC 3339): "revoked", "expired",
    "exhausted", "not yet valid" or "in force" (only then may it be executed), the first
    that applies. One reading for the order views and the inbox (issue #12)."""
    if order.revoked_seq is not None:
        return "revoked"
    if at > order.valid_until:
        return "expired"
    if order.remaining <= 0:
        return "exhausted"
    if at < order.valid_from:
        return "not yet valid"
    return "in force"
