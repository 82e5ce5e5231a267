"""Reading the registries a client needs (issue #9): owners, materials, lots, keys and
users, policies, open loans, and the entry id behind a seq. No rules here: rows come from
``ledger`` projections, shapes from ``ledger.views``, scope from ``ledger.policy``, the
same as the other reads (``api/routes/reads.py``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Path
from sqlalchemy import select

from api.deps import principal, roles, services
from api.routes.reads import STOCK_READERS, _jsonable
from api.services import Services
from ledger import policy, views
from ledger.errors import NotFound
from ledger.policy import ADMIN, AUDITOR, MINISTER, OFFICIAL, Principal
from ledger.store import releases
from ledger.store.projections import read_keys, read_table
from ledger.store.schema import entries
from ledger.timefmt import now

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
    return {"policies": [_jsonable(asdict(r)) for r in rows]}


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


@router.get("/refs/{seq}", **roles(*policy.ALL_ROLES))
def entry_ref(seq: int = Path(ge=0, le=2**53), svc: Services = Depends(services)) -> dict[str, Any]:
    """The entry id at a seq (what the CLI prints), so a client can name an entry by seq.
    Only the opaque id: what the entry says stays behind the scoped reads."""
    with svc.reader.connect() as conn:
        found = conn.execute(select(entries.c.entry_id).where(entries.c.seq == seq)).first()
    if found is None:
        raise NotFound(f"no entry at seq {seq}")
    return {"seq": seq, "entry_id": str(found.entry_id)}
