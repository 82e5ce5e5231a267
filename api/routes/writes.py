"""Writing: entries signed by their author, or (embedded default) signed by the server
with the user's custodial key. Every write takes an ``Idempotency-Key``."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import IDEMPOTENCY_KEY, KEY_ID, IdempotencyKey, KeyRefPath
from api.request_schemas import documented, signed_entry
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
from ledger.kinds import stock
from ledger.kinds.keys import KeyRevoked
from ledger.kinds.requests import SERVER_SET, Form, make_form, parse_form
from ledger.kinds.vocabulary import term
from ledger.policy import ADMIN, OFFICIAL, OPERATOR, Principal
from ledger.refs import match_key
from ledger.service import new_body
from ledger.state import KeyRecord
from ledger.store import idempotency
from ledger.store.projections import read_keys, read_user_keys

router = APIRouter(tags=["writes"], route_class=StrictJSONRoute)

# Movement actions (URL) and the entry kinds they write: one route and one request
# schema each, generated from this table (issue #12).
STOCK_ACTIONS: dict[str, type[msgspec.Struct]] = {
    "receive": stock.Receipt,
    "dispatch": stock.Dispatch,
    "arrive": stock.Arrival,
    "release": stock.Release,
    "loan": stock.LoanOut,
    "return": stock.LoanReturn,
    "sell": stock.Sale,
    "rotate": stock.Rotation,
    "convert": stock.Conversion,
    "count": stock.StockCount,
    "reverse": stock.Reversal,
}
REFERENCE_KINDS: dict[str, type[msgspec.Struct]] = {
    "owners": stock.OwnerRegistered,
    "materials": stock.MaterialRegistered,
    "lots": stock.LotRegistered,
    "targets": stock.TargetSet,
}
MOVEMENT_FORMS = {action: make_form(cls) for action, cls in STOCK_ACTIONS.items()}
REFERENCE_FORMS = {name: make_form(cls) for name, cls in REFERENCE_KINDS.items()}
REVOKE_FORM = make_form(KeyRevoked, from_path=("key_id",))


def _request_hash(svc: Services, payload: Any) -> str:
    """Keyed, so the stored hash of a site registration cannot confirm a guessed location
    (which the salted commitment exists to prevent)."""
    return hmac.new(svc.idempotency_hmac_key, canonical(payload), hashlib.sha256).hexdigest()


def _check_idempotency_key(idem_key: str | None) -> None:
    if idem_key is not None and not re.fullmatch(IDEMPOTENCY_KEY, idem_key):  # stored as given
        raise InvalidEntry(
            "Idempotency-Key must be 1 to 128 printable ASCII characters", field="Idempotency-Key"
        )


def _created(entry: dict[str, Any], seq: int) -> dict[str, Any]:
    """The 201 body of an appended entry (also what an idempotent retry is answered)."""
    return {"seq": seq, "entry_id": entry["id"], "kind": entry["kind"]}


def _require_custodial(svc: Services) -> None:
    if not svc.settings.custodial:
        raise Forbidden(
            "this service does not hold users' keys: submit entries signed with your own key"
        )


def _claim(
    svc: Services, p: Principal, idem_key: str | None, payload: Any, entry: dict[str, Any]
) -> idempotency.IdemKey | None:
    """The write's idempotency claim (``None`` without a key): a retry gets the stored
    first result, a reuse for another request a 409."""
    _check_idempotency_key(idem_key)
    if idem_key is None:
        return None

    def response(seq: int) -> dict[str, Any]:
        return _created(entry, seq)

    h = _request_hash(svc, payload)
    return idempotency.IdemKey(user=p.user, key=idem_key, request_hash=h, status=201, response=response)


def _answer(entry: dict[str, Any], result: Any) -> JSONResponse:
    if isinstance(result, tuple):  # the stored answer to an earlier identical request
        return JSONResponse(result[1], status_code=result[0])
    metrics.APPENDS.labels(kind=entry["kind"]).inc()
    return JSONResponse(_created(entry, result), status_code=201)


def _write(
    svc: Services,
    p: Principal,
    idem_key: str | None,
    payload: Any,
    submission: dict[str, Any],
    *,
    seal: Callable[..., None] | None = None,
) -> JSONResponse:
    """Append through the group committer, once per idempotency key."""
    claim = _claim(svc, p, idem_key, payload, submission["entry"])
    return _answer(submission["entry"], svc.committer.submit(submission, also=seal, idempotency=claim))


def _custodial_fields(
    svc: Services, form: Form, fields: Any, idem_key: str | None, path: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry's fields from a request body checked by ``form`` (quantities in units,
    times with offsets, defaults) with ``path``'s, and the payload the idempotency key
    hashes."""
    _require_custodial(svc)
    _check_idempotency_key(idem_key)  # the header first, as for every write
    if isinstance(fields, dict) and any(k in fields for k in SERVER_SET):
        raise InvalidEntry(
            "send the entry's own fields as a JSON object; the service sets kind, id, author, time"
        )
    body_fields = {**parse_form(form, fields), **(path or {})}
    return body_fields, {"kind": form.kind, **fields, **(path or {})}


