"""Reading stock, sites and reports. Scope filtering is ``ledger.policy``'s; locations
never appear in any response here except the reveal, which is written to the access log
first."""

from __future__ import annotations

import base64
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import metrics
from api.audit import access_event
from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import CodePath, CodeQuery, SeqQuery, TimeQuery, YearQuery
from api.services import Services
from ledger import policy
from ledger.errors import KeystoreError, VerificationFailed
from ledger.policy import AUDITOR, MINISTER, OFFICIAL, OPERATOR, Principal
from ledger.records import SiteRec, split_holding
from ledger.store import reports
from ledger.store.projections import read_table
from ledger.timefmt import now
from ledger.units import format_quantity
from ledger.views import jsonable, quantities_out

router = APIRouter(tags=["reads"], route_class=StrictJSONRoute)
STOCK_READERS = (OPERATOR, OFFICIAL, MINISTER, AUDITOR)
AGGREGATE_READERS = (OFFICIAL, MINISTER, AUDITOR)


def _site_view(s: SiteRec) -> dict[str, Any]:
    return {
        "code": s.code,
        "classification": s.classification,
        "custodian": s.custodian,
        "owners": list(s.owners),
        "location_commitment": s.location_commitment,
        "commitment_seq": s.commitment_seq,
        "last_count_at": s.last_count_at,
    }


@router.get("/sites", **roles(*policy.ALL_ROLES))
def list_sites(
    p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Sites by code; sites outside your scope are silently left out."""
    with svc.reader.connect() as conn:
        sites = read_table(conn, "sites").values()
    return {
        "sites": [
            _site_view(s) for s in sorted(policy.visible_sites(p, sites), key=lambda s: s.code)
        ]
    }


@router.get("/sites/{code}", **roles(*policy.ALL_ROLES))
def get_site(
    code: CodePath, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        site = policy.require_site(p, read_table(conn, "sites").get(code), code)
    return _site_view(site)


class RevealIn(BaseModel):
    purpose: str = Field(
        min_length=10,
        max_length=500,
        description="why you need the location; kept in the access log",
    )


@router.post("/sites/{code}/reveal", **roles(OPERATOR, OFFICIAL, MINISTER))
def reveal_location(
    code: CodePath,
    body: RevealIn,
    request: Request,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """The opening of a site's sealed location (location and salt), for a cleared user in
    scope, who checks it against the signed commitment. The access-log entry is written
    first; if it cannot be, nothing is revealed."""
    with svc.primary_engine.connect() as conn:
        site = policy.require_reveal(p, read_table(conn, "sites").get(code), code)
    access_event(
        svc,
        request,
        action="reveal",
        outcome="granted",
        site=code,
        purpose=body.purpose,
        commitment_seq=site.commitment_seq,
    )
    metrics.REVEALS.inc()
    try:
        opening = svc.ledger.open_site_location(code)
    except VerificationFailed as exc:  # our sealed data disagrees with the signed log: ours
        raise KeystoreError("the sealed location cannot be proven against the log") from exc
    content = {
        "site": code,
        "version": opening.version,
        "commitment": opening.commitment,
        "commitment_seq": site.commitment_seq,
        "salt": base64.b64encode(opening.salt).decode(),
        "location": {
            "name": opening.location.name,
            "address": opening.location.address,
            "latitude": opening.location.latitude,
            "longitude": opening.location.longitude,
            "notes": opening.location.notes,
        },
        "check": "sha256(base64decode(salt) || RFC 8785 JSON of location) == commitment",
    }
    return JSONResponse(content, headers={"Cache-Control": "no-store"})


@router.get("/balances", **roles(*STOCK_READERS))
def balances(
    owner: CodeQuery = None,
    site: CodeQuery = None,
    material: CodeQuery = None,
    lot: CodeQuery = None,
    as_of_seq: SeqQuery | None = None,
    as_of: TimeQuery = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Holdings by owner, site, material and lot, now or as of a past seq (0 to the last
    seq) or time (RFC 3339 UTC, not before the first entry); your scope is part of the
    query, so nothing outside it is read."""
    scope = policy.stock_scope(p)
    # No transaction needed: current balances are one statement, and a past seq's
    # balances are history that never changes (two round trips fewer per request).
    with svc.read_connection() as conn:
        seq = reports.resolve_as_of(conn, as_of_seq=as_of_seq, as_of=as_of)
        rows = reports.balances(
            conn, owner=owner, site=site, material=material, lot=lot, as_of_seq=seq, scope=scope
        )
    # A second line of defence; the query already left out-of-scope rows unread.
    visible = [r for r in rows if r.owner and r.site and policy.holding_visible(p, r.owner, r.site)]
    return dict(quantities_out({
        "as_of_seq": seq,
        "balances": [
            {
                "owner": r.owner,
                "site": r.site,
                "material": r.material,
                "lot": r.lot,
                "quantity_g": r.quantity,
                "quantity": format_quantity(r.quantity),
            }
            for r in visible
        ],
    }))


@router.get("/lots/{lot}/trace", **roles(*STOCK_READERS))
def trace(
    lot: CodePath, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Where every gram of a lot went, as far as your scope reaches: the movements that
    touch a holding you can see (all of them for an auditor)."""
    policy.require_stock_reader(p)
    with svc.reader.connect() as conn:
        t = reports.trace_lot(conn, lot)

    def visible(account: str) -> bool:
        owner, site = split_holding(account)
        return policy.holding_visible(p, owner, site)

    # Only movements that touch a holding you can see; within them, holdings you cannot
    # see are not named.
    seen = {leg.seq for leg in t.legs if leg.account.startswith("H/") and visible(leg.account)}

    def shown(account: str) -> str:
        if account.startswith("H/") and not visible(account):
            return "H/(outside your scope)"
        return account

    return dict(quantities_out({
        "lot": t.lot,
        "material": t.material,
        "balanced": t.balanced,
        "legs": [
            {
                "seq": leg.seq,
                "recorded_at": leg.recorded_at,
                "kind": leg.kind,
                "account": shown(leg.account),
                "delta_g": leg.delta,
            }
            for leg in t.legs
            if leg.seq in seen
        ],
    }))


@router.get("/cover", **roles(*AGGREGATE_READERS))
def cover(
    at: TimeQuery = None, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    owners = policy.owner_scope(p)
    with svc.reader.connect() as conn:
        rows = reports.cover(
            conn, owners=sorted(owners) if owners is not None else None, at=at or now()
        )
    return {"cover": [quantities_out(jsonable(asdict(r))) for r in rows]}


@router.get("/reports/crma", **roles(*AGGREGATE_READERS))
def crma(
    year: YearQuery = None, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The EU CRMA Art. 22 aggregate for the owners in your scope; no site is named."""
    owners = policy.owner_scope(p)
    with svc.reader.connect() as conn:
        rep = reports.crma_report(
            conn, owners=sorted(owners) if owners is not None else None, year=year or int(now()[:4])
        )
    return dict(quantities_out(jsonable(asdict(rep))))


@router.get("/loans/overdue", **roles(*STOCK_READERS))
def overdue(p: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    scope = policy.stock_scope(p)
    with svc.reader.connect() as conn:
        rows = reports.overdue_loans(conn, now=now(), scope=scope)
    return {
        "loans": [
            quantities_out(jsonable(asdict(r))) for r in rows if policy.holding_visible(p, r.owner, r.site)
        ]
    }
