"""Writing the access log from requests (issue #4): reveals and exports at once,
refusals batched (issue #8).

Client addresses and the paths of refused requests are HMAC'd; the purpose a user
states for a reveal is kept as written (it is the accountability record).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.services import Services
from ledger.store.access import keyed_hash, record
from ledger.timefmt import now


def _event(svc: Services, request: Request, **fields: Any) -> tuple[str, dict[str, Any]]:
    client = request.client.host if request.client else ""
    event = {
        "actor": getattr(request.state, "user", None) or "anonymous",
        "request_id": getattr(request.state, "request_id", ""),
        "client_hmac": keyed_hash(svc.hmac_key, client),
        **{k: v for k, v in fields.items() if v is not None},
    }
    return client, event


def access_event(
    svc: Services, request: Request, *, action: str, outcome: str, **fields: Any
) -> int:
    """Append one event now; raises StorageError if it cannot be written. Refusals still
    buffered are written first, so the access log keeps the order things happened in."""
    svc.refusals.flush()
    _, event = _event(svc, request, action=action, outcome=outcome, **fields)
    return record(svc.ledger.engine, event, log_signer=svc.ledger.log_signer(), log_id=svc.log_id)


def refusal_event(svc: Services, request: Request, status: int, code: str) -> None:
    """Queue a refusal for the batched, per-client-limited writer (api.refusals): it
    never blocks the request nor takes the write lock (issue #8 item 9)."""
    route = request.scope.get("route")
    client, event = _event(
        svc,
        request,
        action="refused",
        outcome=str(status),
        route=getattr(route, "path", "unmatched"),
        method=request.method,
        path_hmac=keyed_hash(svc.hmac_key, request.url.path),
        reason=code,
        refused_at=now(),  # the batch is written later, under its own time
    )
    svc.refusals.add(client, event["client_hmac"], event)
