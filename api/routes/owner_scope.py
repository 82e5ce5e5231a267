"""An owner's scoped-audit key file for that owner's auditors (issue #14): "given to the
owner's auditors out of band or through the key registry". Who may is
``ledger.policy.scope_key_access``; the key file is ``ledger.store.owner_scope``'s."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.audit import access_event
from api.deps import principal, roles, services
from api.services import Services
from ledger import policy
from ledger.policy import AUDITOR, Principal
from ledger.store import owner_scope

router = APIRouter(prefix="/owners", tags=["owner-scope"])

CODE = Path(max_length=64, pattern=r"^[A-Z0-9][A-Z0-9._-]{0,63}$")


@router.get("/{code}/scope-key", **roles(AUDITOR))
def scope_key(
    request: Request,
    code: str = CODE,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> Response:
    """The owner's key file (every epoch), for an auditor scoped to that owner. Written
    to the access log before it leaves: no record, no key. Never cached."""
    owner = policy.scope_key_access(p, code)
    text = owner_scope.key_file(svc.reader, owner, keyring=svc.ledger.owner_keyring())
    access_event(svc, request, action="scope-key", outcome="granted", owner=owner)
    return Response(
        text, media_type="application/json", headers={"Cache-Control": "no-store"}
    )
