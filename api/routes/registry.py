"""Reading the registries a client needs (issue #9): owners, materials, lots, keys and
users, policies, open loans, and the entry id behind a seq. No rules here: rows come from
``ledger`` projections, shapes from ``ledger.views``, scope from ``ledger.policy``, the
same as the other reads (``api/routes/reads.py``)."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from api.deps import principal, roles, services
from api.params import RefPath
from api.routes.reads import STOCK_READERS
from api.services import Services
from ledger import policy, refs, views
from ledger.errors import InvalidQuery
from ledger.policy import ADMIN, AUDITOR, MINISTER, OFFICIAL, Principal
from ledger.store import releases
from ledger.store.projections import read_keys, read_table
from ledger.timefmt import now

_KIND = re.compile(r"[a-z][a-z_]{0,30}(\.[a-z][a-z_]{0,30})?")
router = APIRouter(prefix="/registry", tags=["registry"])
KEY_READERS = (ADMIN, AUDITOR)
POLICY_READERS = (OFFICIAL, MINISTER, AUDITOR)


@router.get("/owners", **roles(*policy.ALL_ROLES))
def owners(svc: Services = Depends(services)) -> dict[str, Any]:
    """Owners of stock (reference data, public to every role)."""
    with svc.reader.connect() as conn:
        rows = read_table(conn, "owners").values()
    return {"owners": [views.owner_view(r) for r in sorted(rows, key=lambda r: r.code)]}


@router.get("/materials", **roles(*policy.ALL_ROLES))
def materials(svc: Services = Depends(services)) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        rows = read_table(conn, "materials").values()
    return {"materials": [views.material_view(r) for r in sorted(rows, key=lambda r: r.code)]}


@router.get("/lots", **roles(*policy.ALL_ROLES))
def lots(svc: Services = Depends(services)) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        rows = read_table(conn, "lots").values()
    return {"lots": [views.quantities_out(views.lot_view(r)) for r in sorted(rows, key=lambda r: r.code)]}


@router.get("/keys", **roles(*KEY_READERS))
def keys(svc: Services = Depends(services)) -> dict[str, Any]:
    """Registered keys (public halves and scopes): security admins and auditors."""
    with svc.reader.connect() as conn:
        recs = sorted(read_keys(conn).values(), key=lambda k: (k.user, k.registered_seq))
    return {"keys": [views.key_view(k) for k in recs]}


@router.get("/users", **roles(*KEY_READERS))
def users(svc: Services = Depends(services)) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        recs = [k for k in read_keys(conn).values() if k.user != "log"]
    return {"users": views.users_view(recs)}


@router.get("/policies", **roles(*POLICY_READERS))
def policies(p: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Release policies in force and to come, for the owners in your scope."""
    owners = policy.owner_scope(p)
    with svc.reader.connect() as conn:
        rows = releases.list_policies(conn, owners=sorted(owners) if owners is not None else None, at=now())
    return {"policies": [views.jsonable(asdict(r)) for r in rows]}


@router.get("/loans", **roles(*STOCK_READERS))
def loans(p: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Open loans whose holding you can see."""
    policy.require_stock_reader(p)
    with svc.reader.connect() as conn:
        rows = sorted(read_table(conn, "loans").values(), key=lambda r: r.lent_seq)
    return {
        "loans": [
            views.quantities_out(views.loan_view(r)) for r in rows if policy.holding_visible(p, r.owner, r.site)
        ]
    }


@router.get("/refs/{ref}", **roles(*policy.ALL_ROLES))
def entry_ref(
    ref: RefPath,
    kind: Annotated[
        str | None,
        Query(
            max_length=200,
            description="comma-separated entry kinds the reference must name (e.g. release.ordered)",
        ),
    ] = None,
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The entry a reference names (a seq, an id, or a unique id prefix of at least 8
    characters; issue #12), so a client can name an entry the way people type it. Only
    the opaque id, seq and kind: what the entry says stays behind the scoped reads."""
    kinds = kind.split(",") if kind else None
    if kinds and not all(_KIND.fullmatch(k) for k in kinds):
        raise InvalidQuery("kind: comma-separated entry kinds such as release.ordered", field="kind")
    with svc.reader.connect() as conn:
        found = refs.resolve_entry(conn, ref, kinds=kinds, field="ref")
    return {"seq": found.seq, "entry_id": found.entry_id, "kind": found.kind}


@router.get("/keys/{ref}", **roles(*policy.ALL_ROLES))
def key_ref(
    ref: Annotated[str, Path(max_length=64, description="key id, id prefix or user name")],
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """A key named by its id, an id prefix, or its user's name where the user has one
    active key (issue #12). Security admins and auditors may name any key, everyone else
    only their own (the keys they may revoke)."""
    with svc.reader.connect() as conn:
        recs = [k for k in read_keys(conn).values() if k.user != "log"]
    if not any(r in KEY_READERS for r in p.roles):
        recs = [k for k in recs if k.user == p.user]
    return dict(views.key_view(refs.match_key(recs, ref, field="ref")))