def _custodial(
    svc: Services,
    p: Principal,
    form: Form,
    fields: Any,
    idem_key: str | None,
    request: Request | None = None,
    *,
    path: dict[str, Any] | None = None,
) -> JSONResponse:
    """An entry of ``form``'s kind, signed for the caller."""
    body_fields, payload = _custodial_fields(svc, form, fields, idem_key, path)
    return _sign_custodial(svc, p, form.kind, body_fields, idem_key, payload, request)


def _custodial_body(
    svc: Services, p: Principal, kind: str, body_fields: dict[str, Any], records: Iterable[KeyRecord]
) -> dict[str, Any]:
    """The unsigned body, if the service holds a key of the caller's (``records``: the
    caller's keys, read once per request by authentication)."""
    _require_custodial(svc)
    body = new_body(kind, p.user, **body_fields)
    held = any(k.custody == "server" and k.revoked_seq is None for k in records)
    if not held:
        raise Forbidden("the service holds no key of yours: submit entries you signed to POST /entries")
    return body


def _caller_keys(svc: Services, p: Principal, request: Request | None) -> list[KeyRecord]:
    records = getattr(request.state, "keys", None) if request is not None else None
    if records is None:  # the principal's lookup in this request, else the primary
        with svc.primary_engine.connect() as conn:
            records = read_user_keys(conn, p.user)
    return records


def _sign_custodial(
    svc: Services,
    p: Principal,
    kind: str,
    body_fields: dict[str, Any],
    idem_key: str | None,
    payload: dict[str, Any],
    request: Request | None = None,
) -> JSONResponse:
    body = _custodial_body(svc, p, kind, body_fields, _caller_keys(svc, p, request))
    submission = sign_body(body, [svc.ledger.signer_for(p.user)], log_id=svc.log_id)
    return _write(svc, p, idem_key, payload, submission)


