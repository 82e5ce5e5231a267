"""Release authorisation over HTTP (issue #5): price observations, requests, approvals,
orders, revocations, and the views officials need. The rules are the reducer's; policies
carry two signatures (a security admin's and a minister's) and are submitted signed to
``POST /entries`` (or with ``reserve release policy``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import IdempotencyKey, RefPath
from api.request_schemas import documented
from api.routes.writes import _custodial
from api.services import Services
from ledger import policy, refs
from ledger.kinds import release as kinds
from ledger.kinds.requests import make_form
from ledger.policy import AUDITOR, MINISTER, OFFICIAL, Principal
from ledger.store import releases
from ledger.timefmt import now
from ledger.views import jsonable, quantities_out

router = APIRouter(prefix="/releases", tags=["releases"], route_class=StrictJSONRoute)
VIEWERS = (OFFICIAL, MINISTER, AUDITOR)
# Request forms from the kinds (issue #12); ids named in the path are not in the body.
PRICE_FORM = make_form(kinds.PriceObserved)
REQUEST_FORM = make_form(kinds.ReleaseRequested)
APPROVE_FORM = make_form(kinds.ReleaseApproved, from_path=("request",))
ORDER_FORM = make_form(kinds.ReleaseOrdered)
REVOKE_FORM = make_form(kinds.OrderRevoked, from_path=("order",), name="OrderRevokedIn")


def _scope(p: Principal) -> list[str] | None:
    owners = policy.owner_scope(p)
    return sorted(owners) if owners is not None else None


def _entry_id(svc: Services, ref: str, *of_kinds: str, field: str) -> str:
    """A path's reference (seq, id or id prefix; issue #12) as the entry id. Writes
    resolve on the primary, which the replica may not have caught up with yet."""
    with svc.primary_engine.connect() as conn:
        return refs.resolve_entry(conn, ref, kinds=of_kinds, field=field).entry_id


@router.post("/prices", status_code=201, **documented(PRICE_FORM, roles(OFFICIAL)))
def observe_price(
    fields: dict[str, Any] = Body(...),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """A price observation; ``observed_at`` defaults to now."""
    return _custodial(svc, p, PRICE_FORM, fields, idempotency_key)


@router.post("/requests", status_code=201, **documented(REQUEST_FORM, roles(OFFICIAL)))
def request_release(
    fields: dict[str, Any] = Body(...),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    return _custodial(svc, p, REQUEST_FORM, fields, idempotency_key)


@router.post(
    "/requests/{request_id}/approve", status_code=201, **documented(APPROVE_FORM, roles(OFFICIAL), optional=True)
)
def approve(
    request_id: RefPath,
    fields: dict[str, Any] = Body(default={}),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    rid = _entry_id(svc, request_id, "release.requested", field="request_id")
    return _custodial(svc, p, APPROVE_FORM, fields, idempotency_key, path={"request": rid})


@router.post("/orders", status_code=201, **documented(ORDER_FORM, roles(MINISTER)))
def order(
    fields: dict[str, Any] = Body(...),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    return _custodial(svc, p, ORDER_FORM, fields, idempotency_key)


@router.post("/orders/{order_id}/revoke", status_code=201, **documented(REVOKE_FORM, roles(MINISTER)))
def revoke(
    order_id: RefPath,
    fields: dict[str, Any] = Body(...),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    oid = _entry_id(svc, order_id, "release.ordered", field="order_id")
    return _custodial(svc, p, REVOKE_FORM, fields, idempotency_key, path={"order": oid})


@router.get("/requests", **roles(*VIEWERS))
def open_requests(
    p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Open requests for your owners, their approvals so far and what each still needs."""
    with svc.reader.connect() as conn:
        views = releases.open_requests(conn, owners=_scope(p), at=now())
    return {"requests": [quantities_out(jsonable(asdict(v))) for v in views]}


@router.get("/orders", **roles(*VIEWERS))
def orders(p: Principal = Depends(principal), svc: Services = Depends(services)) -> dict[str, Any]:
    """Orders for your owners with the remaining cap of each."""
    with svc.reader.connect() as conn:
        views = releases.list_orders(conn, owners=_scope(p), at=now())
    return {"orders": [quantities_out(jsonable(asdict(v))) for v in views]}


@router.get("/orders/{order_id}/report", **roles(*VIEWERS))
def order_report(
    order_id: RefPath, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """The report owed to the parliament or committee for an order: site codes only.
    The order may be named by its request too (issue #12)."""
    with svc.reader.connect() as conn:
        oid = releases.resolve_order(conn, order_id, owners=_scope(p), at=now(), field="order_id")
        rep = releases.order_report(conn, oid, owners=_scope(p), at=now())
    return dict(quantities_out(jsonable(asdict(rep))))
