"""What waits for someone (issue #12): transfers on their way to an operator's sites,
and the orders an operator may execute there.

Scope is the caller's (:func:`ledger.policy.stock_scope`): operators by their sites,
officials and ministers by their owners, auditors everything; ``None`` as the principal
is the server's administrators in local mode (everything). A transfer or order outside
the scope is left out of the query's answer, never fetched and filtered later where it
could be avoided. Which orders can still be executed is the rules' own function
(:func:`ledger.rules.release.executable_at`), not re-derived here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, false, or_

from ledger.errors import Forbidden
from ledger.policy import Principal, stock_scope
from ledger.store.releases import order_records
from ledger.store.reports import TransferRow, transfers_where
from ledger.store.schema import transfers
from ledger.timefmt import format_time, parse_time
from ledger.views import quantities_out


@dataclass(frozen=True, slots=True)
class InboxOrder:
    """An order seen from the sites that execute it."""

    id: str
    seq: int
    owner: str
    material: str
    regime: str
    recipient: str
    cap: int
    remaining: int
    valid_from: str
    valid_until: str
    sites: tuple[str, ...]  # every eligible site of the order
    executable_at: tuple[str, ...]  # of those, the caller's where it may be executed now


def _operator_sites(p: Principal | None, what: str) -> frozenset[str] | None:
    scope = stock_scope(p) if p is not None else None
    if scope is None:
        return None
    if not scope.sites:
        raise Forbidden(f"{what} is an operator's inbox: it lists what concerns your sites")
    return scope.sites


def transfers_for(conn: Connection, p: Principal | None, *, inbound: bool = False) -> list[TransferRow]:
    """Transfers dispatched and not yet arrived that the caller may see, oldest first;
    ``inbound``: only those on their way to the caller's sites."""
    conds: list[ColumnElement[bool]] = []
    if inbound:
        sites = _operator_sites(p, "--inbound")
        if sites is not None:
            conds.append(transfers.c.to_site.in_(sorted(sites)))
    elif p is not None:
        scope = stock_scope(p)
        if scope is not None:
            either: list[ColumnElement[bool]] = []
            if scope.sites:
                either += [transfers.c.from_site.in_(sorted(scope.sites)), transfers.c.to_site.in_(sorted(scope.sites))]
            if scope.owners:
                either.append(transfers.c.owner.in_(sorted(scope.owners)))
            conds.append(or_(*either) if either else false())
    return transfers_where(conn, *conds)


def orders_for(conn: Connection, p: Principal | None, *, at: str, executable: bool = False) -> list[InboxOrder]:
    """Orders the caller may see, newest first: operators those naming one of their
    sites, officials and ministers their owners'; ``executable``: only those that may be
    executed at ``at`` (at one of the operator's sites, for an operator)."""
    # The rule book is loaded through the reducer (rules modules import each other).
    from ledger.reducer import apply  # noqa: F401
    from ledger.rules.release import executable_at

    now = format_time(parse_time(at, field="at"))
    scope = stock_scope(p) if p is not None else None
    # Without sites the scope is the owners'; an operator's is filtered below by site.
    owners = sorted(scope.owners) if scope is not None and not scope.sites else None
    out: list[InboxOrder] = []
    for o in order_records(conn, owners=owners):
        mine: frozenset[str] | None = None
        if scope is not None and scope.sites:
            # An operator (perhaps also an official): their sites, or their owners' orders.
            if not (set(o.sites) & scope.sites or o.owner in scope.owners):
                continue
            mine = scope.sites
        where = executable_at(o, now, sites=mine)
        if executable and not where:
            continue
        out.append(
            InboxOrder(
                id=o.id,
                seq=o.seq,
                owner=o.owner,
                material=o.material,
                regime=o.regime,
                recipient=o.recipient,
                cap=o.cap,
                remaining=o.remaining,
                valid_from=o.valid_from,
                valid_until=o.valid_until,
                sites=tuple(o.sites),
                executable_at=where,
            )
        )
    return out




# -- JSON shapes (one for the API and the local CLI) ------------------------------------


def transfer_view(r: TransferRow) -> dict[str, Any]:
    # Display quantities beside the grams in the read models' one shape (ledger.views).
    return dict(quantities_out({
        "id": r.id,
        "owner": r.owner,
        "lot": r.lot,
        "material": r.material,
        "from_site": r.from_site,
        "to_site": r.to_site,
        "quantity_g": r.quantity,
        "dispatched_seq": r.dispatched_seq,
        "dispatched_at": r.dispatched_at,
    }))


def order_view(o: InboxOrder) -> dict[str, Any]:
    return dict(quantities_out({
        "id": o.id,
        "seq": o.seq,
        "owner": o.owner,
        "material": o.material,
        "regime": o.regime,
        "recipient": o.recipient,
        "cap_g": o.cap,
        "remaining_g": o.remaining,
        "valid_from": o.valid_from,
        "valid_until": o.valid_until,
        "sites": list(o.sites),
        "executable_at": list(o.executable_at),
    }))


__all__ = ["InboxOrder", "order_view", "orders_for", "transfer_view", "transfers_for"]
