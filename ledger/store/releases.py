"""Reads of release authorisation (issue #5) for the API and the CLI.

Every function takes a :class:`~sqlalchemy.Connection` and returns typed, frozen
dataclasses; nothing here writes. They read the projections the reducer maintains
(``policies``, ``prices``, ``release_requests``, ``release_orders``, ``loans``,
``keys``), which the verifier recomputes from the signed history, so every figure here
(what a request still needs, an order's remaining cap, the report to parliament) is one
an auditor can reproduce from the log alone.

Scoping: ``owners`` is the caller's owner scope (``None`` = every owner, ``[]`` =
none). A request or order of an owner outside the scope is answered exactly like one
that does not exist. Sites are named by code only; no location is ever read here.

``at`` is the time the answer is for (RFC 3339 UTC, normally now): whether a request has
lapsed, an order is in force or has expired, a loan is overdue, which policy is in
force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, Table, false, select

# The rule book loads through the reducer (its rules modules import each other).
import ledger.reducer  # noqa: F401
from ledger.errors import NotFound
from ledger.records import LoanRec, OrderRec, PolicyRec, PolicyVersion, PriceRec, RequestRec
from ledger.rules.release import order_status
from ledger.state import KeyRecord
from ledger.store import projections
from ledger.store.schema import entries, keys, loans, log_state, policies, prices
from ledger.store.schema import release_orders as orders_t
from ledger.store.schema import release_requests as requests_t
from ledger.timefmt import format_time, parse_time

REGIME_WORDS = {
    "emergency_release": "emergency release",
    "price_spike_sale": "sale during a price spike",
    "ordinary_sale": "ordinary sale",
    "loan": "loan",
}

# -- results ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyView:
    owner: str
    material: str
    effective_at: str
    seq: int
    quorum: int
    crisis_index: str
    crisis_currency: str
    crisis_threshold: str
    count_tolerance_pct: str
    regimes: tuple[str, ...]
    admin: str
    minister: str
    in_force: bool  # False: set, but not in force yet


@dataclass(frozen=True, slots=True)
class PriceView:
    index: str
    material: str
    currency: str
    value: str
    observed_at: str
    source: str
    seq: int
    entry_id: str


@dataclass(frozen=True, slots=True)
class ApprovalView:
    user: str
    seq: int
    recorded_at: str
    cap: int | None  # the approval's condition, if any
    counts: bool  # False once the approving key is revoked (before the order)
    note: str  # why it does not count, else ""
    comment: str = ""  # the approver's own words, from the signed entry (issue #12)


@dataclass(frozen=True, slots=True)
class RequestView:
    id: str
    seq: int
    recorded_at: str
    lapses_at: str
    requester: str
    owner: str
    material: str
    quantity: int
    recipient: str
    regime: str
    purpose: str
    declaration: str
    evidence_type: str
    evidence: str
    evidence_detail: str
    approvals: tuple[ApprovalView, ...]
    quorum: int | None  # of the policy in force at ``at`` (None: no policy opens the regime)
    status: str  # "open" or "lapsed"
    needs: tuple[str, ...]  # what must still happen, in words; () never for an open request


@dataclass(frozen=True, slots=True)
class ExecutionView:
    seq: int
    entry_id: str
    recorded_at: str
    occurred_at: str
    kind: str
    site: str  # code only
    lot: str
    quantity: int
    counterparty: str
    loan_outstanding: int | None  # loans only: what has not come back (0: returned)
    loan_due_at: str | None
    overdue: bool


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    seq: int
    recorded_at: str
    minister: str
    request: str
    owner: str
    material: str
    regime: str
    recipient: str
    cap: int
    executed: int
    remaining: int
    valid_from: str
    valid_until: str
    sites: tuple[str, ...]
    report_to: str
    status: str  # "not yet valid", "in force", "exhausted", "expired" or "revoked"
    revoked_seq: int | None
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None


@dataclass(frozen=True, slots=True)
class OrderReport:
    """What the reporting obligation of an order reports to ``report_to``: the chain of
    authority and everything executed under it, by site code only."""

    report_to: str
    generated_at: str
    as_of_seq: int
    order: OrderView
    requested_at: str
    requester: str
    quantity_requested: int
    purpose: str
    declaration: str
    evidence_type: str
    evidence: str
    evidence_detail: str
    approvals: tuple[ApprovalView, ...]
    quorum: int
    policy_seq: int
    executions: tuple[ExecutionView, ...]
    on_loan: int  # grams lent under the order and not back yet
    overdue: tuple[ExecutionView, ...]  # loans past their due date, not fully back


# -- helpers ----------------------------------------------------------------------------


def _scoped(q: Any, table: Table, owners: Sequence[str] | None) -> Any:
    if owners is None:
        return q
    return q.where(table.c.owner.in_(list(owners)) if owners else false())


def _keys(conn: Connection, ids: set[str]) -> dict[str, KeyRecord]:
    if not ids:
        return {}
    rows = conn.execute(select(keys).where(keys.c.key_id.in_(sorted(ids))))
    return {r.key_id: projections._key_record(r) for r in rows}


def _records(conn: Connection, name: str, q: Any) -> list[Any]:
    spec = projections.SPECS[name]
    return [projections.from_row(spec, r)[1] for r in conn.execute(q)]


def _norm(at: str) -> str:
    return format_time(parse_time(at, field="at"))


def _policy(conn: Connection, owner: str, material: str, at: str) -> PolicyVersion | None:
    q = select(policies).where(policies.c.owner == owner, policies.c.material == material)
    recs: list[PolicyRec] = _records(conn, "policies", q)
    return recs[0].in_force(at) if recs else None


def _comments(conn: Connection, seqs: Sequence[int]) -> dict[int, str]:
    """Approval comments, read from the signed entries themselves (one query by primary
    key): the projection keeps only what the rules need, the words are in the log."""
    if not seqs:
        return {}
    rows = conn.execute(select(entries.c.seq, entries.c.leaf).where(entries.c.seq.in_(sorted(set(seqs)))))
    out: dict[int, str] = {}
    for r in rows:
        comment = orjson.loads(bytes(r.leaf)).get("entry", {}).get("comment")
        if isinstance(comment, str) and comment:
            out[int(r.seq)] = comment
    return out


def _approvals(
    conn: Connection,
    approvals: tuple[tuple[str, str, int, str, int | None], ...],
    key_recs: dict[str, KeyRecord],
    *,
    before_seq: int | None = None,
) -> tuple[ApprovalView, ...]:
    """``before_seq``: an order's seq (a key revoked after it did not matter)."""
    comments = _comments(conn, [int(a[2]) for a in approvals])
    out = []
    for user, kid, seq, at, cap in approvals:
        k = key_recs.get(kid)
        revoked = k is None or (
            k.revoked_seq is not None and (before_seq is None or k.revoked_seq < before_seq)
        )
        note = ""
        if revoked:
            note = f"key revoked at seq {k.revoked_seq}" if k is not None else "key unknown"
        out.append(ApprovalView(user, int(seq), at, cap, not revoked, note, comments.get(int(seq), "")))
    return tuple(out)


