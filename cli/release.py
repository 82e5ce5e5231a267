"""``reserve release``: ministerial release authorisation (issue #5).

    reserve release policy  --owner O --material M ... --as ADMIN --cosign MINISTER
    reserve release price   --index I --material M --value V --currency C --source S --as OFFICIAL
    reserve release request --owner O --material M --qty "2 t" --recipient R --regime X
                            --purpose P [--declaration FILE | --price-observation REF
                            | --override REASON] --as OFFICIAL
    reserve release approve REQUEST [--cap QTY] --as OFFICIAL
    reserve release order   REQUEST --cap QTY --valid-until T --sites A,B --report-to BODY
                            [--confirm-override] --as MINISTER
    reserve release revoke  ORDER --reason R --as MINISTER
    reserve release show    REF          (a request still open, or an order and its report)
    reserve release list    [--owner O]  (open requests, what each still needs; orders and
                                          their remaining cap)
    reserve release report  ORDER        (the reporting obligation's report, as JSON)
    reserve release policies [--owner O]

Requests and orders may be named by entry id or by the seq the CLI printed. The
executions themselves are stock movements: ``reserve stock release|sell|loan --order``.
Every refusal is one line naming the rule and the reason (``ledger.rules.release``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from cli.stock import _csv, _done, _print_table, _read_file
from ledger.errors import ConfigError, NotFound
from ledger.kinds.release import REGIMES
from ledger.timefmt import now
from ledger.units import format_quantity, parse_quantity

if TYPE_CHECKING:
    from ledger.service import Ledger


def _qty(text: str, field: str) -> int:
    return parse_quantity(text, field=field)


# -- writing ----------------------------------------------------------------------------


def policy_set(led: Ledger, a: argparse.Namespace, user: str) -> int:
    from ledger.service import new_body

    if not a.cosign:
        raise ConfigError("a release policy is co-signed by a minister: --cosign MINISTER")
    body = new_body(
        "policy.set",
        user,
        owner=a.owner,
        material=a.material,
        quorum=a.quorum,
        crisis_index=a.crisis_index,
        crisis_currency=a.crisis_currency,
        crisis_threshold=a.crisis_threshold,
        count_tolerance_pct=a.count_tolerance,
        regimes=_csv(a.regimes),
        effective_at=a.effective_at,
    )
    res = led.submit(body, [led.signer_for(user), led.signer_for(a.cosign)])
    return _done("policy.set", res)


def price_observed(led: Ledger, a: argparse.Namespace, user: str) -> int:
    res = led.act(
        user,
        "price.observed",
        index=a.index,
        material=a.material,
        value=a.value,
        currency=a.currency,
        observed_at=a.observed_at or now(),
        source=a.source,
    )
    return _done("price.observed", res)


def request(led: Ledger, a: argparse.Namespace, user: str) -> int:
    fields: dict[str, Any] = dict(
        owner=a.owner,
        material=a.material,
        quantity=_qty(a.qty, "quantity"),
        recipient=a.recipient,
        regime=a.regime,
        purpose=a.purpose,
    )
    evidence: list[dict[str, str]] = []
    if a.declaration:
        digest = hashlib.sha256(_read_file(a.declaration, "declaration")).hexdigest()
        evidence.append({"type": "exhaustion_declaration", "document_sha256": digest})
    elif a.declaration_sha256:
        evidence.append(
            {"type": "exhaustion_declaration", "document_sha256": a.declaration_sha256.lower()}
        )
    if a.price_observation:
        evidence.append(
            {"type": "price_observation", "observation": led.entry_ref(a.price_observation)}
        )
    elif a.override:
        evidence.append({"type": "override", "reason": a.override})
    if evidence:
        fields["evidence"] = evidence
    return _done("release.requested", led.act(user, "release.requested", **fields))


def approve(led: Ledger, a: argparse.Namespace, user: str) -> int:
    fields: dict[str, Any] = {"request": led.entry_ref(a.request)}
    if a.cap:
        fields["cap"] = _qty(a.cap, "cap")
    if a.comment:
        fields["comment"] = a.comment
    return _done("release.approved", led.act(user, "release.approved", **fields))


def order(led: Ledger, a: argparse.Namespace, user: str) -> int:
    request_id = led.entry_ref(a.request)
    regime = a.regime
    if regime is None:
        from ledger.store import releases

        with led.engine.connect() as conn:
            regime = releases.get_request(conn, request_id, owners=None, at=now()).regime
    res = led.act(
        user,
        "release.ordered",
        request=request_id,
        cap=_qty(a.cap, "cap"),
        valid_from=a.valid_from or now(),
        valid_until=a.valid_until,
        sites=_csv(a.sites),
        regime=regime,
        report_to=a.report_to,
        confirm_override=a.confirm_override,
    )
    return _done("release.ordered", res)


def revoke(led: Ledger, a: argparse.Namespace, user: str) -> int:
    res = led.act(user, "release.order_revoked", order=led.entry_ref(a.order), reason=a.reason)
    return _done("release.order_revoked", res)


# -- reading ----------------------------------------------------------------------------


def _entry_id(conn: Any, ref: str) -> str:
    if not ref.isdigit():
        return ref
    from sqlalchemy import select

    from ledger.store.schema import entries

    found = conn.execute(select(entries.c.entry_id).where(entries.c.seq == int(ref))).first()
    if found is None:
        raise NotFound(f"no entry at seq {ref}")
    return str(found.entry_id)


def _print_request(r: Any) -> None:
    print(
        f"request {r.id} (seq {r.seq}) by {r.requester} at {r.recorded_at}: {r.status}, "
        f"lapses {r.lapses_at}"
    )
    print(
        f"  {r.regime}: {format_quantity(r.quantity)} of {r.material} of {r.owner} "
        f"to '{r.recipient}'"
    )
    print(f"  purpose: {r.purpose}")
    if r.declaration:
        print(f"  declaration: exhaustion declaration sha256 {r.declaration}")
    if r.evidence_type:
        detail = f" ({r.evidence_detail})" if r.evidence_detail else ""
        print(f"  evidence: {r.evidence_type} {r.evidence}{detail}")
    quorum = r.quorum if r.quorum is not None else "-"
    counted = sum(1 for x in r.approvals if x.counts)
    print(f"  approvals: {counted} of {quorum} needed")
    for x in r.approvals:
        cond = f", condition: at most {format_quantity(x.cap)}" if x.cap is not None else ""
        gone = f" (does not count: {x.note})" if not x.counts else ""
        print(f"    - {x.user} at seq {x.seq}{cond}{gone}")
    for need in r.needs:
        print(f"  still needs: {need}")


def _print_order(o: Any) -> None:
    print(f"order {o.id} (seq {o.seq}) by {o.minister} at {o.recorded_at}: {o.status}")
    print(f"  {o.regime}: {o.material} of {o.owner} to '{o.recipient}', request {o.request}")
    print(
        f"  cap {format_quantity(o.cap)}, executed {format_quantity(o.executed)}, "
        f"remaining {format_quantity(o.remaining)}"
    )
    print(f"  valid {o.valid_from} .. {o.valid_until} at {', '.join(o.sites)}")
    print(f"  report to: {o.report_to}")
    if o.revoked_seq is not None:
        print(f"  revoked at seq {o.revoked_seq} by {o.revoked_by}: {o.revoke_reason}")


def show(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import releases

    at = now()
    with engine.begin() as conn:
        ref = _entry_id(conn, a.ref)
        try:
            _print_request(releases.get_request(conn, ref, owners=None, at=at))
            return 0
        except NotFound:
            pass
        try:
            rep = releases.order_report(conn, ref, owners=None, at=at)
        except NotFound:
            try:
                ordered = releases.order_of_request(conn, ref, owners=None, at=at)
            except NotFound:
                raise NotFound(f"no open request and no order '{a.ref}'") from None
            print(f"request {ref} was ordered at seq {ordered.seq}:")
            rep = releases.order_report(conn, ordered.id, owners=None, at=at)
    _print_order(rep.order)
    if rep.executions:
        print()
        _print_table(
            ["SEQ", "RECORDED", "KIND", "SITE", "LOT", "QUANTITY", "TO", "ON LOAN"],
            [
                [
                    e.seq,
                    e.recorded_at,
                    e.kind,
                    e.site,
                    e.lot,
                    format_quantity(e.quantity),
                    e.counterparty,
                    "-"
                    if e.loan_outstanding is None
                    else format_quantity(e.loan_outstanding) + (" OVERDUE" if e.overdue else ""),
                ]
                for e in rep.executions
            ],
        )
    return 0


def list_all(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import releases

    at = now()
    owners = _csv(a.owner) or None
    with engine.begin() as conn:
        reqs = releases.open_requests(conn, owners=owners, at=at)
        orders = releases.list_orders(conn, owners=owners, at=at, active_only=not a.all)
    print(f"open requests: {len(reqs)}")
    for r in reqs:
        _print_request(r)
    print()
    print("orders" + ("" if a.all else " that can still be executed") + f": {len(orders)}")
    _print_table(
        ["ORDER", "SEQ", "OWNER", "MATERIAL", "REGIME", "CAP", "REMAINING", "UNTIL", "STATUS"],
        [
            [
                o.id[:12],
                o.seq,
                o.owner,
                o.material,
                o.regime,
                format_quantity(o.cap),
                format_quantity(o.remaining),
                o.valid_until,
                o.status,
            ]
            for o in orders
        ],
    )
    return 0


def report(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import releases

    with engine.begin() as conn:
        rep = releases.order_report(conn, _entry_id(conn, a.order), owners=None, at=now())
    print(json.dumps(asdict(rep), indent=2))
    return 0


def list_policies(engine: Any, a: argparse.Namespace) -> int:
    from ledger.store import releases

    with engine.begin() as conn:
        rows = releases.list_policies(conn, owners=_csv(a.owner) or None, at=now())
    _print_table(
        ["OWNER", "MATERIAL", "FROM", "QUORUM", "REGIMES", "CRISIS", "TOLERANCE", "STATE"],
        [
            [
                p.owner,
                p.material,
                p.effective_at,
                p.quorum,
                ",".join(p.regimes) or "-",
                f"{p.crisis_index} >= {p.crisis_threshold} {p.crisis_currency}",
                p.count_tolerance_pct + "%",
                "in force" if p.in_force else "to come",
            ]
            for p in rows
        ],
    )
    return 0


# -- wiring -------------------------------------------------------------------------------


def register(sub: Any, *, writer: Any, reader: Any) -> None:
    """Add ``reserve release ...`` to the top-level parser (see ``cli.stock``)."""

    p = sub.add_parser(
        "release",
        help="ministerial release authorisation: policies, requests, approvals, orders",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    g = p.add_subparsers(dest="release_command", required=True, metavar="ACTION")

    def acting(name: str, fn: Any, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = g.add_parser(name, help=help_, description=help_)
        sp.add_argument(
            "--as", dest="as_user", metavar="USER", help="whose key signs (or RESERVE_USER)"
        )
        sp.set_defaults(fn=writer(fn))
        return sp

    sp = acting(
        "policy",
        policy_set,
        "set the release policy of an owner and material from a future time "
        "(security admin, co-signed by a minister of the owner)",
    )
    sp.add_argument("--cosign", metavar="MINISTER", required=True)
    for opt in ("--owner", "--material", "--crisis-index", "--crisis-threshold"):
        sp.add_argument(opt, required=True)
    sp.add_argument("--crisis-currency", required=True, help="ISO 4217, e.g. USD")
    sp.add_argument("--quorum", type=int, required=True, help="approvals needed before an order")
    sp.add_argument("--count-tolerance", default="0.5", help="percent (default 0.5)")
    sp.add_argument(
        "--regimes", default="", help=f"comma-separated open regimes: {', '.join(REGIMES)}"
    )
    sp.add_argument("--effective-at", required=True, help="RFC 3339 UTC time, in the future")

    sp = acting("price", price_observed, "record a price observation (official)")
    for opt in ("--index", "--material", "--value", "--currency", "--source"):
        sp.add_argument(opt, required=True)
    sp.add_argument("--observed-at", help="RFC 3339 UTC (default now)")

    sp = acting("request", request, "request a release (official of the owner)")
    for opt in ("--owner", "--material", "--recipient", "--purpose"):
        sp.add_argument(opt, required=True)
    sp.add_argument("--qty", required=True, help='e.g. "2.5 t"')
    sp.add_argument("--regime", required=True, choices=REGIMES)
    # Issue #12: a release or sale carries the declaration; an emergency release or a
    # price-spike sale also the crisis price, or an override in its place.
    ev = sp.add_mutually_exclusive_group()
    ev.add_argument("--declaration", help="the recipient's exhaustion declaration (file)")
    ev.add_argument("--declaration-sha256", help="... or its SHA-256 in hex")
    trigger = sp.add_mutually_exclusive_group()
    trigger.add_argument(
        "--price-observation", help="seq or id of the price observation at the crisis threshold"
    )
    trigger.add_argument(
        "--override", metavar="REASON", help="an emergency override in place of the price"
    )

    sp = acting("approve", approve, "approve a request (another official of the owner)")
    sp.add_argument("request", help="seq or entry id of the request")
    sp.add_argument("--cap", help="condition: at most this quantity")
    sp.add_argument("--comment")

    sp = acting("order", order, "order an approved request (minister of the owner)")
    sp.add_argument("request", help="seq or entry id of the request")
    sp.add_argument("--cap", required=True, help="at most this quantity")
    sp.add_argument("--valid-from", help="RFC 3339 UTC (default now)")
    sp.add_argument("--valid-until", required=True, help="RFC 3339 UTC")
    sp.add_argument("--sites", required=True, help="comma-separated eligible site codes")
    sp.add_argument("--report-to", required=True, help="the parliament or committee to inform")
    sp.add_argument("--regime", choices=REGIMES, help="default: the request's")
    sp.add_argument("--confirm-override", action="store_true")

    sp = acting("revoke", revoke, "revoke an order (minister of the owner)")
    sp.add_argument("order", help="seq or entry id of the order")
    sp.add_argument("--reason", required=True)

    sp = g.add_parser("show", help="a request still open, or an order with its executions")
    sp.add_argument("ref", help="seq or entry id")
    sp.set_defaults(fn=reader(show))
    sp = g.add_parser("list", help="open requests and what they need; orders and their cap")
    sp.add_argument("--owner", help="comma-separated owner codes")
    sp.add_argument("--all", action="store_true", help="also expired, revoked, used-up orders")
    sp.set_defaults(fn=reader(list_all))
    sp = g.add_parser("report", help="an order's report to parliament (JSON, site codes only)")
    sp.add_argument("order", help="seq or entry id of the order")
    sp.set_defaults(fn=reader(report))
    sp = g.add_parser("policies", help="policies in force and to come")
    sp.add_argument("--owner")
    sp.set_defaults(fn=reader(list_policies))
