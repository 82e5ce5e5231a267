"""The FastAPI application: wiring only (routes, error mapping, request ids, logs)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from api import errors
from api.audit import refusal_event
from api.routes import log as log_routes
from api.routes import login, meta, proposals, reads, releases, writes
from api.routes import registry as registry_routes
from api.services import Services
from ledger.errors import LedgerError, Rejected

log = structlog.get_logger("api")
REFUSALS = (401, 403, 404)
# Rule refusals that are about scope ("site-owner" reads alike for a site out of scope and
# a missing one, issue #8 item 7): recorded as access refusals too.
SCOPE_RULES = ("role", "site-scope", "owner-scope", "site-owner")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # At shutdown: the refusals still buffered go to the access log.
    app.state.services.refusals.close()


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="Reserve ledger",
        version="1",
        description="Signed, append-only ledger of strategic reserve stock. Every route lists the roles "
        "allowed to call it (x-roles). Errors are RFC 9457 problem details.",
        lifespan=_lifespan,
    )
    app.state.services = svc
    errors.install(app)

    @app.exception_handler(LedgerError)
    async def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        response = errors.ledger_problem(exc)
        # Refusals for scope or role by the rules are access refusals too.
        scope_rule = isinstance(exc, Rejected) and exc.rule in SCOPE_RULES
        if response.status_code in REFUSALS or scope_rule:
            # Every refused request goes to the access log (issue #4), batched and limited
            # per client (issue #8, api.refusals); if a batch cannot be written the
            # refusals still stand and that is logged.
            refusal_event(svc, request, response.status_code, exc.code)
        return response

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:  # built outside the handlers: still a problem, with an id
            log.error("unexpected", error_class=type(exc).__name__)
            response = errors.problem(500, "internal", "the service could not complete this request; try again later")
        route = request.scope.get("route")
        log.info(
            "request",
            method=request.method,
            route=getattr(route, "path", "unmatched"),
            status=response.status_code,
            ms=round((time.perf_counter() - start) * 1000, 2),
        )
        response.headers["X-Request-ID"] = request_id
        return response

    for router in (
        meta.router,
        login.router,
        proposals.router,
        writes.router,
        reads.router,
        releases.router,
        log_routes.router,
    ):
        app.include_router(router)
    app.include_router(registry_routes.router)
    return app
