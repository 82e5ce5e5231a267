"""Co-signature proposals (issue #9 item 3): routes only; the transitions are
``ledger.proposals``, the storage ``ledger.store.proposals``.

``POST /proposals``                 open one: ``{"entry", "sigs": [proposer's], "cosigners"}``
``GET /proposals?for=me``           open proposals waiting for the caller's signature
``GET /proposals``                  proposals the caller made or is named in
``GET /proposals/{id}``             the body, a summary in display units, who signed, status
``POST /proposals/{id}/cosign``     ``{"sig": {"pub", "sig"}}`` over the stored body (v2)
``POST /proposals/{id}/withdraw``   by the proposer

Only the proposer and the named co-signers see a proposal; anyone else gets the same 404
as for a proposal that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import errors
from api.deps import principal, roles, services
from api.services import Services
from ledger import policy
from ledger.entries import parse_sig, sign_body
from ledger.errors import Forbidden, NotFound
from ledger.policy import Principal
from ledger.proposals import Proposal, effective_status, summary
from ledger.store import proposals as store
from ledger.store.projections import read_user_keys

router = APIRouter(tags=["proposals"])
ANYONE = roles(*policy.ALL_ROLES)


def view(p: Proposal, svc: Services) -> dict[str, Any]:
    at = datetime.now(UTC)
    out: dict[str, Any] = {
        "id": p.id,
        "kind": p.kind,
        "status": effective_status(p, at=at),
        "proposer": p.proposer,
        "cosigners": list(p.cosigners),
        "signed_by": p.signed_by(),
        "waiting_for": p.waiting_for(),
        "created_at": p.created_at,
        "expires_at": p.expires_at,
        "log_id": svc.log_id,
        "entry": p.body,
        "summary": summary(p.body),
        "outcome": None,
    }
    if p.status == "appended":
        out["outcome"] = {"result": "appended", "seq": p.outcome_seq}
    elif p.status == "refused" and p.outcome is not None:
        o = p.outcome
        type_ = f"rule/{o['rule']}" if o.get("rule") else str(o.get("code"))
        out["outcome"] = {
            "result": "refused",
            "problem": {"type": errors.PROBLEM_BASE + type_, "detail": o.get("detail"), "field": o.get("field")},
        }
    return out


def _append(svc: Services) -> store.Append:
    def append(submission: dict[str, Any], also: Any) -> int:
        return int(svc.committer.submit(submission, also=also))

    return append


class ProposalIn(BaseModel):
    entry: dict[str, Any]
    sigs: list[dict[str, Any]] = Field(min_length=1, max_length=1)
    cosigners: list[str] = Field(min_length=1, max_length=3)


@router.post("/proposals", status_code=201, **ANYONE)
def open_proposal(
    body: ProposalIn, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> JSONResponse:
    """Propose an entry that needs co-signatures, signed (v2) by its author, the caller."""
    prop = store.create(
        svc.ledger.engine,
        {"entry": body.entry, "sigs": body.sigs},
        proposer=p.user,
        cosigners=body.cosigners,
        log_id=svc.log_id,
        at=datetime.now(UTC),
    )
    return JSONResponse(view(prop, svc), status_code=201)


@router.get("/proposals", **ANYONE)
def list_proposals(
    for_: Literal["me"] | None = Query(default=None, alias="for"),
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """``?for=me``: what waits for the caller's signature; otherwise every proposal the
    caller made or is named in."""
    with svc.primary_engine.connect() as conn:
        found = (
            store.waiting_for(conn, p.user, at=datetime.now(UTC))
            if for_ == "me"
            else store.involving(conn, p.user)
        )
    return {"proposals": [view(x, svc) for x in found]}


def _visible(svc: Services, pid: str, user: str) -> Proposal:
    with svc.primary_engine.connect() as conn:
        prop = store.get(conn, pid)
    if user != prop.proposer and user not in prop.cosigners:
        raise NotFound("no such proposal")
    return prop


@router.get("/proposals/{pid}", **ANYONE)
def show_proposal(
    pid: str, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Exactly what a co-signer signs (``entry``; the message is
    ``ledger.entries.signing_message(JCS(entry), log_id=log_id)``), a summary with
    quantities in display units, who has signed, the status and the outcome."""
    prop = _visible(svc, pid, p.user)
    # A proposal whose last signature was stored but not appended (a crash between the
    # two) is finished by whoever looks at it next.
    if prop.status == "open" and prop.is_complete():
        prop = store.finish(svc.ledger.engine, prop, _append(svc), at=datetime.now(UTC))
    return view(prop, svc)


class CosignIn(BaseModel):
    sig: dict[str, Any] | None = Field(
        default=None,
        description="{pub, sig} over the stored body (v2); omit only in custodial mode, "
        "where the service signs with the CALLER's own custodial key",
    )


def _custodial_sig(svc: Services, pid: str, user: str) -> dict[str, str]:
    """Custodial mode (the embedded demo): the service signs with the custodial key of
    the authenticated caller, never anyone else's (issue #9 item 4)."""
    if not svc.settings.custodial:
        raise Forbidden("this service does not hold users' keys: send your signature")
    prop = _visible(svc, pid, user)
    with svc.primary_engine.connect() as conn:
        held = [k for k in read_user_keys(conn, user) if k.custody == "server" and k.revoked_seq is None]
    if not held or not svc.ledger.keystore.exists(user):
        raise Forbidden("the service holds no key of yours: send your signature")
    signer = svc.ledger.signer_for(user)
    if signer.public_key.hex() not in {k.public_key for k in held}:
        raise Forbidden("the service holds no active key of yours: send your signature")
    sig: dict[str, str] = sign_body(prop.body, [signer], log_id=svc.log_id)["sigs"][0]
    return sig


@router.post("/proposals/{pid}/cosign", **ANYONE)
def cosign(
    pid: str,
    body: CosignIn = Body(...),
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Add the caller's signature; the last one appends the entry (through the reducer)
    and the answer carries the outcome."""
    sig = parse_sig(body.sig if body.sig is not None else _custodial_sig(svc, pid, p.user))
    at = datetime.now(UTC)
    prop = store.add_signature(svc.ledger.engine, pid, sig, user=p.user, log_id=svc.log_id, at=at)
    prop = store.finish(svc.ledger.engine, prop, _append(svc), at=at)
    return view(prop, svc)


@router.post("/proposals/{pid}/withdraw", **ANYONE)
def withdraw(
    pid: str, p: Principal = Depends(principal), svc: Services = Depends(services)
) -> dict[str, Any]:
    return view(store.withdraw(svc.ledger.engine, pid, user=p.user, at=datetime.now(UTC)), svc)
