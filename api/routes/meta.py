"""Health, readiness, identity: the routes around the ledger."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import text

from api import metrics
from api.body import StrictJSONRoute
from api.deps import principal, roles, services
from api.params import IDEMPOTENCY_KEY, MAX_SAFE_INT, USER_NAME
from api.services import Services
from ledger import policy
from ledger.errors import Forbidden, NotFound
from ledger.policy import ADMIN, Principal
from ledger.store.db import write_transaction
from ledger.store.projections import read_user_keys
from ledger.store.replica import replica_status
from ledger.store.tokens import revoke

router = APIRouter(tags=["service"], route_class=StrictJSONRoute)
log = structlog.get_logger("api")


@router.get("/health")
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready")
def ready(svc: Services = Depends(services)) -> dict[str, Any]:
    """The database answers and the log is initialised. ``log_id`` is what entry
    signatures are bound to; ``demo`` whether the genesis marks a demo ledger (issue #9);
    with a read replica, how far behind it is (issue #11)."""
    with svc.primary_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    out: dict[str, Any] = {"status": "ready", "log_id": svc.log_id, "demo": svc.ledger.is_demo()}
    if svc.has_replica:
        st = replica_status(svc.primary_engine, svc.reader)
        out["replica"] = {
            "in_recovery": st.in_recovery,
            "lag_seconds": round(st.lag_seconds, 3),
            "lag_bytes": st.lag_bytes,
            "behind_entries": st.behind_entries,
        }
    return out


@router.get("/metrics", response_class=PlainTextResponse)
def metrics_route(request: Request, svc: Services = Depends(services)) -> Response:
    """Prometheus metrics, for the monitoring host only: the direct peer must be in
    RESERVE_METRICS_ALLOW (loopback by default) and the request must not have come
    through a proxy (no X-Forwarded-For), so the public TLS proxy never serves it."""
    peer = request.client.host if request.client else ""
    if "x-forwarded-for" in request.headers or "forwarded" in request.headers or not _allowed(
        peer, svc.settings.metrics_allow
    ):
        raise NotFound("no such route")
    return Response(metrics.render(svc), media_type=metrics.CONTENT_TYPE)


def _allowed(peer: str, networks: tuple[Any, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(addr in n for n in networks)


@router.get("/.well-known/jwks.json")
def jwks(svc: Services = Depends(services)) -> dict[str, Any]:
    """The embedded issuer's public key (empty with an external identity provider)."""
    return svc.issuer.jwks() if svc.issuer is not None else {"keys": []}


class LoginIn(BaseModel):
    user: str = Field(pattern=USER_NAME, max_length=64)


@router.post("/auth/demo-login")
def demo_login(body: LoginIn, svc: Services = Depends(services)) -> dict[str, Any]:
    """UNSAFE, demo only (RESERVE_UNSAFE_DEMO_LOGIN=1): a token for any registered user,
    without a password. Off by default; returns 404 when off."""
    if not svc.settings.unsafe_demo_login or svc.issuer is None:
        raise NotFound("no such route")
    with svc.primary_engine.connect() as conn:
        if not [k for k in read_user_keys(conn, body.user) if k.revoked_seq is None]:
            raise NotFound(f"no registered user '{body.user}'")
    log.warning("unsafe_demo_login_used", subject=body.user)
    return {
        "access_token": svc.issuer.issue(body.user),
        "token_type": "Bearer",
        "expires_in": svc.settings.token.ttl_seconds,
    }


@router.get("/me", **roles(*policy.ALL_ROLES))
def me(p: Principal = Depends(principal)) -> dict[str, Any]:
    return {
        "user": p.user,
        "roles": sorted(p.roles),
        "sites": sorted(p.sites),
        "owners": sorted(p.owners),
        "clearance": p.clearance,
    }


class RevokeTokenIn(BaseModel):
    jti: str = Field(pattern=IDEMPOTENCY_KEY, min_length=1, max_length=128)
    expires_at: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)


@router.post("/tokens/revoke", status_code=204, **roles(*policy.ALL_ROLES))
def revoke_token(
    body: RevokeTokenIn,
    request: Request,
    p: Principal = Depends(principal),
    svc: Services = Depends(services),
) -> None:
    """Deny a token id from now on: a security admin for any token, anyone for their own."""
    own = body.jti == getattr(request.state, "jti", None)
    if not own and not p.has(ADMIN):
        raise Forbidden("only a security admin revokes other people's tokens")
    expires = body.expires_at or (request.state.token_exp if own else int(time.time()) + 86400)
    with write_transaction(svc.ledger.engine) as conn:
        revoke(conn, jti=body.jti, expires_at=expires, by=p.user)
