"""``reserve release``: ministerial release authorisation (issue #5).

    reserve release policy  --owner O --material M ... --as ADMIN --cosign MINISTER
    reserve release price   --index I --material M --value V --currency C --source S --as OFFICIAL
    reserve release request --owner O --material M --quantity "2 t" --recipient R --regime X
                            --purpose P [--declaration FILE | --price-observation REF
                            | --override REASON] --as OFFICIAL
    reserve release approve REQUEST [--cap QTY] --as OFFICIAL
    reserve release order   REQUEST --cap QTY --valid-until T --sites A,B --report-to BODY
                            [--confirm-override] --as MINISTER
    reserve release revoke  ORDER --reason R --as MINISTER
    reserve release show    REF          (a request still open, or an order and its report)
    reserve release list    [--owner O]  (open requests, what each still needs; orders and
                                          their remaining cap)
    reserve release report  REF [--format table|json|csv|md|html]
                                         (the order's report to parliament; REF: the order
                                          or its request)
    reserve release policies [--owner O]

Requests and orders may be named by the seq the CLI printed, the entry id, or a unique
prefix of at least 8 characters of the id, as ``release list`` shows them (issue #12);
``show`` and ``report`` take the request or its order. The
executions themselves are stock movements: ``reserve stock release|sell|loan --order``.
Every refusal is one line naming the rule and the reason (``ledger.rules.release``).
"""

from __future__ import annotations

import argparse
import hashlib
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cli.output import add_format, emit, print_table
from cli.report_opts import add_page_format
from cli.stock import _act, _read_file, _time, add_field_flag, csv_list
from ledger.errors import ConfigError, NotFound
from ledger.kinds.release import REGIMES
from ledger.timefmt import now
from ledger.units import format_quantity, parse_quantity

if TYPE_CHECKING:
    from cli.backend import Backend


REQUEST = ("release.requested",)
ORDER = ("release.ordered",)


def _qty(text: str, field: str) -> int:
    return parse_quantity(text, field=field)


