"""The FastAPI application: wiring only (routes, error mapping, request ids, logs)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors, metrics, request_schemas, web
from api.audit import refusal_event
from api.request_context import RequestContext
from api.routes import inbox as inbox_routes
from api.routes import log as log_routes
from api.routes import login, meta, proposals, reads, releases, writes
from api.routes import owner_scope as owner_scope_routes
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


def freeze_startup_heap() -> None:
    """Called by ``reserve serve`` once the app is built, before it takes requests.

    Everything built at start-up (modules, routes, models, pools) lives as long as the
    process: moved out of the cyclic collector's reach (``gc.freeze``), a full
    collection no longer walks it. On the bench machine a full pass over a worker's
    ~135,000 start-up objects took 130 ms, and it fell inside whichever request had just
    allocated enough: the slowest reads and writes (issues #11 and #12). Not in the app
    itself: a test process builds hundreds of apps and must be able to collect them."""
    gc.collect()
    gc.freeze()


def create_app(svc: Services) -> FastAPI:
    app = FastAPI(
        title="Reserve ledger",
        version="1",
        description="Signed, append-only ledger of strategic reserve stock. Every route lists the roles "
        "allowed to call it (x-roles). Errors are RFC 9457 problem details.",
        lifespan=_lifespan,
        # /docs is served from local files by api.web (issue #13: no CDN); ReDoc is not:
        # its script loads its logo from its vendor's CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    errors.install(app)

    @app.exception_handler(LedgerError)
    async def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        response = errors.ledger_problem(exc)
        if isinstance(exc, Rejected):
            metrics.REFUSALS.labels(rule=exc.rule).inc()
        # Refusals for scope or role by the rules are access refusals too.
        scope_rule = isinstance(exc, Rejected) and exc.rule in SCOPE_RULES
        if response.status_code in REFUSALS or scope_rule:
            # Every refused request goes to the access log (issue #4), batched and limited
            # per client (issue #8, api.refusals); if a batch cannot be written the
            # refusals still stand and that is logged.
            refusal_event(svc, request, response.status_code, exc.code)
        return response

    app.add_middleware(RequestContext)

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
    app.include_router(inbox_routes.router)  # issue #12: inboxes
    app.include_router(owner_scope_routes.router)  # issue #14: an owner's key for its auditors
    request_schemas.install(app)  # named request schemas of the write routes (issue #12)
    web.mount(app)  # the pages and a local /docs (issue #13)
    if svc.settings.trusted_proxies:
        # X-Forwarded-For is believed only from the configured proxies (uvicorn's
        # middleware takes the right-most address not itself a trusted proxy).
        app.add_middleware(
            ProxyHeadersMiddleware, trusted_hosts=[str(n) for n in svc.settings.trusted_proxies]
        )
    return app
