"""Writing: entries signed by their author, or (embedded default) signed by the server
with the user's custodial key. Every write takes an ``Idempotency-Key``."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import metrics
from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import IDEMPOTENCY_KEY, KEY_ID, IdempotencyKey, KeyRefPath
from api.services import TOKEN_KEY_NAME, Services
from keys.filestore import validate_key_name
from ledger.canonical import canonical
from ledger.entries import parse_submission, sign_body
from ledger.errors import (
    Forbidden,
    InvalidEntry,
    KeystoreError,
    LedgerError,
    NotFound,
    OutcomePending,
)
from ledger.policy import ADMIN, OFFICIAL, OPERATOR, Principal
from ledger.refs import match_key
from ledger.service import new_body
from ledger.store import idempotency
from ledger.store.projections import read_keys, read_user_keys
from ledger.units import parse_purity, parse_quantity

router = APIRouter(tags=["writes"], route_class=StrictJSONRoute)

# Fields given as "12.5 t" strings in custodial requests; converted exactly to grams.
QUANTITY_FIELDS = (
    "quantity",
    "quantity_in",
    "quantity_out",
    "book",
    "counted",
    "annual_quantity",
    "cap",
)
# Purities given as "99.5%", "99.5" or "0.995"; the log keeps the percentage (issue #12).
PURITY_FIELDS = ("purity", "accepted_purity")
# Movement actions (URL) and entry kinds.
STOCK_ACTIONS = {
    "receive": "stock.receipt",
    "dispatch": "stock.dispatch",
    "arrive": "stock.arrival",
    "release": "stock.release",
    "loan": "stock.loan_out",
    "return": "stock.loan_return",
    "sell": "stock.sale",
    "rotate": "stock.rotation",
    "convert": "stock.conversion",
    "count": "stock.count",
    "reverse": "stock.reversal",
}
REFERENCE_KINDS = {
    "owners": "owner.registered",
    "materials": "material.registered",
    "lots": "lot.registered",
    "targets": "target.set",
}


def _request_hash(svc: Services, payload: Any) -> str:
    """Keyed, so the stored hash of a site registration cannot confirm a guessed location
    (which the salted commitment exists to prevent)."""
    return hmac.new(svc.idempotency_hmac_key, canonical(payload), hashlib.sha256).hexdigest()


def _write(
    svc: Services,
    p: Principal,
    idem_key: str | None,
    payload: Any,
    submission: dict[str, Any],
    *,
    seal: Callable[..., None] | None = None,
) -> JSONResponse:
    """Append through the group committer, once per idempotency key: a retry gets the
    stored first result, a reuse for another request a 409."""
    entry = submission["entry"]

    def response(seq: int) -> dict[str, Any]:
        return {"seq": seq, "entry_id": entry["id"], "kind": entry["kind"]}

    if idem_key is None:
        seq = svc.committer.submit(submission, also=seal)
        metrics.APPENDS.labels(kind=entry["kind"]).inc()
        return JSONResponse(response(seq), status_code=201)
    if not re.fullmatch(IDEMPOTENCY_KEY, idem_key):  # stored as given: no control chars
        raise InvalidEntry(
            "Idempotency-Key must be 1 to 128 printable ASCII characters", field="Idempotency-Key"
        )
    h = _request_hash(svc, payload)
    claim = idempotency.IdemKey(user=p.user, key=idem_key, request_hash=h, status=201, response=response)
    result = svc.committer.submit(submission, also=seal, idempotency=claim)
    if isinstance(result, tuple):  # the stored answer to an earlier identical request
        return JSONResponse(result[1], status_code=result[0])
    metrics.APPENDS.labels(kind=entry["kind"]).inc()
    return JSONResponse(response(result), status_code=201)


def _custodial_fields(fields: dict[str, Any]) -> dict[str, Any]:
    out = dict(fields)
    for name in QUANTITY_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = parse_quantity(out[name], field=f"entry.{name}")
    for name in PURITY_FIELDS:
        if isinstance(out.get(name), str):
            out[name] = parse_purity(out[name], field=f"entry.{name}")
    return out


def _custodial(
    svc: Services,
    p: Principal,
    kind: str,
    fields: dict[str, Any],
    idem_key: str | None,
    request: Request | None = None,
) -> JSONResponse:
    if not svc.settings.custodial:
        raise Forbidden(
            "this service does not hold users' keys: submit entries signed with your own key"
        )
    if not isinstance(fields, dict) or any(
        k in fields for k in ("kind", "id", "author", "created_at")
    ):
        raise InvalidEntry(
            "send the entry's own fields as a JSON object; the service sets kind, id, author, time"
        )
    body = new_body(kind, p.user, **_custodial_fields(fields))
    records = getattr(request.state, "keys", None) if request is not None else None
    if records is None:  # the principal's lookup in this request, else the primary
        with svc.primary_engine.connect() as conn:
            records = read_user_keys(conn, p.user)
    held = any(k.custody == "server" and k.revoked_seq is None for k in records)
    if not held:
        raise Forbidden("the service holds no key of yours: submit entries you signed to POST /entries")
    submission = sign_body(body, [svc.ledger.signer_for(p.user)], log_id=svc.log_id)
    return _write(svc, p, idem_key, {"kind": kind, **fields}, submission)


@router.post("/entries", status_code=201, **roles(OPERATOR, OFFICIAL, "minister", ADMIN, "auditor"))
def submit_signed(
    submission: dict[str, Any] = Body(
        ..., description="{entry, sigs}: signed by the caller's own key"
    ),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """An entry already signed by its author's key (production mode: the server never holds
    it). The token's subject must be the entry's author; the reducer checks the key."""
    signed, _ = parse_submission(submission, log_id=svc.log_id)
    if signed.entry.author != p.user:
        raise Forbidden("you can only submit entries you authored")
    return _write(svc, p, idempotency_key, submission, submission)


@router.post("/stock/{action}", status_code=201, **roles(OPERATOR))
def record_movement(
    action: str,
    request: Request,
    fields: dict[str, Any] = Body(
        ..., description='the movement\'s fields; quantities as "12.5 t"'
    ),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """Record a movement signed with the operator's custodial key (embedded default)."""
    kind = STOCK_ACTIONS.get(action)
    if kind is None:
        raise InvalidEntry(
            f"unknown movement '{action}': one of {', '.join(STOCK_ACTIONS)}", field="action"
        )
    if kind == "stock.count" and "cosigners" in fields:
        raise InvalidEntry(
            "a count beyond tolerance is co-signed: submit it signed to /entries", field="cosigners"
        )
    return _custodial(svc, p, kind, fields, idempotency_key, request)


