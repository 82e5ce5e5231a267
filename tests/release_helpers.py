"""Building the chain of authority a release, sale or loan needs (issue #5), for tests.

``set_policy`` appends a ``policy.set`` signed by a security admin and co-signed by a
minister, taking effect a fraction of a second later, and waits (on the given clock)
until it is in force: a policy can only take effect at a future time. ``authorise``
then requests, approves and orders, and returns the order's entry id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from ledger.service import Ledger, new_body
from ledger.store.log import AppendResult
from ledger.store.projections import read_table
from ledger.timefmt import format_time, now, parse_time

ALL_REGIMES = ["emergency_release", "price_spike_sale", "ordinary_sale", "loan"]


def entry_id(led: Ledger, res: AppendResult) -> str:
    return led.entry_ref(str(res.first_seq))


def policy_body(
    admin: str,
    owner: str,
    material: str,
    *,
    effective_at: str,
    regimes: Sequence[str] = tuple(ALL_REGIMES),
    quorum: int = 1,
    tolerance: str = "0.5",
    threshold: str = "100",
    index: str = "IDX-NDPR",
    currency: str = "USD",
    **extra: Any,
) -> dict[str, Any]:
    return new_body(
        "policy.set",
        admin,
        owner=owner,
        material=material,
        quorum=quorum,
        crisis_index=index,
        crisis_currency=currency,
        crisis_threshold=threshold,
        count_tolerance_pct=tolerance,
        regimes=list(regimes),
        effective_at=effective_at,
        **extra,
    )


def set_policy(
    led: Ledger,
    owner: str,
    material: str,
    *,
    minister: str,
    admin: str = "admin",
    clock: Callable[[], str] = now,
    margin: float = 0.3,
    **kw: Any,
) -> AppendResult:
    """A policy in force from ``margin`` seconds after ``clock()``; returns once it is."""
    effective = format_time(parse_time(clock()) + timedelta(seconds=margin))
    body = policy_body(admin, owner, material, effective_at=effective, **kw)
    res = led.submit(body, [led.signer_for(admin), led.signer_for(minister)])
    while clock() <= effective:
        time.sleep(0.02)
    return res


DECLARATION = {"type": "exhaustion_declaration", "document_sha256": "ee" * 32}


def crisis_price(led: Ledger, official: str, material: str) -> str:
    """The latest IDX-NDPR price of ``material`` (observed now at 100000 USD if none is)."""
    with led.engine.connect() as conn:
        latest = read_table(conn, "prices").get(("IDX-NDPR", material, "USD"))
    if latest is not None:
        return str(latest.entry_id)
    res = led.act(
        official, "price.observed", index="IDX-NDPR", material=material, value="100000",
        currency="USD", observed_at=now(), source="test crisis price",
    )
    return entry_id(led, res)


def request(
    led: Ledger,
    requester: str,
    owner: str,
    material: str,
    quantity: int,
    recipient: str,
    regime: str,
    *,
    evidence: dict[str, Any] | list[dict[str, Any]] | None = None,
    declaration: bool = True,
    purpose: str = "test",
) -> str:
    """A request with the evidence its regime needs (issue #12): the recipient's
    declaration for every release or sale (unless ``declaration=False``) plus ``evidence``;
    an emergency release without ``evidence`` gets a fresh crisis price on IDX-NDPR."""
    fields: dict[str, Any] = dict(
        owner=owner,
        material=material,
        quantity=quantity,
        recipient=recipient,
        regime=regime,
        purpose=purpose,
    )
    items = [evidence] if isinstance(evidence, dict) else list(evidence or [])
    if evidence is None and regime == "emergency_release":
        items.append({"type": "price_observation", "observation": crisis_price(led, requester, material)})
    if declaration and regime != "loan" and DECLARATION not in items:
        items.insert(0, DECLARATION)
    if items:
        fields["evidence"] = items
    return entry_id(led, led.act(requester, "release.requested", **fields))


def order(
    led: Ledger,
    minister: str,
    request_id: str,
    cap: int,
    regime: str,
    sites: Sequence[str],
    *,
    clock: Callable[[], str] = now,
    valid_for: timedelta = timedelta(days=1),
    **kw: Any,
) -> str:
    start = clock()
    fields: dict[str, Any] = dict(
        request=request_id,
        cap=cap,
        valid_from=start,
        valid_until=format_time(parse_time(start) + valid_for),
        sites=list(sites),
        regime=regime,
        report_to="Standing Committee on Economic Security",
    )
    fields.update(kw)
    return entry_id(led, led.act(minister, "release.ordered", **fields))


def authorise(
    led: Ledger,
    *,
    owner: str,
    material: str,
    quantity: int,
    recipient: str,
    regime: str,
    sites: Sequence[str],
    requester: str,
    approvers: Sequence[str],
    minister: str,
    clock: Callable[[], str] = now,
    valid_for: timedelta = timedelta(days=1),
) -> str:
    """Request, approve (each of ``approvers``) and order; the order's entry id. A
    policy opening ``regime`` must be in force (``set_policy``)."""
    req = request(led, requester, owner, material, quantity, recipient, regime)
    for a in approvers:
        led.act(a, "release.approved", request=req)
    return order(led, minister, req, quantity, regime, sites, clock=clock, valid_for=valid_for)
