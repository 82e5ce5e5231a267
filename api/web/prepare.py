"""``POST /web/prepare``: the body the browser is about to sign, built from a form.

The browser signs; it must not also re-implement the units ("12.5 t" to grams, exactly)
or the schema. So the page sends the form's fields here and gets back the *unsigned*
body (kind, a fresh id, the caller as author, the time, the fields in the log's units),
already checked against the entry schema, with the same field-level messages the API
gives. The browser shows that body, computes its RFC 8785 form itself, signs it with the
user's own key and submits it to ``POST /entries``; the service never sees the key and
this route signs nothing.
"""

from __future__ import annotations

import base64
import contextlib
import typing
from typing import Any

from fastapi import APIRouter, Body, Depends

from api.body import StrictJSONRoute
from api.deps import principal, services
from api.services import Services
from ledger.entries import AnyBody, parse_submission
from ledger.errors import InvalidEntry, SignatureInvalid
from ledger.kinds.requests import make_form, parse_form
from ledger.policy import Principal
from ledger.service import new_body

# Bodies decoded strictly, as every API write's (api.body: no invalid UTF-8, depth limits).
router = APIRouter(include_in_schema=False, route_class=StrictJSONRoute)

# Kinds a page may prepare: the ones its forms make (never genesis or log keys).
KINDS = frozenset(
    {
        "stock.receipt",
        "stock.dispatch",
        "stock.arrival",
        "stock.release",
        "stock.count",
        "stock.reversal",
        "stock.loan_out",
        "stock.loan_return",
        "stock.sale",
        "stock.rotation",
        "stock.conversion",
        "price.observed",
        "release.requested",
        "release.approved",
        "release.ordered",
        "release.order_revoked",
        "key.registered",
    }
)
# The API's own request forms (issue #12): the same units, purities, times and messages.
FORMS = {
    str(cls.__struct_config__.tag): make_form(cls)
    for cls in typing.get_args(AnyBody)
    if str(cls.__struct_config__.tag) in KINDS
}
# A syntactically valid signature that verifies for nothing: lets the API's own parser
# check the body's schema (and name the failing field) before there is a real signature.
_PLACEHOLDER = {"pub": "00" * 32, "sig": base64.b64encode(bytes(64)).decode()}


@router.post("/web/prepare")
def prepare(
    kind: str = Body(...),
    fields: dict[str, Any] = Body(...),
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    if kind not in KINDS:
        raise InvalidEntry("this page cannot prepare that kind of entry", field="kind")
    if any(k in fields for k in ("kind", "id", "author", "created_at")):
        raise InvalidEntry("the service sets kind, id, author and time", field="fields")
    body = new_body(kind, p.user, **parse_form(FORMS[kind], fields))
    # Schema and free text are checked first; only the placeholder signature then fails.
    with contextlib.suppress(SignatureInvalid):
        parse_submission({"entry": body, "sigs": [_PLACEHOLDER]}, log_id=svc.log_id)
    return {"entry": body, "log_id": svc.log_id}
