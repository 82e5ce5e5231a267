"""Request dependencies: the services, the authenticated principal, role declarations.

Roles are declared on each route with :func:`roles` (enforced, and shown in the OpenAPI
document as ``x-roles``); the resource-level checks happen again in ``ledger.policy``.
"""

from __future__ import annotations

from typing import Any

import structlog
from anyio import CapacityLimiter, to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.services import Services
from ledger.errors import Unauthenticated
from ledger.policy import Principal, require_role
from ledger.state import KeyRecord
from ledger.store.projections import read_caller

_bearer = HTTPBearer(auto_error=False)
# Threads for authentication's lookup, apart from the default limiter's (the routes'):
# each holds one for a single indexed query, never while waiting for a commit.
AUTH_THREADS = 8
_limiter: list[CapacityLimiter] = []


def _auth_limiter() -> CapacityLimiter:
    """Made on first use, inside the worker's event loop."""
    if not _limiter:
        _limiter.append(CapacityLimiter(AUTH_THREADS))
    return _limiter[0]


async def services(request: Request) -> Services:
    # async: FastAPI runs a plain function dependency in its thread pool, a hop every
    # request would pay for nothing here.
    svc: Services = request.app.state.services
    return svc


def _registry(svc: Services, jti: str, sub: str) -> list[KeyRecord]:
    """The caller's active keys, and whether the token is revoked, in one query on the
    primary (a revocation counts at once, in every worker; issue #11)."""
    with svc.auth_connection() as conn:
        revoked, records = read_caller(conn, sub, jti)
    if revoked:
        raise Unauthenticated("token was revoked")
    return records


async def principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),
    svc: Services = Depends(services),
) -> Principal:
    """The caller: a valid token whose subject has active keys in the registry. Scope
    comes from the registry (the log), not from the token's own claims.

    The token is checked on the event loop (CPU only, no I/O: verified tokens are
    cached, a refused one costs a parse and at most one signature check), so a flood of
    bad tokens never queues for the thread pool the writes use (issue #8 item 9); only
    a valid token's registry lookup goes to a thread."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthenticated("send a bearer token (Authorization: Bearer ...)")
    if svc.verifier.may_fetch:  # an identity provider's JWKS may be fetched: not here
        claims = await run_in_threadpool(
            svc.verifier.verify, creds.credentials, check_revoked=False
        )
    else:
        claims = svc.verifier.verify(creds.credentials, check_revoked=False)
    # One indexed query, in a worker thread under a limiter of its own: on the event loop
    # it stalled every other request of the worker for a round trip (a busy machine
    # schedules PostgreSQL late: two thirds of the loop's time, profiled), and under the
    # default limiter it would queue behind the writes that hold its threads while they
    # wait for their group commit (issue #11). Bad tokens never get this far.
    records = await to_thread.run_sync(
        _registry, svc, claims.jti, claims.sub, limiter=_auth_limiter()
    )
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

    async def check(p: Principal = Depends(principal)) -> None:
        require_role(p, *allowed, what="this request")

    return {
        "dependencies": [Depends(check)],
        "openapi_extra": {"x-roles": list(allowed)},
        "description": "Roles: " + ", ".join(allowed),
    }
