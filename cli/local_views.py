"""The read routes of the API, answered from the local database (``LocalBackend``).

Same paths, parameters and JSON shapes as ``api/routes/*`` so every read command renders
one document whichever backend read it. Local mode is the server's administrators': no
scope filter (the API applies the caller's scope); virtual accounts are listed too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection

from ledger import views
from ledger.errors import NotFound
from ledger.policy import Principal
from ledger.refs import resolve_entry
from ledger.store import inbox, releases, reports
from ledger.store.projections import read_keys, read_table
from ledger.timefmt import now
from ledger.units import format_quantity
from ledger.views import jsonable


def _owners(q: dict[str, Any]) -> list[str] | None:
    raw = q.get("owner")
    return [o.strip() for o in str(raw).split(",") if o.strip()] or None if raw else None


def _sorted(conn: Connection, table: str) -> list[Any]:
    return sorted(read_table(conn, table).values(), key=lambda r: r.code)


def _sites(conn: Connection, q: dict[str, Any]) -> Any:
    return {
        "sites": [
            {
                "code": s.code,
                "classification": s.classification,
                "custodian": s.custodian,
                "owners": list(s.owners),
                "location_commitment": s.location_commitment,
                "commitment_seq": s.commitment_seq,
                "last_count_at": s.last_count_at,
            }
            for s in _sorted(conn, "sites")
        ]
    }


def _balances(conn: Connection, q: dict[str, Any]) -> Any:
    # One rule for the CLI and the API: a seq past the end or a time before the genesis
    # is refused, not answered with something else (issue #8 item 10).
    seq = reports.resolve_as_of(conn, as_of_seq=q.get("as_of_seq"), as_of=q.get("as_of"))
    rows = reports.balances(
        conn, owner=q.get("owner"), site=q.get("site"), material=q.get("material"), lot=q.get("lot"), as_of_seq=seq
    )
    return {
        "as_of_seq": seq,
        "balances": [
            {
                "owner": r.owner,
                "site": r.site,
                "account": r.account,
                "material": r.material,
                "lot": r.lot,
                "quantity_g": r.quantity,
                "quantity": format_quantity(r.quantity),
            }
            for r in rows
        ],
    }


def _trace(conn: Connection, q: dict[str, Any], lot: str) -> Any:
    t = reports.trace_lot(conn, lot)
    return {
        "lot": t.lot,
        "material": t.material,
        "balanced": t.balanced,
        "held_g": t.held,
        "legs": [
            {
                "seq": leg.seq,
                "recorded_at": leg.recorded_at,
                "kind": leg.kind,
                "account": leg.account,
                "delta_g": leg.delta,
                "balance_after_g": leg.balance_after,
            }
            for leg in t.legs
        ],
        "distribution": [{"account": d.account, "quantity_g": d.quantity} for d in t.distribution],
    }


def _cover(conn: Connection, q: dict[str, Any]) -> Any:
    rows = reports.cover(conn, owners=_owners(q), at=q.get("at") or now())
    return {"cover": [jsonable(asdict(r)) for r in rows]}


def _crma(conn: Connection, q: dict[str, Any]) -> Any:
    rep = reports.crma_report(conn, owners=_owners(q), year=int(q["year"]) if q.get("year") is not None else int(now()[:4]))
    return jsonable(asdict(rep))


def _overdue(conn: Connection, q: dict[str, Any]) -> Any:
    return {"loans": [jsonable(asdict(r)) for r in reports.overdue_loans(conn, now=now())]}


def _loans(conn: Connection, q: dict[str, Any]) -> Any:
    rows = sorted(read_table(conn, "loans").values(), key=lambda r: r.lent_seq)
    return {"loans": [views.loan_view(r) for r in rows]}


def _keys(conn: Connection, q: dict[str, Any]) -> Any:
    recs = sorted(read_keys(conn).values(), key=lambda k: (k.user, k.registered_seq))
    return {"keys": [views.key_view(k) for k in recs]}


def _users(conn: Connection, q: dict[str, Any]) -> Any:
    return {"users": views.users_view(k for k in read_keys(conn).values() if k.user != "log")}


def _policies(conn: Connection, q: dict[str, Any]) -> Any:
    rows = releases.list_policies(conn, owners=_owners(q), at=now())
    return {"policies": [jsonable(asdict(r)) for r in rows]}


def _requests(conn: Connection, q: dict[str, Any]) -> Any:
    return {"requests": [jsonable(asdict(v)) for v in releases.open_requests(conn, owners=_owners(q), at=now())]}


def _orders(conn: Connection, q: dict[str, Any]) -> Any:
    return {"orders": [jsonable(asdict(v)) for v in releases.list_orders(conn, owners=_owners(q), at=now())]}


def _report(conn: Connection, q: dict[str, Any], order: str) -> Any:
    oid = releases.resolve_order(conn, order, owners=None, at=now())
    return jsonable(asdict(releases.order_report(conn, oid, owners=None, at=now())))


def _ref(conn: Connection, q: dict[str, Any], ref: str) -> Any:
    kinds = str(q["kind"]).split(",") if q.get("kind") else None
    found = resolve_entry(conn, ref, kinds=kinds, field="ref")
    return {"seq": found.seq, "entry_id": found.entry_id, "kind": found.kind}


def _principal(conn: Connection, q: dict[str, Any]) -> Principal | None:
    """Local mode: the scope of the user named by ``--as`` (else everything)."""
    user = q.get("as_user")
    return Principal.from_keys(str(user), read_keys(conn).values()) if user else None


def _transfers(conn: Connection, q: dict[str, Any]) -> Any:
    rows = inbox.transfers_for(conn, _principal(conn, q), inbound=str(q.get("inbound")) == "true")
    return {"transfers": [inbox.transfer_view(r) for r in rows]}


def _inbox_orders(conn: Connection, q: dict[str, Any]) -> Any:
    p = _principal(conn, q)
    rows = inbox.orders_for(conn, p, at=now(), executable=str(q.get("executable")) == "true")
    return {"orders": [inbox.order_view(o) for o in rows]}


ROUTES: dict[str, Callable[[Connection, dict[str, Any]], Any]] = {
    "/transfers": _transfers,
    "/orders": _inbox_orders,
    "/sites": _sites,
    "/balances": _balances,
    "/cover": _cover,
    "/reports/crma": _crma,
    "/loans/overdue": _overdue,
    "/registry/owners": lambda c, q: {"owners": [views.owner_view(r) for r in _sorted(c, "owners")]},
    "/registry/materials": lambda c, q: {"materials": [views.material_view(r) for r in _sorted(c, "materials")]},
    "/registry/lots": lambda c, q: {"lots": [views.lot_view(r) for r in _sorted(c, "lots")]},
    "/registry/keys": _keys,
    "/registry/users": _users,
    "/registry/policies": _policies,
    "/registry/loans": _loans,
    "/releases/requests": _requests,
    "/releases/orders": _orders,
}
PATTERNS: list[tuple[re.Pattern[str], Callable[[Connection, dict[str, Any], str], Any]]] = [
    (re.compile(r"/lots/([^/]+)/trace"), _trace),
    (re.compile(r"/releases/orders/([^/]+)/report"), _report),
    (re.compile(r"/registry/refs/([^/]+)"), _ref),
]


def read(conn: Connection, path: str, params: dict[str, Any]) -> Any:
    """The document the service answers for ``path``, quantities in the same shape
    (``ledger.views.quantities_out``, issue #12)."""
    fn = ROUTES.get(path)
    if fn is not None:
        return views.quantities_out(fn(conn, params))
    for pattern, view in PATTERNS:
        m = pattern.fullmatch(path)
        if m:
            return views.quantities_out(view(conn, params, m.group(1)))
    raise NotFound(f"'{path}' is read from the service (client mode: RESERVE_URL)")