def _ns(value: Any) -> Any:
    """A JSON document with attribute access (the printers read views' attributes)."""
    if isinstance(value, dict):
        return SimpleNamespace(**{k: _ns(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_ns(v) for v in value]
    return value


# -- writing ----------------------------------------------------------------------------


def policy_set(b: Backend, a: argparse.Namespace) -> int:
    if not a.cosign:
        raise ConfigError("a release policy is co-signed by a minister: --cosign MINISTER")
    return _act(
        b,
        "policy.set",
        [a.cosign],
        owner=a.owner,
        material=a.material,
        quorum=a.quorum,
        crisis_index=a.crisis_index,
        crisis_currency=a.crisis_currency,
        crisis_threshold=a.crisis_threshold,
        count_tolerance_pct=a.count_tolerance_pct,
        regimes=csv_list(a.regimes),
        effective_at=_time(a.effective_at, "effective_at"),
    )


def price_observed(b: Backend, a: argparse.Namespace) -> int:
    return _act(
        b,
        "price.observed",
        index=a.index,
        material=a.material,
        value=a.value,
        currency=a.currency,
        observed_at=_time(a.observed_at, "observed_at") if a.observed_at else now(),
        source=a.source,
    )


def request(b: Backend, a: argparse.Namespace) -> int:
    fields: dict[str, Any] = dict(
        owner=a.owner,
        material=a.material,
        quantity=_qty(a.quantity, "quantity"),
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
            {"type": "price_observation", "observation": b.entry_ref(a.price_observation, kinds=("price.observed",))}
        )
    elif a.override:
        evidence.append({"type": "override", "reason": a.override})
    if evidence:
        fields["evidence"] = evidence
    return _act(b, "release.requested", **fields)


def approve(b: Backend, a: argparse.Namespace) -> int:
    fields: dict[str, Any] = {"request": b.entry_ref(a.request, kinds=REQUEST)}
    if a.cap:
        fields["cap"] = _qty(a.cap, "cap")
    if a.comment:
        fields["comment"] = a.comment
    return _act(b, "release.approved", **fields)


def _open_request(b: Backend, request_id: str) -> dict[str, Any] | None:
    for r in b.read("/releases/requests")["requests"]:
        if r["id"] == request_id:
            return dict(r)
    return None


def order(b: Backend, a: argparse.Namespace) -> int:
    request_id = b.entry_ref(a.request, kinds=REQUEST)
    regime = a.regime
    if regime is None:
        req = _open_request(b, request_id)
        if req is None:
            raise NotFound(f"no open release request '{a.request}'")
        regime = req["regime"]
    return _act(
        b,
        "release.ordered",
        request=request_id,
        cap=_qty(a.cap, "cap"),
        valid_from=_time(a.valid_from, "valid_from") if a.valid_from else now(),
        valid_until=_time(a.valid_until, "valid_until"),
        sites=csv_list(a.sites),
        regime=regime,
        report_to=a.report_to,
        confirm_override=a.confirm_override,
    )


def revoke(b: Backend, a: argparse.Namespace) -> int:
    return _act(b, "release.order_revoked", order=b.entry_ref(a.order, kinds=ORDER), reason=a.reason)


# -- reading ----------------------------------------------------------------------------


def _print_approvals(approvals: list[Any]) -> None:
    for x in approvals:
        cond = f", condition: at most {format_quantity(x.cap)}" if x.cap is not None else ""
        gone = f" (does not count: {x.note})" if not x.counts else ""
        print(f"    - {x.user} at seq {x.seq}{cond}{gone}")
        if getattr(x, "comment", ""):  # issue #12: the approver's words travel with the order
            print(f"      comment: {x.comment}")


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
    _print_approvals(r.approvals)
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


EXEC_HEADERS = ["SEQ", "RECORDED", "KIND", "SITE", "LOT", "QUANTITY", "TO", "ON LOAN"]


def _exec_rows(executions: list[Any]) -> list[list[Any]]:
    return [
        [
            e["seq"],
            e["recorded_at"],
            e["kind"],
            e["site"],
            e["lot"],
            format_quantity(e["quantity"]),
            e["counterparty"],
            "-"
            if e["loan_outstanding"] is None
            else format_quantity(e["loan_outstanding"]) + (" OVERDUE" if e["overdue"] else ""),
        ]
        for e in executions
    ]


def _report(b: Backend, order_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = b.read(f"/releases/orders/{quote(order_id, safe='')}/report")
    return doc


def show(b: Backend, a: argparse.Namespace) -> int:
    ref = b.entry_ref(a.ref, kinds=REQUEST + ORDER)
    req = _open_request(b, ref)
    if req is not None:
        return emit(a.format, doc=req, headers=["ID", "STATUS"], rows=[[req["id"], req["status"]]],
                    text=lambda: _print_request(_ns(req)))
    prefix = ""
    try:
        rep = _report(b, ref)
    except NotFound:
        ordered = [o for o in b.read("/releases/orders")["orders"] if o["request"] == ref]
        if not ordered:
            raise NotFound(f"no open request and no order '{a.ref}'") from None
        prefix = f"request {ref} was ordered at seq {ordered[0]['seq']}:"
        rep = _report(b, ordered[0]["id"])
    rows = _exec_rows(rep.get("executions", []))

    def text() -> None:
        if prefix:
            print(prefix)
        _print_order(_ns(rep["order"]))
        approvals = _ns(rep.get("approvals", []))
        print(f"  approvals ({len(approvals)}, quorum {rep.get('quorum', '-')}):")
        _print_approvals(approvals)
        if rows:
            print()
            print_table(EXEC_HEADERS, rows)

    return emit(a.format, doc=rep, headers=EXEC_HEADERS, rows=rows, text=text)


REF_HELP = "seq, entry id or id prefix (8+ characters)"
ORDER_HEADERS = ["ORDER", "SEQ", "OWNER", "MATERIAL", "REGIME", "CAP", "REMAINING", "UNTIL", "STATUS"]


def list_all(b: Backend, a: argparse.Namespace) -> int:
    owners = set(csv_list(a.owner))
    reqs = [r for r in b.read("/releases/requests", owner=a.owner)["requests"] if not owners or r["owner"] in owners]
    orders = [
        o
        for o in b.read("/releases/orders", owner=a.owner)["orders"]
        if (not owners or o["owner"] in owners) and (a.all or o["status"] in ("in force", "not yet valid"))
    ]
    rows = [
        [o["id"][:12], o["seq"], o["owner"], o["material"], o["regime"], format_quantity(o["cap"]),
         format_quantity(o["remaining"]), o["valid_until"], o["status"]]
        for o in orders
    ]

    def text() -> None:
        print(f"open requests: {len(reqs)}")
        for r in reqs:
            _print_request(_ns(r))
        print()
        print("orders" + ("" if a.all else " that can still be executed") + f": {len(orders)}")
        print_table(ORDER_HEADERS, rows)

    return emit(a.format, doc={"requests": reqs, "orders": orders}, headers=ORDER_HEADERS, rows=rows, text=text)


def report(b: Backend, a: argparse.Namespace) -> int:
    """The order's report to parliament (issue #12: a table, JSON, CSV of the
    executions, or a page to hand on: Markdown or HTML, tonnes, site codes only)."""
    from cli import report_pages as pages

    rep = _report(b, b.entry_ref(a.order, kinds=REQUEST + ORDER))
    if a.format in ("md", "html"):
        print(pages.order_page(rep, a.format), end="")
        return 0

    def text() -> None:
        for line in pages.order_summary(rep):
            print(line)
        print()
        print_table(pages.APPROVAL_HEADERS, pages.approval_rows(rep))
        print()
        print_table(pages.EXEC_HEADERS, pages.execution_rows(rep))

    return emit(a.format, doc=rep, headers=pages.EXEC_HEADERS, rows=pages.execution_rows(rep), text=text)


POLICY_HEADERS = ["OWNER", "MATERIAL", "FROM", "QUORUM", "REGIMES", "CRISIS", "TOLERANCE", "STATE"]


def list_policies(b: Backend, a: argparse.Namespace) -> int:
    owners = set(csv_list(a.owner))
    doc = b.read("/registry/policies", owner=a.owner)
    pols = [p for p in doc["policies"] if not owners or p["owner"] in owners]
    return emit(
        a.format,
        doc={"policies": pols},
        headers=POLICY_HEADERS,
        rows=[
            [
                p["owner"],
                p["material"],
                p["effective_at"],
                p["quorum"],
                ",".join(p["regimes"]) or "-",
                f"{p['crisis_index']} >= {p['crisis_threshold']} {p['crisis_currency']}",
                p["count_tolerance_pct"] + "%",
                "in force" if p["in_force"] else "to come",
            ]
            for p in pols
        ],
    )


# -- wiring -------------------------------------------------------------------------------


def register(sub: Any, *, wrap: Any) -> None:
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
        sp.set_defaults(fn=wrap(fn))
        return sp

    sp = acting(
        "policy",
        policy_set,
        "set the release policy of an owner and material from a future time "
        "(security admin, co-signed by a minister of the owner)",
    )
    sp.add_argument(
        "--cosign",
        metavar="MINISTER",
        required=True,
        help="the co-signing minister: in client mode a proposal they sign with their own key",
    )
    for opt in ("--owner", "--material", "--crisis-index", "--crisis-threshold"):
        sp.add_argument(opt, required=True)
    sp.add_argument("--crisis-currency", required=True, help="ISO 4217, e.g. USD")
    sp.add_argument("--quorum", type=int, required=True, help="approvals needed before an order")
    add_field_flag(sp, "count_tolerance_pct", default="0.5", help="percent (default 0.5)")
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
    add_field_flag(sp, "quantity", required=True)
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
    sp.add_argument("request", help=REF_HELP + " of the request")
    sp.add_argument("--cap", help="condition: at most this quantity")
    sp.add_argument("--comment")

    sp = acting("order", order, "order an approved request (minister of the owner)")
    sp.add_argument("request", help=REF_HELP + " of the request")
    sp.add_argument("--cap", required=True, help="at most this quantity")
    sp.add_argument("--valid-from", help="RFC 3339 UTC (default now)")
    sp.add_argument("--valid-until", required=True, help="RFC 3339 UTC")
    sp.add_argument("--sites", required=True, help="comma-separated eligible site codes")
    sp.add_argument("--report-to", required=True, help="the parliament or committee to inform")
    sp.add_argument("--regime", choices=REGIMES, help="default: the request's")
    sp.add_argument("--confirm-override", action="store_true")

    sp = acting("revoke", revoke, "revoke an order (minister of the owner)")
    sp.add_argument("order", help=REF_HELP + " of the order")
    sp.add_argument("--reason", required=True)

    sp = add_format(g.add_parser("show", help="a request still open, or an order with its executions"))
    sp.add_argument("ref", help=REF_HELP + " of the request or the order")
    sp.set_defaults(fn=wrap(show))
    sp = add_format(g.add_parser("list", help="open requests and what they need; orders and their cap"))
    sp.add_argument("--owner", help="comma-separated owner codes")
    sp.add_argument("--all", action="store_true", help="also expired, revoked, used-up orders")
    sp.set_defaults(fn=wrap(list_all))
    sp = add_page_format(g.add_parser("report", help="an order's report to parliament (site codes only)"))
    sp.add_argument("order", help=REF_HELP + " of the order or its request")
    sp.set_defaults(fn=wrap(report))
    sp = add_format(g.add_parser("policies", help="policies in force and to come"))
    sp.add_argument("--owner")
    sp.set_defaults(fn=wrap(list_policies))
