"""Request dependencies: the services, the authenticated principal, role declarations.

Roles are declared on each route with :func:`roles` (enforced, and shown in the OpenAPI
document as ``x-roles``); the resource-level checks happen again in ``ledger.policy``.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.services import Services
from ledger.errors import Unauthenticated
from ledger.policy import Principal, require_role
from ledger.store.projections import read_caller

_bearer = HTTPBearer(auto_error=False)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    svc: Services = Depends(services),
) -> Principal:
    """The caller: a valid token whose subject has active keys in the registry. Scope
    comes from the registry (the log), not from the token's own claims."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthenticated("send a bearer token (Authorization: Bearer ...)")
    claims = svc.verifier.verify(creds.credentials, check_revoked=False)
    with svc.auth_connection() as conn:  # the primary: a revocation counts at once
        revoked, records = read_caller(conn, claims.sub, claims.jti)
    if revoked:
        raise Unauthenticated("token was revoked")
    p = Principal.from_keys(claims.sub, records)
    if not p.roles:
        raise Unauthenticated("the token's subject has no active key in this ledger")
    request.state.user = p.user
    request.state.keys = records  # read once per request (the custodial write reuses them)
    request.state.jti = claims.jti
    request.state.token_exp = claims.exp
    structlog.contextvars.bind_contextvars(user=p.user)
    return p


def roles(*allowed: str) -> dict[str, Any]:
    """Route keyword arguments declaring (and enforcing) who may call it."""

    def check(p: Principal = Depends(principal)) -> None:
        require_role(p, *allowed, what="this request")

    return {
        "dependencies": [Depends(check)],
        "openapi_extra": {"x-roles": list(allowed)},
        "description": "Roles: " + ", ".join(allowed),
    }