@router.post("/reference/{collection}", status_code=201, **roles(ADMIN, OPERATOR, OFFICIAL))
def register_reference(
    collection: str,
    request: Request,
    fields: dict[str, Any] = Body(...),
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """Owners and materials (security admin), lots (operator or official), targets
    (official); the reducer enforces which."""
    kind = REFERENCE_KINDS.get(collection)
    if kind is None:
        raise InvalidEntry(
            f"unknown collection '{collection}': one of {', '.join(REFERENCE_KINDS)}",
            field="collection",
        )
    return _custodial(svc, p, kind, fields, idempotency_key, request)


class SiteIn(BaseModel):
    code: str
    classification: str
    custodian: str
    owners: list[str] = Field(default_factory=list)
    location: dict[str, Any] = Field(
        description="name, address, latitude, longitude[, notes]; sealed, never logged"
    )


@router.post("/sites", status_code=201, **roles(ADMIN))
def register_site(
    site: SiteIn,
    request: Request,
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    from ledger.locations import parse_location

    location = parse_location(canonical(site.location))
    submission, seal = svc.ledger.site_submission(
        admin=p.user,
        code=site.code,
        classification=site.classification,
        custodian=site.custodian,
        owners=site.owners or [site.custodian],
        location=location,
    )
    return _write(svc, p, idempotency_key, site.model_dump(), submission, seal=seal)


def _check_new_user_name(user: str) -> None:
    """Custodial keys share the keystore with the service's own keys: refuse names the
    keystore would refuse, and the service's names."""
    try:
        validate_key_name(user)
    except KeystoreError:
        raise InvalidEntry(
            "user names are 1-64 characters of a-z 0-9 . _ - starting with a letter or digit", field="user"
        ) from None
    if user == TOKEN_KEY_NAME or re.fullmatch(r"log(-[0-9]+)?", user):
        raise InvalidEntry(f"'{user}' is reserved for the service's own keys", field="user")


class KeyIn(BaseModel):
    user: str
    roles: list[str]
    sites: list[str] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    clearance: str = "NONE"
    public_key: str | None = Field(
        default=None, description="hex; omit for a custodial key (embedded only)"
    )


@router.post("/keys", status_code=201, **roles(ADMIN))
def register_key(
    key: KeyIn,
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    if key.public_key is None and not svc.settings.custodial:
        raise Forbidden(
            "this service does not hold users' keys: register the user's own public key"
        )
    if key.public_key is not None:
        try:
            pub = bytes.fromhex(key.public_key)
        except ValueError:
            raise InvalidEntry("public_key must be hex", field="public_key") from None
        fields = dict(
            user=key.user,
            public_key=pub.hex(),
            roles=key.roles,
            sites=key.sites,
            owners=key.owners,
            clearance=key.clearance,
            custody="self",
        )
        return _custodial(svc, p, "key.registered", fields, idempotency_key)
    _check_new_user_name(key.user)
    if not svc.ledger.keystore.exists(key.user):
        svc.ledger.keystore.generate(key.user)
    fields = dict(
        user=key.user,
        public_key=svc.ledger.keystore.public_key(key.user).hex(),
        roles=key.roles,
        sites=key.sites,
        owners=key.owners,
        clearance=key.clearance,
        custody="server",
    )
    return _custodial(svc, p, "key.registered", fields, idempotency_key)


class RevokeIn(BaseModel):
    reason: str


@router.post(
    "/keys/{key_id}/revoke",
    status_code=201,
    **roles(ADMIN, OPERATOR, OFFICIAL, "minister", "auditor"),
)
def revoke_key(
    key_id: KeyRefPath,
    body: RevokeIn,
    idempotency_key: IdempotencyKey = None,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """A security admin revokes any key; anyone may revoke their own (the reducer decides).
    The key may be named by its id, an id prefix or its user's name (issue #12): among
    every key for a security admin, among the caller's own keys for anyone else."""
    if not re.fullmatch(KEY_ID, key_id):
        with svc.primary_engine.connect() as conn:
            recs = [k for k in read_keys(conn).values() if k.user != "log"]
        if not p.has(ADMIN):
            recs = [k for k in recs if k.user == p.user]
        key_id = match_key(recs, key_id, field="key_id").key_id
    return _custodial(
        svc, p, "key.revoked", {"key_id": key_id, "reason": body.reason}, idempotency_key
    )


@router.get("/entries/outcome/{idempotency_key}", **roles(OPERATOR, OFFICIAL, "minister", ADMIN, "auditor"))
def write_outcome(
    idempotency_key: str,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> JSONResponse:
    """The outcome of the caller's write sent with this Idempotency-Key, for a write that
    was answered 202 (issue #8, item 2): 200 with the write's response once appended, 202
    while it is still queued, the refusal's problem if it was refused, 404 if no write
    with this key was appended (never received, or refused before a restart)."""
    if not 1 <= len(idempotency_key) <= 128:
        raise InvalidEntry("Idempotency-Key must be 1 to 128 characters", field="idempotency_key")
    late = svc.committer.outcome((p.user, idempotency_key))
    if late is not None and not late.done():
        raise OutcomePending("the write is still queued", idempotency_key=idempotency_key)
    with svc.primary_engine.connect() as conn:  # idempotency reads the primary (issue #11)
        stored = idempotency.stored_response(conn, user=p.user, key=idempotency_key)
    if stored is not None:
        return JSONResponse({"outcome": "appended", "status": stored[0], **stored[1]}, status_code=200)
    if late is not None and isinstance(late.exception(), LedgerError):
        exc = late.exception()
        assert isinstance(exc, LedgerError)
        raise exc
    raise NotFound("no write with this Idempotency-Key was appended")