def _head_seq(conn: Connection) -> int:
    row = conn.execute(select(log_state.c.size)).first()
    return int(row.size) - 1 if row else -1


# -- policies and prices ------------------------------------------------------------------


def list_policies(conn: Connection, *, owners: Sequence[str] | None, at: str) -> list[PolicyView]:
    """Per owner and material: the policy in force at ``at`` and those set to come."""
    now = _norm(at)
    out: list[PolicyView] = []
    for rec in _records(conn, "policies", _scoped(select(policies), policies, owners)):
        current = rec.in_force(now)
        shown = ([current] if current is not None else []) + rec.upcoming(now)
        for v in shown:
            out.append(
                PolicyView(
                    owner=rec.owner,
                    material=rec.material,
                    effective_at=v.effective_at,
                    seq=v.seq,
                    quorum=v.quorum,
                    crisis_index=v.crisis_index,
                    crisis_currency=v.crisis_currency,
                    crisis_threshold=v.crisis_threshold,
                    count_tolerance_pct=v.count_tolerance_pct,
                    regimes=tuple(v.regimes),
                    admin=v.admin,
                    minister=v.minister,
                    in_force=v is current,
                )
            )
    out.sort(key=lambda p: (p.owner, p.material, p.effective_at, p.seq))
    return out


def latest_prices(conn: Connection, *, material: str | None = None) -> list[PriceView]:
    q = select(prices)
    if material is not None:
        q = q.where(prices.c.material == material)
    recs: list[PriceRec] = _records(conn, "prices", q)
    return sorted(
        (
            PriceView(
                r.price_index,
                r.material,
                r.currency,
                r.value,
                r.observed_at,
                r.source,
                r.seq,
                r.entry_id,
            )
            for r in recs
        ),
        key=lambda p: (p.material, p.index, p.currency),
    )