@router.post("/entries", status_code=201, **signed_entry(roles(OPERATOR, OFFICIAL, "minister", ADMIN, "auditor")))
def submit_signed(
    submission: dict[str, Any] = Body(...),
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


def _custodial_route(
    path: str, name: str, form: Form, summary: str, access: dict[str, Any], *, cosigned: bool = False
) -> None:
    """One custodial write route for ``form``: the movement and reference routes differ
    only in path, summary and who may call them. ``cosigned``: the entry may need a
    co-signature, which a custodial write cannot carry (a count beyond tolerance)."""

    async def record(
        request: Request,
        fields: dict[str, Any] = Body(...),
        idempotency_key: IdempotencyKey = None,
        p: Principal = Depends(principal),
        svc: Services = Depends(services),
    ) -> JSONResponse:
        # On the event loop (issue #11): the route's own work is CPU for well under a
        # millisecond (the form, one signature, the edge check), and the wait for the
        # group commit holds no thread. Only a key not yet unwrapped in this process (a
        # scrypt) or a lookup authentication did not make goes to a thread.
        if cosigned and "cosigners" in fields:
            raise InvalidEntry(
                "a count beyond tolerance is co-signed: submit it signed to /entries", field="cosigners"
            )
        body_fields, payload = _custodial_fields(svc, form, fields, idempotency_key, None)
        records: list[KeyRecord] | None = getattr(request.state, "keys", None)
        if records is None:
            records = await run_in_threadpool(_caller_keys, svc, p, request)
        body = _custodial_body(svc, p, form.kind, body_fields, records)
        signer = svc.ledger.cached_signer(p.user)
        if signer is None:  # a scrypt, once per user and process
            signer = await run_in_threadpool(svc.ledger.signer_for, p.user)
        submission = sign_body(body, [signer], log_id=svc.log_id)
        claim = _claim(svc, p, idempotency_key, payload, submission["entry"])
        result = await svc.committer.submit_async(submission, idempotency=claim)
        return _answer(submission["entry"], result)

    router.post(path, status_code=201, name=name, summary=summary, **documented(form, access))(record)


for _action, _form in MOVEMENT_FORMS.items():
    _custodial_route(
        f"/stock/{_action}", f"stock_{_action}", _form,
        f"Record a {_form.kind} (custodial signing)", roles(OPERATOR), cosigned=_action == "count",
    )
for _collection, _form in REFERENCE_FORMS.items():
    _custodial_route(
        f"/reference/{_collection}", f"reference_{_collection}", _form,
        f"Register a {_form.kind} (custodial signing; the rules decide who may)",
        roles(ADMIN, OPERATOR, OFFICIAL),
    )


# The paths of the table above are routes of their own; any other action is named here.
@router.post("/stock/{action}", status_code=201, include_in_schema=False, **roles(OPERATOR))
def unknown_movement(action: str) -> JSONResponse:
    raise InvalidEntry(f"unknown movement '{action}': one of {', '.join(STOCK_ACTIONS)}", field="action")


@router.post("/reference/{collection}", status_code=201, include_in_schema=False, **roles(ADMIN, OPERATOR, OFFICIAL))
def unknown_collection(collection: str) -> JSONResponse:
    raise InvalidEntry(
        f"unknown collection '{collection}': one of {', '.join(REFERENCE_KINDS)}", field="collection"
    )


def _term(name: str, **kw: Any) -> Any:
    """A pydantic field documented from the one vocabulary (``ledger.kinds.vocabulary``)."""
    t = term(name)
    return Field(description=t.description, examples=[t.example] if t.example is not None else None, **kw)


class SiteIn(BaseModel):
    """A site: its code, classification, custodian and owners go in the log; its location
    is sealed on the server and only its commitment is logged."""

    code: str = _term("code", default=...)
    classification: str = _term("classification", default=...)
    custodian: str = _term("custodian", default=...)
    owners: list[str] = _term("owners", default_factory=list)
    location: dict[str, Any] = _term("location", default=...)


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
    """A user's key and its scope (``key.registered``; custody is set by the service)."""

    user: str = _term("user", default=...)
    roles: list[str] = _term("roles", default=...)
    sites: list[str] = _term("sites", default_factory=list)
    owners: list[str] = _term("owners", default_factory=list)
    clearance: str = _term("clearance", default="NONE")
    public_key: str | None = _term("public_key", default=None)


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
        return _sign_custodial(svc, p, "key.registered", fields, idempotency_key, {"kind": "key.registered", **fields})
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
    return _sign_custodial(svc, p, "key.registered", fields, idempotency_key, {"kind": "key.registered", **fields})


@router.post(
    "/keys/{key_id}/revoke",
    status_code=201,
    **documented(REVOKE_FORM, roles(ADMIN, OPERATOR, OFFICIAL, "minister", "auditor")),
)
def revoke_key(
    key_id: KeyRefPath,
    body: dict[str, Any] = Body(...),
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
    return _custodial(svc, p, REVOKE_FORM, body, idempotency_key, path={"key_id": key_id})


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
