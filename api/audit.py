"""Writing the access log from requests (issue #4): reveals, refusals, exports.

Client addresses and the paths of refused requests are HMAC'd; the purpose a user
states for a reveal is kept as written (it is the accountability record).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.services import Services
from ledger.store.access import keyed_hash, record


def access_event(
    svc: Services, request: Request, *, action: str, outcome: str, **fields: Any
) -> int:
    """Append one event; raises StorageError if it cannot be written."""
    client = request.client.host if request.client else ""
    event = {
        "actor": getattr(request.state, "user", None) or "anonymous",
        "action": action,
        "outcome": outcome,
        "request_id": getattr(request.state, "request_id", ""),
        "client_hmac": keyed_hash(svc.hmac_key, client),
        **{k: v for k, v in fields.items() if v is not None},
    }
    return record(svc.ledger.engine, event, log_signer=svc.ledger.log_signer(), log_id=svc.log_id)


def refusal_event(svc: Services, request: Request, status: int, code: str) -> None:
    route = request.scope.get("route")
    access_event(
        svc,
        request,
        action="refused",
        outcome=str(status),
        route=getattr(route, "path", "unmatched"),
        method=request.method,
        path_hmac=keyed_hash(svc.hmac_key, request.url.path),
        reason=code,
    )