# -- requests ---------------------------------------------------------------------------


def _request_view(conn: Connection, req: RequestRec, at: str) -> RequestView:
    key_recs = _keys(conn, {a[1] for a in req.approvals})
    approvals = _approvals(conn, req.approvals, key_recs)
    lapsed = at > req.lapses_at
    policy = _policy(conn, req.owner, req.material, at)
    quorum = policy.quorum if policy is not None and req.regime in policy.regimes else None
    needs: list[str] = []
    if lapsed:
        needs.append(f"nothing more: the request lapsed at {req.lapses_at}; make a new request")
    elif quorum is None:
        needs.append(
            f"a release policy in force for {req.owner} {req.material} that opens the "
            f"{REGIME_WORDS[req.regime]} regime (none does now)"
        )
    else:
        counted = sum(1 for a in approvals if a.counts)
        if counted < quorum:
            others = sorted({req.requester, *(a.user for a in approvals)})
            needs.append(
                f"{quorum - counted} more approval(s) by officials of {req.owner} "
                f"(quorum {quorum}; not {', '.join(others)})"
            )
        who = sorted({req.requester, *(a.user for a in approvals)})
        order = (
            f"an order by a minister of {req.owner} other than {', '.join(who)}, "
            f"before {req.lapses_at}"
        )
        if req.evidence_type == "override":
            order += ", confirming the emergency override"
        needs.append(order)
    return RequestView(
        id=req.id,
        seq=req.seq,
        recorded_at=req.recorded_at,
        lapses_at=req.lapses_at,
        requester=req.requester,
        owner=req.owner,
        material=req.material,
        quantity=req.quantity,
        recipient=req.recipient,
        regime=req.regime,
        purpose=req.purpose,
        declaration=req.declaration,
        evidence_type=req.evidence_type,
        evidence=req.evidence,
        evidence_detail=req.evidence_detail,
        approvals=approvals,
        quorum=quorum,
        status="lapsed" if lapsed else "open",
        needs=tuple(needs),
    )


def open_requests(
    conn: Connection,
    *,
    owners: Sequence[str] | None,
    at: str,
    include_lapsed: bool = False,
) -> list[RequestView]:
    """Requests not yet ordered, oldest first, with their approvals so far and what each
    still needs."""
    now = _norm(at)
    q = _scoped(select(requests_t), requests_t, owners).order_by(requests_t.c.seq)
    views = [_request_view(conn, r, now) for r in _records(conn, "release_requests", q)]
    return [v for v in views if include_lapsed or v.status == "open"]


def get_request(
    conn: Connection, request_id: str, *, owners: Sequence[str] | None, at: str
) -> RequestView:
    """One request not yet ordered (lapsed ones too)."""
    q = _scoped(select(requests_t), requests_t, owners).where(requests_t.c.id == request_id)
    recs = _records(conn, "release_requests", q)
    if not recs:
        raise NotFound(f"no open release request '{request_id}'")
    return _request_view(conn, recs[0], _norm(at))


# -- orders -----------------------------------------------------------------------------


def _order_view(o: OrderRec, at: str) -> OrderView:
    return OrderView(
        id=o.id,
        seq=o.seq,
        recorded_at=o.recorded_at,
        minister=o.minister,
        request=o.request,
        owner=o.owner,
        material=o.material,
        regime=o.regime,
        recipient=o.recipient,
        cap=o.cap,
        executed=o.cap - o.remaining,
        remaining=o.remaining,
        valid_from=o.valid_from,
        valid_until=o.valid_until,
        sites=tuple(o.sites),
        report_to=o.report_to,
        status=order_status(o, at),
        revoked_seq=o.revoked_seq,
        revoked_at=o.revoked_at,
        revoked_by=o.revoked_by,
        revoke_reason=o.revoke_reason,
    )


def _order(conn: Connection, order_id: str, owners: Sequence[str] | None) -> OrderRec:
    q = _scoped(select(orders_t), orders_t, owners).where(orders_t.c.id == order_id)
    recs = _records(conn, "release_orders", q)
    if not recs:
        raise NotFound(f"no release order '{order_id}'")
    rec: OrderRec = recs[0]
    return rec


def order_records(conn: Connection, *, owners: Sequence[str] | None) -> list[OrderRec]:
    """Every order of ``owners`` (``None``: every owner), newest first: the one query
    behind the order list and the operator's inbox (issue #12)."""
    q = _scoped(select(orders_t), orders_t, owners).order_by(orders_t.c.seq.desc())
    return _records(conn, "release_orders", q)


def list_orders(
    conn: Connection, *, owners: Sequence[str] | None, at: str, active_only: bool = False
) -> list[OrderView]:
    """Orders, newest first, with the cap each has left; ``active_only``: only those
    that can still be executed (in force or not yet valid, with cap left)."""
    now = _norm(at)
    views = [_order_view(o, now) for o in order_records(conn, owners=owners)]
    if active_only:
        views = [v for v in views if v.status in ("in force", "not yet valid")]
    return views


def get_order(
    conn: Connection, order_id: str, *, owners: Sequence[str] | None, at: str
) -> OrderView:
    return _order_view(_order(conn, order_id, owners), _norm(at))


def order_of_request(
    conn: Connection, request_id: str, *, owners: Sequence[str] | None, at: str
) -> OrderView:
    """The order that executed a request (a request leaves the open ones when ordered)."""
    q = _scoped(select(orders_t), orders_t, owners).where(orders_t.c.request == request_id)
    recs: list[OrderRec] = _records(conn, "release_orders", q)
    if not recs:
        raise NotFound(f"no release order for request '{request_id}'")
    return _order_view(recs[0], _norm(at))


def resolve_order(
    conn: Connection, ref: str, *, owners: Sequence[str] | None, at: str, field: str = "order"
) -> str:
    """The order id a reference names: the order itself or the request it ordered, by
    seq, id or id prefix (``ledger.refs``; issue #12: ``release report`` accepts both)."""
    from ledger.refs import resolve_entry

    found = resolve_entry(conn, ref, kinds=("release.ordered", "release.requested"), field=field)
    if found.kind == "release.requested":
        return order_of_request(conn, found.entry_id, owners=owners, at=at).id
    return found.entry_id


def order_report(
    conn: Connection, order_id: str, *, owners: Sequence[str] | None, at: str
) -> OrderReport:
    """The report an order's reporting obligation calls for, generated from the history
    (through the projections the verifier recomputes from it): the request, its evidence,
    the approvals, the order, each execution by site code, and loans still out or
    overdue."""
    now = _norm(at)
    o = _order(conn, order_id, owners)
    key_recs = _keys(conn, {a[1] for a in o.approvals})
    loan_ids = [e[1] for e in o.executions if e[4] == "stock.loan_out"]
    open_loans: dict[str, LoanRec] = {}
    if loan_ids:
        q = select(loans).where(loans.c.id.in_(loan_ids))
        open_loans = {r.id: r for r in _records(conn, "loans", q)}
    executions = []
    for seq, entry_id, recorded, occurred, kind, site, lot, qty, counterparty in o.executions:
        outstanding: int | None = None
        due: str | None = None
        overdue = False
        if kind == "stock.loan_out":
            loan = open_loans.get(entry_id)
            outstanding = loan.outstanding if loan is not None else 0
            due = loan.due_at if loan is not None else None
            overdue = loan is not None and parse_time(loan.due_at) < parse_time(now)
        executions.append(
            ExecutionView(
                int(seq),
                entry_id,
                recorded,
                occurred,
                kind,
                site,
                lot,
                int(qty),
                counterparty,
                outstanding,
                due,
                overdue,
            )
        )
    return OrderReport(
        report_to=o.report_to,
        generated_at=now,
        as_of_seq=_head_seq(conn),
        order=_order_view(o, now),
        requested_at=o.requested_at,
        requester=o.requester,
        quantity_requested=o.quantity_requested,
        purpose=o.purpose,
        declaration=o.declaration,
        evidence_type=o.evidence_type,
        evidence=o.evidence,
        evidence_detail=o.evidence_detail,
        approvals=_approvals(conn, o.approvals, key_recs, before_seq=o.seq),
        quorum=o.quorum,
        policy_seq=o.policy_seq,
        executions=tuple(executions),
        on_loan=sum(e.loan_outstanding or 0 for e in executions),
        overdue=tuple(e for e in executions if e.overdue),
    )


__all__ = [
    "ApprovalView",
    "ExecutionView",
    "OrderReport",
    "OrderView",
    "PolicyView",
    "PriceView",
    "RequestView",
    "get_order",
    "get_request",
    "latest_prices",
    "list_orders",
    "list_policies",
    "open_requests",
    "order_of_request",
    "order_records",
    "order_report",
    "resolve_order",
]
